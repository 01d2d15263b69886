/**
 * A FakeProvider shared by every replica process through PostgreSQL, so the cluster tests can see the
 * whole cluster's provider calls in one place:
 * - `fake_inflight` has one row per workspace with a call in flight; a second call finding a row of a live
 *   replica is recorded in `fake_violations` (two provider calls in flight for one workspace).
 * - `fake_calls` logs every call with its replica and database begin time (the paused-replica test).
 * - `fake_resources` is what "runs", for recovery's adopt/vanished check, with the agent token its start was
 *   given (what an agent inside the workspace would read from its environment).
 * Rows of replicas the test killed (`fake_dead`) do not count: a SIGKILLed process's call died with it.
 *
 * Like a fencing-aware resource, it refuses a call from a replica that does not hold the workspace's shard
 * lease at that moment (`fake_refused`): the last line behind the replica's own gate, for the call that
 * passed the gate just before its process was paused and reaches the provider after the lease is gone.
 */
import { DEFAULT_SHARDS, shardOf } from '../../src/cluster/shards.ts';
import type { Endpoint, Provider, ProviderResource, WorkspaceSpec } from '../../src/providers/types.ts';
import type { SqlEngine } from '../../src/store/engine.ts';

export const FAKE_TABLES = `
  CREATE TABLE IF NOT EXISTS fake_inflight (workspace_id text PRIMARY KEY, replica text NOT NULL, op text NOT NULL, shard integer NOT NULL, epoch bigint NOT NULL);
  CREATE TABLE IF NOT EXISTS fake_calls (id bigserial PRIMARY KEY, workspace_id text NOT NULL, replica text NOT NULL, op text NOT NULL,
    shard integer NOT NULL, epoch bigint NOT NULL, began_at timestamptz NOT NULL DEFAULT clock_timestamp());
  CREATE TABLE IF NOT EXISTS fake_violations (id bigserial PRIMARY KEY, workspace_id text NOT NULL, replica text NOT NULL, other text NOT NULL,
    at timestamptz NOT NULL DEFAULT clock_timestamp());
  CREATE TABLE IF NOT EXISTS fake_resources (workspace_id text PRIMARY KEY, status text NOT NULL, agent_token text);
  CREATE TABLE IF NOT EXISTS fake_dead (replica text PRIMARY KEY);
  CREATE TABLE IF NOT EXISTS fake_refused (id bigserial PRIMARY KEY, workspace_id text NOT NULL, replica text NOT NULL, op text NOT NULL,
    at timestamptz NOT NULL DEFAULT clock_timestamp());
`;

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason as Error);
    const t = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => (clearTimeout(t), reject(signal.reason as Error)), { once: true });
  });

export class DbFakeProvider implements Provider {
  readonly kind = 'fake';

  constructor(
    private readonly db: SqlEngine,
    private readonly replica: string,
    private readonly latencyMs: number,
  ) {}

  async start(spec: WorkspaceSpec, signal: AbortSignal): Promise<Endpoint> {
    await this.call(spec.id, 'start', signal, (guard, params) =>
      this.db.query(
        `INSERT INTO fake_resources SELECT $1, 'running', $5 WHERE ${guard}
         ON CONFLICT (workspace_id) DO UPDATE SET status = 'running', agent_token = EXCLUDED.agent_token RETURNING 1`,
        [spec.id, ...params, typeof spec.agentToken === 'string' ? spec.agentToken : null],
      ),
    );
    return `fake://${spec.id}`;
  }

  async stop(id: string, signal: AbortSignal): Promise<void> {
    // Nothing to delete is fine (stop is idempotent), as long as the lease still holds.
    await this.call(id, 'stop', signal, (guard, params) =>
      this.db.query(`WITH gone AS (DELETE FROM fake_resources WHERE workspace_id = $1 AND ${guard}) SELECT 1 WHERE ${guard}`, [id, ...params]),
    );
  }

