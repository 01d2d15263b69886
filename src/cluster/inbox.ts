/**
 * Durable forwarding: a command for a workspace owned elsewhere (or whose shard is changing hands) is a
 * row in `cluster_inbox`, drained by whoever owns the shard (woken by NOTIFY, and by a poll, since NOTIFY
 * can be lost), answered in the row once the owner committed. A restart carries its inbox id as requester,
 * so an owner that died after committing but before answering is not re-run by its successor: the
 * successor finds the request in the event log and answers with what was recorded.
 *
 * Rows of one workspace run in their id order; rows of different workspaces run concurrently.
 *
 * @example
 * const inbox = new Inbox({ engine, store, host, channels, clock, run, report });
 * const answer = await inbox.forward(shard, 'workspace.restart', { id: 'ws-1', requester: 'rpc:alice~r1.7' });
 */
import { errorMessage, OutcomeUnknownError, WsupError } from '../errors.ts';
import type { SqlEngine } from '../store/engine.ts';
import type { WorkspaceStore } from '../store/store.ts';
import type { Clock } from '../supervisor/clock.ts';
import type { RoutedParams } from '../server/dispatch.ts';
import type { ShardHost, ShardRuntime } from './shard-host.ts';
import { shardOf } from './shards.ts';

export interface InboxOptions {
  engine: SqlEngine;
  store: WorkspaceStore;
  host: ShardHost;
  shards: number;
  replica: string;
  /** NOTIFY channels: `inbox` wakes owners, `reply` wakes the replica that forwarded. */
  channels: { inbox: string; reply: string };
  clock: Clock;
  /** How long a forwarded command waits for its answer. */
  timeoutMs: number;
  /**
   * Run a command on the shard's runtime here (the owner): `done: false` when the shard left this replica
   * mid-command (the row stays for the next owner, or the next drain).
   */
  run: (rt: ShardRuntime, method: string, params: RoutedParams, requester: string) => Promise<{ done: true; value: unknown } | { done: false }>;
  report: (err: unknown, what: string) => void;
}

/** Methods that record their request in the workspace's event log (a restart cycle), found there again. */
export const RESTARTS: ReadonlySet<string> = new Set(['workspace.restart', 'workspace.update']);

interface InboxRow {
  id: number;
  workspace_id: string;
  method: string;
  params: RoutedParams;
}

export class Inbox {
  private readonly waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  /** Inbox rows being executed here, and the per-workspace chain that keeps their order. */
  private readonly running = new Set<number>();
  private readonly chains = new Map<string, Promise<void>>();
  private draining: Promise<void> | null = null;
  private drainAgain = false;
  private closed = false;

  constructor(private readonly opts: InboxOptions) {}

  /** Queue a command for the owner of `shard`; resolves with its answer once the owner recorded one. */
  async forward(shard: number, method: string, params: RoutedParams): Promise<unknown> {
    const { rows } = await this.opts.engine.query<{ id: number }>(
      `WITH row AS (INSERT INTO cluster_inbox (shard, workspace_id, method, params, origin) VALUES ($1, $2, $3, $4::jsonb, $5) RETURNING id)
       SELECT id, pg_notify($6, $1::text) FROM row`,
      [shard, params.id, method, JSON.stringify(params), this.opts.replica, this.opts.channels.inbox],
    );
    const inboxId = rows[0]!.id;
    const { clock, timeoutMs } = this.opts;
    return new Promise((resolve, reject) => {
      const timer = clock.setTimeout(() => {
        this.waiting.delete(inboxId);
        reject(new OutcomeUnknownError(`no answer from the owner of shard ${shard} within ${timeoutMs} ms: inbox ${inboxId} stays queued and runs once the shard has an owner`, params.id));
      }, timeoutMs);
      this.waiting.set(inboxId, {
        resolve: (v) => (clock.clearTimeout(timer), resolve(v)),
        reject: (e) => (clock.clearTimeout(timer), reject(e)),
      });
    });
  }

  /** A reply notification: collect the answer if it is one this replica waits for. */
  replied(payload: string): void {
    const id = Number(payload);
    if (this.waiting.has(id)) void this.collect([id]);
  }

  /** Read the answers recorded for the commands forwarded from here (all of them, or `ids`). */
  async collect(ids?: number[]): Promise<void> {
    const want = ids ?? [...this.waiting.keys()];
    if (want.length === 0 || this.closed) return;
    try {
      const { rows } = await this.opts.engine.query<{ id: number; result: unknown; error: { code: string; message: string } | null }>(
        'SELECT id, result, error FROM cluster_inbox WHERE id = ANY($1::bigint[]) AND done_at IS NOT NULL',
        [want],
      );
      for (const r of rows) {
        const w = this.waiting.get(r.id);
        if (!w) continue;
        this.waiting.delete(r.id);
        if (r.error) w.reject(new WsupError(r.error.code as WsupError['code'], r.error.message, { workspaceId: undefined }));
        else w.resolve(r.result);
      }
    } catch (err) {
      if (!this.closed) this.opts.report(err, 'reading forwarded answers failed');
    }
  }

