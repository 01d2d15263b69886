/**
 * Prebuild pools: one durable row per pool (what it keeps, and how its template has been doing), and the
 * reads and guarded writes its reconciler makes on the pool's prebuilds.
 *
 * Times that come from the supervisor's clock (`backoffUntil`, `lastError.at`) are stored as epoch ms
 * (bigint), not timestamptz: a simulated clock's times must come back exactly as they were written.
 */
import type { SqlEngine } from './engine.ts';
import { SYSTEM_OWNER } from './types.ts';

/**
 * The owner of a prebuild its pool took back to destroy it. A claim needs the system owner, so once this
 * is set no claim can win the prebuild any more: the reconciler destroys only what it retired.
 */
export const RETIRED_OWNER = 'system:retired';

export interface PoolRecord {
  pool: string;
  desired: number;
  /** The template the spec was rendered from; null for a raw spec. */
  template: string | null;
  params: Record<string, unknown> | null;
  /** The provider spec every prebuild of the pool is made with. */
  spec: Record<string, unknown>;
  /** The pool's policy layer (each prebuild's `wsupPolicyDefaults`); null for none. */
  policy: Record<string, unknown> | null;
  /** Prebuild starts that failed since the last one that completed. */
  failures: number;
  lastError: { message: string; at: number } | null;
  backoffUntil: number | null;
  createdAt: number;
}

export type PoolDefinition = Pick<PoolRecord, 'pool' | 'desired' | 'template' | 'params' | 'spec' | 'policy'>;
export type PoolHealth = Pick<PoolRecord, 'failures' | 'lastError' | 'backoffUntil'>;

/** A live prebuild of a pool, claimed or not. */
export interface PoolMember {
  id: string;
  owner: string;
  /** Its owner holds a claim on it: a user's workspace now, whatever the owner's name looks like. */
  claimed: boolean;
  createdAt: number;
}

interface PoolRow {
  pool: string;
  desired: number;
  template: string | null;
  params: Record<string, unknown> | null;
  spec: Record<string, unknown>;
  policy: Record<string, unknown> | null;
  failures: number;
  last_error: { message: string; at: number } | null;
  backoff_until: string | number | null;
  created_at: Date;
}

const POOL_COLUMNS = 'pool, desired, template, params, spec, policy, failures, last_error, backoff_until, created_at';
const json = (v: unknown): string | null => (v === null ? null : JSON.stringify(v));

export class PoolStore {
  constructor(private readonly engine: SqlEngine) {}

  async list(): Promise<PoolRecord[]> {
    const { rows } = await this.engine.query<PoolRow>(`SELECT ${POOL_COLUMNS} FROM pools ORDER BY pool`);
    return rows.map(toPool);
  }

  async get(pool: string): Promise<PoolRecord | null> {
    const { rows } = await this.engine.query<PoolRow>(`SELECT ${POOL_COLUMNS} FROM pools WHERE pool = $1`, [pool]);
    return rows[0] ? toPool(rows[0]) : null;
  }

  async count(): Promise<number> {
    const { rows } = await this.engine.query<{ n: string | number }>('SELECT count(*) AS n FROM pools');
    return Number(rows[0]?.n ?? 0);
  }

  /** Create the pool or change what it keeps; its failure count and backoff are kept as they are. */
  async put(def: PoolDefinition): Promise<PoolRecord> {
    const { rows } = await this.engine.query<PoolRow>(
      `INSERT INTO pools (pool, desired, template, params, spec, policy) VALUES ($1, $2, $3, $4::jsonb, $5::jsonb, $6::jsonb)
       ON CONFLICT (pool) DO UPDATE SET desired = EXCLUDED.desired, template = EXCLUDED.template, params = EXCLUDED.params,
         spec = EXCLUDED.spec, policy = EXCLUDED.policy, updated_at = now()
       RETURNING ${POOL_COLUMNS}`,
      [def.pool, def.desired, def.template, json(def.params), JSON.stringify(def.spec), json(def.policy)],
    );
    return toPool(rows[0]!);
  }

  /** Record how the pool's prebuild starts are going. False when the pool no longer exists. */
  async setHealth(pool: string, h: PoolHealth): Promise<boolean> {
    const { rowCount } = await this.engine.query(
      'UPDATE pools SET failures = $2, last_error = $3::jsonb, backoff_until = $4, updated_at = now() WHERE pool = $1',
      [pool, h.failures, json(h.lastError), h.backoffUntil],
    );
    return rowCount > 0;
  }

  async delete(pool: string): Promise<boolean> {
    const { rowCount } = await this.engine.query('DELETE FROM pools WHERE pool = $1', [pool]);
    return rowCount > 0;
  }

  /** The pool's live prebuilds, oldest first. */
  async members(pool: string): Promise<PoolMember[]> {
    const { rows } = await this.engine.query<{ id: string; owner: string; claimed: boolean; created_at: Date }>(
      `SELECT w.id, w.owner, w.created_at, EXISTS (SELECT 1 FROM claims c WHERE c.workspace_id = w.id AND c.owner_id = w.owner) AS claimed
       FROM workspaces w WHERE w.pool = $1 AND w.prebuild AND w.destroyed_at IS NULL ORDER BY w.created_at, w.id`,
      [pool],
    );
    return rows.map((r) => ({ id: r.id, owner: r.owner, claimed: r.claimed, createdAt: r.created_at.getTime() }));
  }

  /**
   * Take unclaimed prebuilds back from the pool so they can be destroyed: one conditional UPDATE, so of a
   * claim and a retire of the same prebuild exactly one wins. Answers the ids retired (claimed ones are not).
   */
  async retire(ids: readonly string[]): Promise<string[]> {
    if (ids.length === 0) return [];
    const { rows } = await this.engine.query<{ id: string }>(
      `UPDATE workspaces SET owner = $2, version = version + 1, updated_at = now()
       WHERE id = ANY($1::text[]) AND prebuild AND owner = $3 AND destroyed_at IS NULL RETURNING id`,
      [ids, RETIRED_OWNER, SYSTEM_OWNER],
    );
    return rows.map((r) => r.id);
  }
}

function toPool(r: PoolRow): PoolRecord {
  return {
    pool: r.pool,
    desired: r.desired,
    template: r.template,
    params: r.params,
    spec: r.spec,
    policy: r.policy,
    failures: r.failures,
    lastError: r.last_error,
    backoffUntil: r.backoff_until === null ? null : Number(r.backoff_until),
    createdAt: r.created_at.getTime(),
  };
}
