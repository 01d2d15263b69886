/**
 * `waitForReinit`: the agent side of a prebuild claim. Stay connected to `/agent` (reconnecting with backoff: 100 ms
 * doubling to 10 s, reset after each successful connect), yield every reinit once per
 * `(ownerId, claimBuildId)` — across the agent's own restarts too, given a `stateFile` — acknowledge it, and
 * end when the server refuses (the workspace is not a prebuild: nothing will ever come).
 *
 * The entry is recorded (durably, with a state file) and acknowledged before it is yielded: an agent that
 * re-execs itself to reinitialize must not do it a second time when the server re-sends an event whose
 * ack it never saw arrive.
 *
 * @example
 * import WebSocket from 'ws';
 * const reinits = waitForReinit({ url: 'http://127.0.0.1:7070', token: process.env.WSUP_AGENT_TOKEN!, WebSocket,
 *   stateFile: '/var/lib/agent/reinit.json' });
 * for await (const ev of reinits) await reinitializeAs(ev.ownerId);
 * // the loop ends when the server says this workspace is not a prebuild
 */
import type { AgentRefusalCode, AgentWaitReason, ReinitNotice } from '../protocol/index.ts';
import { parseReinitPayload } from '../protocol/index.ts';
import { agentUrl, connect, isRefusalClose, type AgentSocketConstructor } from './connection.ts';
import { fileLedger, memoryLedger, type ReinitLedger } from './ledger.ts';

/** Time as a parameter: tests pass a fake that resolves when they say so. */
export interface AgentScheduler {
  /** Resolve after `ms`, or at once when `signal` aborts. */
  sleep(ms: number, signal: AbortSignal): Promise<void>;
}

export const realScheduler: AgentScheduler = {
  sleep: (ms, signal) =>
    new Promise((resolve) => {
      if (signal.aborted) return resolve();
      const t = setTimeout(done, ms);
      function done() {
        clearTimeout(t);
        signal.removeEventListener('abort', done);
        resolve();
      }
      signal.addEventListener('abort', done, { once: true });
    }),
};

export type AgentStatus =
  | { type: 'connecting'; attempt: number }
  | { type: 'connected' }
  | { type: 'waiting'; why: AgentWaitReason }
  | { type: 'duplicate'; ownerId: string; claimBuildId: string }
  | { type: 'acked'; claimBuildId: string; ok: boolean }
  | { type: 'disconnected'; detail: string; retryInMs: number };

export interface WaitForReinitOptions {
  /** Server base url (`http://host:port`) or the full `ws://host:port/agent`. */
  url: string;
  /** The workspace's agent token (`WSUP_AGENT_TOKEN` in the agent's environment). */
  token: string;
  WebSocket: AgentSocketConstructor;
  /** Fills in `workspaceId` of a legacy (bare-string) reinit. Default `WSUP_WORKSPACE_ID` or ''. */
  workspaceId?: string;
  /** Remember yielded reinits here, across restarts of the agent. Without it: for this call only. */
  stateFile?: string;
  /** Or bring your own memory. */
  ledger?: ReinitLedger;
  signal?: AbortSignal;
  scheduler?: AgentScheduler;
  backoff?: { initialMs?: number; maxMs?: number };
  onStatus?: (status: AgentStatus) => void;
}

/** Why the loop ended (the generator's return value). */
export type WaitEnd = { reason: 'refused'; code: AgentRefusalCode | 'HTTP_409'; message: string } | { reason: 'aborted' };

/** The token was rejected: it was rotated or never issued, and retrying cannot help. */
export class AgentTokenError extends Error {
  readonly code = 'WSUP_AGENT_TOKEN';
  constructor(status: number) {
    super(`agent token rejected by the server (HTTP ${status}): the workspace was restarted with a new token or the token is wrong`);
    this.name = 'AgentTokenError';
  }
}

/** Exponential backoff: `initial`, doubling, capped at `max`; `reset()` after a successful connect. */
export class Backoff {
  private n = 0;
  constructor(
    private readonly initialMs = 100,
    private readonly maxMs = 10_000,
  ) {}
  next(): number {
    const ms = Math.min(this.maxMs, this.initialMs * 2 ** Math.min(this.n, 30));
    this.n++;
    return ms;
  }
  reset(): void {
    this.n = 0;
  }
}

export async function* waitForReinit(opts: WaitForReinitOptions): AsyncGenerator<ReinitNotice, WaitEnd, void> {
  const signal = opts.signal ?? new AbortController().signal;
  const scheduler = opts.scheduler ?? realScheduler;
  const status = opts.onStatus ?? (() => undefined);
  const ledger = opts.ledger ?? (opts.stateFile ? await fileLedger(opts.stateFile) : memoryLedger());
  const backoff = new Backoff(opts.backoff?.initialMs, opts.backoff?.maxMs);
  const url = agentUrl(opts.url);
  const workspaceId = opts.workspaceId ?? process.env.WSUP_WORKSPACE_ID ?? '';

  for (let attempt = 1; !signal.aborted; attempt++) {
    status({ type: 'connecting', attempt });
    const a = await connect(opts.WebSocket, url, opts.token, signal);
    let detail: string;
    if (a.kind === 'refused') return { reason: 'refused', code: 'HTTP_409', message: 'the server refused this agent (HTTP 409): stop waiting' };
    if (a.kind === 'unauthorized') throw new AgentTokenError(a.status);
    if (a.kind === 'failed') detail = a.detail;
    else {
      backoff.reset();
      status({ type: 'connected' });
      try {
        for (;;) {
          const i = await a.next();
          if (i.kind === 'closed') {
            if (isRefusalClose(i.code)) return { reason: 'refused', code: 'WSUP_NOT_PREBUILD', message: 'the server closed with 4409: stop waiting' };
            detail = `closed (${i.code})`;
            break;
          }
          if (i.kind === 'legacy') {
            // No owner, no build id: it cannot be deduplicated or acknowledged, only passed on.
            const notice = parseReinitPayload(i.reason, workspaceId);
            if (notice) yield notice;
            continue;
          }
          const f = i.frame;
          if (f.type === 'refused') return { reason: 'refused', code: f.code, message: f.message };
          if (f.type === 'waiting') status({ type: 'waiting', why: f.why });
          if (f.type === 'acked') status({ type: 'acked', claimBuildId: f.claimBuildId, ok: f.ok });
          if (f.type !== 'reinit') continue;
          const notice = parseReinitPayload(f.event, workspaceId);
          if (notice === null) continue;
          if (notice.legacy) {
            yield notice;
            continue;
          }
          const fresh = !ledger.has(notice.ownerId, notice.claimBuildId);
          if (fresh) await ledger.add(notice.ownerId, notice.claimBuildId);
          else status({ type: 'duplicate', ownerId: notice.ownerId, claimBuildId: notice.claimBuildId });
          if (a.socket.readyState === 1) a.socket.send(JSON.stringify({ type: 'ack', claimBuildId: notice.claimBuildId }));
          if (fresh) yield notice;
        }
      } finally {
        // Also runs when the consumer stops iterating: never leave the socket behind.
        a.socket.terminate();
      }
    }
    if (signal.aborted) break;
    const wait = backoff.next();
    status({ type: 'disconnected', detail, retryInMs: wait });
    await scheduler.sleep(wait, signal);
  }
  return { reason: 'aborted' };
}
