/**
 * Prebuild claims. A claim is a conditional UPDATE of the workspace's owner: PostgreSQL re-checks
 * `owner = 'system'` after waiting for a concurrent claimer's row lock, so of two concurrent claims exactly
 * one changes the row and the other sees zero rows. The claim row is written in the same statement.
 */
import type { SqlEngine } from './engine.ts';
import { SYSTEM_OWNER } from './types.ts';

export interface Claim {
  workspaceId: string;
  ownerId: string;
  claimBuildId: string;
  claimedAt: number;
  buildCompletedAt: number | null;
  ackedAt: number | null;
  /** The workspace cycle that is the claim build; null until the supervisor answered the claim's restart. */
  claimCycle: number | null;
}

/** What the agent channel reads in one query: is this a prebuild, and where is its claim. */
export interface AgentView {
  workspaceId: string;
  exists: boolean;
  destroyed: boolean;
  prebuild: boolean;
  claim: Claim | null;
}

export type ClaimAttempt = { won: true; claim: Claim & { already?: true } } | { won: false; currentOwner: string | null };

interface ClaimRow {
  workspace_id: string;
  owner_id: string;
  claim_build_id: string;
  claimed_at: Date;
  build_completed_at: Date | null;
  acked_at: Date | null;
  claim_cycle: number | null;
}

const CLAIM_COLUMNS = 'workspace_id, owner_id, claim_build_id, claimed_at, build_completed_at, acked_at, claim_cycle';
/** The same columns qualified by the alias `c`, for joins. */
const CLAIM_COLUMNS_OF_C = CLAIM_COLUMNS.split(', ').map((c) => `c.${c}`).join(', ');

// One statement: the owner change and the claim row commit together or not at all.
const claimSql = (target: string) => `
  WITH won AS (
    UPDATE workspaces SET owner = $2, version = version + 1, updated_at = now()
    WHERE id = (${target}) AND prebuild AND owner = $4 AND destroyed_at IS NULL
    RETURNING id
  )
  INSERT INTO claims (workspace_id, owner_id, claim_build_id)
  SELECT id, $2, $3 FROM won
  ON CONFLICT (workspace_id) DO UPDATE SET owner_id = EXCLUDED.owner_id, claim_build_id = EXCLUDED.claim_build_id,
    claimed_at = now(), build_completed_at = NULL, acked_at = NULL, claim_cycle = NULL
  RETURNING ${CLAIM_COLUMNS}`;

export class ClaimStore {
  constructor(private readonly engine: SqlEngine) {}

  /** Claim one prebuild if nobody has: `won: false` tells the loser who owns it (null: no such prebuild). */
  async claim(req: { workspaceId: string; ownerId: string; claimBuildId: string }): Promise<ClaimAttempt> {
    const made = await this.once(req.claimBuildId, () => this.engine.query<ClaimRow>(claimSql('$1'), [req.workspaceId, req.ownerId, req.claimBuildId, SYSTEM_OWNER]));
    if (made) return { won: true, claim: made };
    const owner = await this.engine.query<{ owner: string }>(
      'SELECT owner FROM workspaces WHERE id = $1 AND prebuild AND destroyed_at IS NULL',
      [req.workspaceId],
    );
    return { won: false, currentOwner: owner.rows[0]?.owner ?? null };
  }

  /**
   * Claim an unclaimed prebuild of a pool: a running one first (the claimer gets a workspace that is up),
   * then the oldest; null when the pool is empty. SKIP LOCKED lets concurrent claimers take different
   * prebuilds instead of queueing on the same one.
   */
  async claimFromPool(req: { pool: string; ownerId: string; claimBuildId: string }): Promise<(Claim & { already?: true }) | null> {
    const pick = `SELECT id FROM workspaces WHERE pool = $1 AND prebuild AND owner = $4 AND destroyed_at IS NULL
                  ORDER BY state = 'running' DESC, created_at, id LIMIT 1 FOR UPDATE SKIP LOCKED`;
    return this.once(req.claimBuildId, () => this.engine.query<ClaimRow>(claimSql(pick), [req.pool, req.ownerId, req.claimBuildId, SYSTEM_OWNER]));
  }

  /**
   * Run a claim statement; the claim it made, or null when it won nothing. A build id is claimed at most
   * once (unique): when another claim already has it — the same request, sent again while its first
   * attempt was on its way to another prebuild's owner — that claim is the answer, and nothing more is won.
   */
  private async once(claimBuildId: string, run: () => Promise<{ rows: ClaimRow[] }>): Promise<(Claim & { already?: true }) | null> {
    try {
      const { rows } = await run();
      return rows[0] ? toClaim(rows[0]) : null;
    } catch (err) {
      const e = err as { code?: string; constraint?: string; message?: string };
      if (e.code !== '23505' || !(e.constraint === 'claims_build_id_idx' || e.message?.includes('claims_build_id_idx'))) throw err;
      const first = await this.byBuildId(claimBuildId);
      if (!first) throw err;
      return { ...first, already: true };
    }
  }