  /** Execute inbox rows of the shards owned here. One drain at a time; a wake-up during it runs another. */
  drain(): Promise<void> {
    if (this.draining) {
      this.drainAgain = true;
      return this.draining;
    }
    this.draining = (async () => {
      do {
        this.drainAgain = false;
        const owned = this.opts.host.loaded();
        if (owned.length === 0 || this.closed) return;
        const { rows } = await this.opts.engine.query<InboxRow>(
          'SELECT id, workspace_id, method, params FROM cluster_inbox WHERE done_at IS NULL AND shard = ANY($1::int[]) ORDER BY id LIMIT 500',
          [owned],
        );
        for (const row of rows) {
          if (this.running.has(row.id)) continue;
          this.running.add(row.id);
          const prev = this.chains.get(row.workspace_id) ?? Promise.resolve();
          const next = prev.then(() => this.run(row)).finally(() => {
            this.running.delete(row.id);
            if (this.chains.get(row.workspace_id) === next) this.chains.delete(row.workspace_id);
          });
          this.chains.set(row.workspace_id, next);
        }
      } while (this.drainAgain);
    })()
      .catch((err: unknown) => {
        if (!this.closed) this.opts.report(err, 'draining the inbox failed');
      })
      .finally(() => {
        this.draining = null;
      });
    return this.draining;
  }

  /**
   * Delete answered rows older than `keepMs` (their forwarder stopped waiting long ago): the table holds
   * what is queued plus a short tail, not every command the cluster ever forwarded. Open rows stay.
   */
  async prune(keepMs: number): Promise<number> {
    if (this.closed) return 0;
    try {
      const { rows } = await this.opts.engine.query<{ n: number }>(
        `WITH gone AS (DELETE FROM cluster_inbox WHERE done_at < now() - make_interval(secs => $1::float8 / 1000) RETURNING 1)
         SELECT count(*)::int AS n FROM gone`,
        [keepMs],
      );
      return rows[0]?.n ?? 0;
    } catch (err) {
      if (!this.closed) this.opts.report(err, 'pruning answered inbox rows failed');
      return 0;
    }
  }

  /** Stop draining; commands still waiting for an answer are told it may still come. */
  close(): void {
    this.closed = true;
    for (const [, w] of this.waiting) w.reject(new OutcomeUnknownError(`replica ${this.opts.replica} closed while a forwarded command waited for its answer: the command stays queued and runs once its shard has an owner`));
    this.waiting.clear();
  }

  private async run(row: InboxRow): Promise<void> {
    const rt = this.opts.host.runtime(shardOf(row.workspace_id, this.opts.shards));
    if (!rt) return; // not ours (any more): the owner's drain takes it
    const requester = row.params.requester ?? `inbox:${row.id}`;
    let result: unknown = null;
    let error: { code: string; message: string } | null = null;
    try {
      // Under a request id, `run` looks the log up itself (only while the shard is newly taken over).
      const recorded = RESTARTS.has(row.method) && row.params.requestId === undefined ? await recordedRestart(this.opts.store, rt, row.workspace_id, requester) : null;
      if (recorded !== null && recorded !== 'fenced') result = recorded;
      else {
        // A recorded restart whose cycle the fence refused did not take effect: it runs again, labelled apart.
        const answer = await this.opts.run(rt, row.method, row.params, recorded === 'fenced' ? `${requester}.again` : requester);
        if (!answer.done) return; // the shard left us: the next owner runs it
        result = answer.value;
      }
    } catch (err) {
      error = { code: err instanceof WsupError ? err.code : 'WSUP_INTERNAL', message: errorMessage(err) };
    }
    try {
      await this.opts.engine.query(
        `WITH done AS (UPDATE cluster_inbox SET done_at = now(), result = $2::jsonb, error = $3::jsonb WHERE id = $1 AND done_at IS NULL RETURNING id)
         SELECT pg_notify($4, id::text) FROM done`,
        [row.id, JSON.stringify(result), error ? JSON.stringify(error) : null, this.opts.channels.reply],
      );
    } catch (err) {
      // Unanswered, the row is run again by the shard's next drain (a restart is found in the log).
      if (!this.closed) this.opts.report(err, `answering inbox ${row.id} failed`);
    }
  }

}

/**
 * A restart an earlier owner already committed under `requester` (it died or lost the shard before
 * answering): its recorded answer; `fenced` when the cycle it joined failed on the fence (nothing reached
 * the provider); null when the log has no such request.
 */
export async function recordedRestart(store: WorkspaceStore, rt: ShardRuntime, id: string, requester: string): Promise<Record<string, unknown> | 'fenced' | null> {
  const first = (await store.firstRequest(id, `${requester}#`)) as { outcome: string; cycle: number | null } | null;
  if (!first) return null;
  const view = await rt.supervisor.get(id);
  if (first.cycle !== null && view.lastError?.cycle === first.cycle && view.lastError.code === 'WSUP_FENCED') return 'fenced';
  return { id, outcome: first.outcome, cycle: first.cycle, state: view.state, replayed: true };
}
