/** Typed client errors: every failed call rejects with one of these, carrying the JSON-RPC code. */
import type { RpcErrorData } from '../protocol/index.ts';

export class WsupRpcError extends Error {
  readonly code: number;
  readonly data: RpcErrorData | undefined;
  /** `WSUP_NOT_FOUND`, `WSUP_FORBIDDEN`…, when the server sent one. */
  readonly wsupCode: string | undefined;
  constructor(code: number, message: string, data?: RpcErrorData) {
    super(message);
    this.name = 'WsupRpcError';
    this.code = code;
    this.data = data;
    this.wsupCode = data?.wsupCode;
  }
}

/** The call got no answer in time; the server may still have done it. */
export class WsupTimeoutError extends Error {
  readonly code = 'TIMEOUT';
  constructor(method: string, ms: number) {
    super(`${method} got no answer within ${ms} ms: the server may still have applied it`);
    this.name = 'WsupTimeoutError';
  }
}

/** The connection dropped (or could not be made) while the call was pending or about to be sent. */
export class WsupConnectionError extends Error {
  readonly code = 'CONNECTION';
  constructor(message: string) {
    super(message);
    this.name = 'WsupConnectionError';
  }
}