  async inspect(id: string): Promise<ProviderResource | null> {
    const { rows } = await this.db.query<{ status: string }>('SELECT status FROM fake_resources WHERE workspace_id = $1', [id]);
    return rows[0] ? { id, status: 'running', endpoint: `fake://${id}` } : null;
  }

  async list(): Promise<ProviderResource[]> {
    const { rows } = await this.db.query<{ workspace_id: string }>('SELECT workspace_id FROM fake_resources');
    return rows.map((r) => ({ id: r.workspace_id, status: 'running' as const, endpoint: `fake://${r.workspace_id}` }));
  }

  /**
   * One statement accepts (or refuses) the call against the lease and claims the workspace's in-flight
   * slot. A slot held under an epoch that is no longer current is stale — its holder lost the lease, and
   * its effect will be refused — so it does not count as a call in flight.
   */
  private async call(
    id: string,
    op: string,
    signal: AbortSignal,
    effect: (guard: string, params: unknown[]) => Promise<{ rowCount: number }>,
  ): Promise<void> {
    const shard = shardOf(id, DEFAULT_SHARDS);
    const { rows } = await this.db.query<{ epoch: number | null; other: string | null }>(
      `WITH lease AS (SELECT epoch FROM shard_leases WHERE shard = $4 AND owner = $2 AND expires_at > now()),
            refused AS (INSERT INTO fake_refused (workspace_id, replica, op) SELECT $1, $2, $3 WHERE NOT EXISTS (SELECT 1 FROM lease)),
            logged AS (INSERT INTO fake_calls (workspace_id, replica, op, shard, epoch) SELECT $1, $2, $3, $4, epoch FROM lease),
            mine AS (
              INSERT INTO fake_inflight (workspace_id, replica, op, shard, epoch) SELECT $1, $2, $3, $4, epoch FROM lease
              ON CONFLICT (workspace_id) DO UPDATE SET replica = EXCLUDED.replica, op = EXCLUDED.op, epoch = EXCLUDED.epoch
                WHERE fake_inflight.replica IN (SELECT replica FROM fake_dead)
                   OR NOT EXISTS (SELECT 1 FROM shard_leases l WHERE l.shard = fake_inflight.shard AND l.owner = fake_inflight.replica
                                  AND l.epoch = fake_inflight.epoch AND l.expires_at > now())
              RETURNING 1)
       SELECT (SELECT epoch FROM lease) AS epoch,
              (SELECT replica FROM fake_inflight WHERE workspace_id = $1 AND EXISTS (SELECT 1 FROM lease) AND NOT EXISTS (SELECT 1 FROM mine)) AS other`,
      [id, this.replica, op, shard],
    );
    const { epoch, other } = rows[0]!;
    if (epoch === null) throw new Error(`fake provider: ${this.replica} does not hold the lease of shard ${shard} (${id}): call refused`);
    if (other !== null) await this.db.query('INSERT INTO fake_violations (workspace_id, replica, other) VALUES ($1, $2, $3)', [id, this.replica, other]);
    try {
      await sleep(this.latencyMs, signal);
      // The effect is fenced too: it lands only while the lease it was accepted under still holds.
      const guard = 'EXISTS (SELECT 1 FROM shard_leases WHERE shard = $2 AND owner = $3 AND epoch = $4 AND expires_at > now())';
      const done = await effect(guard, [shard, this.replica, epoch]);
      if (done.rowCount === 0) {
        await this.db.query('INSERT INTO fake_refused (workspace_id, replica, op) VALUES ($1, $2, $3)', [id, this.replica, `${op} effect`]);
        throw new Error(`fake provider: ${this.replica} lost the lease of shard ${shard} during ${op} of ${id}: effect refused`);
      }
    } finally {
      if (other === null) await this.db.query('DELETE FROM fake_inflight WHERE workspace_id = $1 AND replica = $2 AND epoch = $3', [id, this.replica, epoch]);
    }
  }
}
