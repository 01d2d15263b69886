/**
 * Prebuild claims (issue 7). A claim is a conditional UPDATE of the workspace's owner: PostgreSQL re-checks
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
}

export type ClaimAttempt = { won: true; claim: Claim } | { won: false; currentOwner: string | null };

interface ClaimRow {
  workspace_id: string;
  owner_id: string;
  claim_build_id: string;
  claimed_at: Date;
  build_completed_at: Date | null;
  acked_at: Date | null;
}

const CLAIM_COLUMNS = 'workspace_id, owner_id, claim_build_id, claimed_at, build_completed_at, acked_at';

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
    claimed_at = now(), build_completed_at = NULL, acked_at = NULL
  RETURNING ${CLAIM_COLUMNS}`;

export class ClaimStore {
  constructor(private readonly engine: SqlEngine) {}

  /** Claim one prebuild if nobody has: `won: false` tells the loser who owns it (null: no such prebuild). */
  async claim(req: { workspaceId: string; ownerId: string; claimBuildId: string }): Promise<ClaimAttempt> {
    const { rows } = await this.engine.query<ClaimRow>(claimSql('$1'), [req.workspaceId, req.ownerId, req.claimBuildId, SYSTEM_OWNER]);
    if (rows[0]) return { won: true, claim: toClaim(rows[0]) };
    const owner = await this.engine.query<{ owner: string }>(
      'SELECT owner FROM workspaces WHERE id = $1 AND prebuild AND destroyed_at IS NULL',
      [req.workspaceId],
    );
    return { won: false, currentOwner: owner.rows[0]?.owner ?? null };
  }

  /**
   * Claim the oldest unclaimed prebuild of a pool; null when the pool is empty. SKIP LOCKED lets concurrent
   * claimers take different prebuilds instead of queueing on the same one.
   */
  async claimFromPool(req: { pool: string; ownerId: string; claimBuildId: string }): Promise<Claim | null> {
    const pick = `SELECT id FROM workspaces WHERE pool = $1 AND prebuild AND owner = $4 AND destroyed_at IS NULL
                  ORDER BY created_at, id LIMIT 1 FOR UPDATE SKIP LOCKED`;
    const { rows } = await this.engine.query<ClaimRow>(claimSql(pick), [req.pool, req.ownerId, req.claimBuildId, SYSTEM_OWNER]);
    return rows[0] ? toClaim(rows[0]) : null;
  }

  async get(workspaceId: string): Promise<Claim | null> {
    const { rows } = await this.engine.query<ClaimRow>(`SELECT ${CLAIM_COLUMNS} FROM claims WHERE workspace_id = $1`, [workspaceId]);
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
  };
}
