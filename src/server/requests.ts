/**
 * Requests seen lately, by key (the caller, the workspace and the caller's request id): a re-send of a
 * request joins the first while it runs and gets the first's answer after it, instead of running again.
 * An answer that says nothing about the outcome (the server was shutting down, the shard moved, the
 * outcome is unknown, an internal error) is not kept: a re-send of that one runs.
 *
 * Bounded in time and size: an answer is kept `ttlMs` (default ten minutes) and at most `max` keys
 * (default 20,000, the oldest go first), so a flood of distinct request ids costs a fixed amount of memory.
 *
 * @example
 * const recent = new RecentRequests();
 * await recent.run(`rpc:alice\0ws-1\0${requestId}`, () => supervisor.restart('ws-1', { requester }));
 */
import { WsupError, type WsupErrorCode } from '../errors.ts';
import { systemClock, type Clock } from '../supervisor/clock.ts';

export const REQUEST_TTL_MS = 10 * 60_000;
export const MAX_RECENT_REQUESTS = 20_000;

/** Failures that say nothing about whether the request took effect (or say it did not start): not kept. */
const INCONCLUSIVE: ReadonlySet<WsupErrorCode> = new Set(['WSUP_OUTCOME_UNKNOWN', 'WSUP_SHUTTING_DOWN', 'WSUP_FENCED', 'WSUP_STORE']);

export interface RecentRequestsOptions {
  clock?: Clock;
  ttlMs?: number;
  max?: number;
}

export class RecentRequests {
  private readonly entries = new Map<string, { at: number; answer: Promise<unknown> }>();
  private readonly clock: Clock;
  private readonly ttlMs: number;
  private readonly max: number;

  constructor(opts: RecentRequestsOptions = {}) {
    this.clock = opts.clock ?? systemClock;
    this.ttlMs = opts.ttlMs ?? REQUEST_TTL_MS;
    this.max = opts.max ?? MAX_RECENT_REQUESTS;
  }

  get size(): number {
    return this.entries.size;
  }

  /** The answer of the request `key` names: the first run's, when it is recent; else `fn()`'s. */
  run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const now = this.clock.now();
    const hit = this.entries.get(key);
    if (hit && now - hit.at < this.ttlMs) return hit.answer as Promise<T>;
    const answer = fn();
    this.entries.delete(key); // re-inserted last: insertion order is age order
    this.entries.set(key, { at: now, answer });
    answer.catch((err: unknown) => {
      if (!(err instanceof WsupError) || INCONCLUSIVE.has(err.code)) this.forget(key, answer);
    });
    this.evict(now);
    return answer;
  }

  /** Drop `key` (when `answer` is still the one kept): its next run runs. */
  forget(key: string, answer?: Promise<unknown>): void {
    if (answer === undefined || this.entries.get(key)?.answer === answer) this.entries.delete(key);
  }

  private evict(now: number): void {
    while (this.entries.size > this.max) this.entries.delete(this.entries.keys().next().value!);
    for (const [key, e] of this.entries) {
      if (now - e.at < this.ttlMs) break;
      this.entries.delete(key);
    }
  }
}

/** The key of one request from its parts (who sent it, the method, what it is about, the caller's id). */
export function requestKey(...parts: string[]): string {
  return parts.join('\u0000');
}

/**
 * A command's label in the workspace's log: the requester, and the caller's request id when it gave one
 * (the same on every re-send, so a cluster owner finds a request an earlier owner committed).
 */
export function labelOf(requester: string, requestId: string | undefined): string {
  return requestId === undefined ? requester : `${requester}~req:${requestId}`;
}
