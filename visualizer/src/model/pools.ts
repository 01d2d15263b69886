/**
 * The prebuild pools panel's read model: every pool from `pool.list` with how full it is, its last error
 * and its backoff as a countdown. A server without pools (an older one, or one whose `pool.list` answers
 * an error) hides the panel. Pure, with time passed in.
 *
 * @example
 * const pools = new PoolsPanel();
 * pools.apply(answer.items, now);
 * pools.rows(now); // [{ pool: 'py', desired: 3, ready: 2, ..., backoff: 'in 4.2 s' }]
 */
import type { PoolView } from '../../../src/client/index.ts';
import { formatClock, formatCountdown } from './format.ts';

export interface PoolRow {
  pool: string;
  desired: number;
  ready: number;
  starting: number;
  failing: number;
  /** `full`, `filling` (fewer ready than desired, starts in flight), `short` (nothing starting), `backing off`. */
  health: 'full' | 'filling' | 'short' | 'backing off';
  lastError: string | null;
  /** Countdown to the end of the backoff while it lasts, else null. */
  backoff: string | null;
}

export class PoolsPanel {
  /** `unknown` until the first answer; `unsupported` when the server answered `pool.list` with an error. */
  status: 'unknown' | 'ok' | 'unsupported' = 'unknown';
  items: readonly PoolView[] = [];
  fetchedAt: number | null = null;
  /** Why the latest refresh failed when the server could not be reached (the last answer stays shown). */
  error: string | null = null;
  /** An event arrived for a workspace in a pool since the last refresh. */
  dirty = false;

  get visible(): boolean {
    return this.status === 'ok' && this.items.length > 0;
  }

  apply(items: readonly PoolView[], at: number): void {
    this.status = 'ok';
    this.items = [...items].sort((a, b) => (a.pool < b.pool ? -1 : a.pool > b.pool ? 1 : 0));
    this.fetchedAt = at;
    this.error = null;
  }

  /** The server has no usable `pool.list`: hide the panel and stop asking (until a reconnect). */
  unsupported(): void {
    this.status = 'unsupported';
    this.items = [];
  }

  rows(now: number): PoolRow[] {
    return this.items.map((p) => {
      const left = p.backoffUntil === null ? 0 : p.backoffUntil - now;
      const backingOff = left > 0;
      const health: PoolRow['health'] = backingOff ? 'backing off' : p.ready >= p.desired ? 'full' : p.starting > 0 ? 'filling' : 'short';
      return {
        pool: p.pool,
        desired: p.desired,
        ready: p.ready,
        starting: p.starting,
        failing: p.failing,
        health,
        lastError: p.lastError ? `${p.lastError.message} (at ${formatClock(p.lastError.at)})` : null,
        backoff: backingOff ? formatCountdown(left) : null,
      };
    });
  }
}
