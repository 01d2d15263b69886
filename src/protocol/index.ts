/**
 * The wsup control protocol: JSON-RPC 2.0 over WebSocket at `/control`. Shared by server and client.
 *
 * @example
 * import { METHODS, ERROR_CODES, type Result } from '../protocol/index.ts';
 */
export * from './jsonrpc.ts';
export * from './model.ts';
export * from './methods.ts';
export * from './agent.ts';
export * from './shards.ts';