  async get(workspaceId: string): Promise<Claim | null> {
    const { rows } = await this.engine.query<ClaimRow>(`SELECT ${CLAIM_COLUMNS} FROM claims WHERE workspace_id = $1`, [workspaceId]);
    return rows[0] ? toClaim(rows[0]) : null;
  }

  /** The claim made under `claimBuildId` (a pool claim sent again is found by it), or null. */
  async byBuildId(claimBuildId: string): Promise<Claim | null> {
    const { rows } = await this.engine.query<ClaimRow>(`SELECT ${CLAIM_COLUMNS} FROM claims WHERE claim_build_id = $1`, [claimBuildId]);
    return rows[0] ? toClaim(rows[0]) : null;
  }

  /** Record that the claim build finished. Keyed by build id so a stale build cannot mark a newer claim. */
  async markBuildCompleted(workspaceId: string, claimBuildId: string): Promise<boolean> {
    const { rowCount } = await this.engine.query(
      'UPDATE claims SET build_completed_at = COALESCE(build_completed_at, now()) WHERE workspace_id = $1 AND claim_build_id = $2',
      [workspaceId, claimBuildId],
    );
    return rowCount > 0;
  }

  /**
   * Make `id` a prebuild of `pool` owned by the system owner: insert it (idle, no snapshot yet: the
   * supervisor's first write fills it in) or, if it already is a prebuild, move it to `pool`. False when
   * the id belongs to a workspace that is not a prebuild: a regular workspace never becomes claimable.
   */
  async registerPrebuild(id: string, spec: Record<string, unknown>, pool: string | null): Promise<boolean> {
    const { rows } = await this.engine.query<{ id: string }>(
      `INSERT INTO workspaces (id, spec, desired, state, owner, prebuild, pool, snapshot)
       VALUES ($1, $2::jsonb, 'stopped', 'idle', $4, true, $3, NULL)
       ON CONFLICT (id) DO UPDATE SET pool = EXCLUDED.pool WHERE workspaces.prebuild AND workspaces.destroyed_at IS NULL
       RETURNING id`,
      [id, JSON.stringify(spec), pool, SYSTEM_OWNER],
    );
    return rows.length > 0;
  }

  /** Record which cycle is the claim build (the answer to the claim's restart). */
  async setClaimCycle(workspaceId: string, claimBuildId: string, cycle: number): Promise<void> {
    await this.engine.query('UPDATE claims SET claim_cycle = $3 WHERE workspace_id = $1 AND claim_build_id = $2', [workspaceId, claimBuildId, cycle]);
  }

  /** Every live prebuild's owner and pool (claimed or not): the labels views carry. */
  async prebuildLabels(): Promise<Array<{ id: string; owner: string; pool: string | null }>> {
    const { rows } = await this.engine.query<{ id: string; owner: string; pool: string | null }>(
      'SELECT id, owner, pool FROM workspaces WHERE prebuild AND destroyed_at IS NULL',
    );
    return rows;
  }

  /** Claims of live workspaces whose build has not completed: what a restarted supervisor must finish. */
  async unfinished(): Promise<Claim[]> {
    const { rows } = await this.engine.query<ClaimRow>(
      `SELECT ${CLAIM_COLUMNS_OF_C} FROM claims c JOIN workspaces w ON w.id = c.workspace_id
       WHERE c.build_completed_at IS NULL AND w.destroyed_at IS NULL ORDER BY c.workspace_id`,
    );
    return rows.map(toClaim);
  }

  /** One read for the agent channel: the workspace's prebuild flag and its claim, consistent with each other. */
  async agentView(workspaceId: string): Promise<AgentView> {
    const { rows } = await this.engine.query<ClaimRow & { prebuild: boolean; destroyed_at: Date | null; has_claim: boolean }>(
      `SELECT w.prebuild, w.destroyed_at, c.workspace_id IS NOT NULL AS has_claim,
              ${CLAIM_COLUMNS_OF_C}
       FROM workspaces w LEFT JOIN claims c ON c.workspace_id = w.id WHERE w.id = $1`,
      [workspaceId],
    );
    const r = rows[0];
    if (!r) return { workspaceId, exists: false, destroyed: false, prebuild: false, claim: null };
    return { workspaceId, exists: true, destroyed: r.destroyed_at !== null, prebuild: r.prebuild, claim: r.has_claim ? toClaim(r) : null };
  }

  /** The agent's durable ack of its reinit; false if that claim build is not the current one. */
  async ack(workspaceId: string, claimBuildId: string): Promise<boolean> {
    const { rowCount } = await this.engine.query(
      'UPDATE claims SET acked_at = COALESCE(acked_at, now()) WHERE workspace_id = $1 AND claim_build_id = $2',
      [workspaceId, claimBuildId],
    );
    return rowCount > 0;
  }
}

function toClaim(r: ClaimRow): Claim {
  return {
    workspaceId: r.workspace_id,
    ownerId: r.owner_id,
    claimBuildId: r.claim_build_id,
    claimedAt: r.claimed_at.getTime(),
    buildCompletedAt: r.build_completed_at?.getTime() ?? null,
    ackedAt: r.acked_at?.getTime() ?? null,
    claimCycle: r.claim_cycle ?? null,
  };
}
