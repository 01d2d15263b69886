/**
 * File-write bursts that were acknowledged and have not restarted their workspace yet: one row per
 * workspace, under the label the burst's restart carries as its requester. The row is written when a
 * burst opens (before the first write is acknowledged) and removed once the restart is recorded, so a
 * burst whose owner died in between is found again, and run once (the label is looked up in the log).
 */
import type { SqlEngine } from './engine.ts';

export interface OpenBurst {
  workspaceId: string;
  label: string;
}

export class BurstStore {
  constructor(private readonly engine: SqlEngine) {}

  /**
   * Record a burst opening on `workspaceId` under `label`. It replaces an older row of the workspace: the
   * restart this burst ends in covers whatever that one had not restarted yet. Returns the label.
   */
  async open(workspaceId: string, label: string): Promise<string> {
    const { rows } = await this.engine.query<{ label: string }>(
      `INSERT INTO open_bursts (workspace_id, label) VALUES ($1, $2)
       ON CONFLICT (workspace_id) DO UPDATE SET label = EXCLUDED.label, opened_at = now() RETURNING label`,
      [workspaceId, label],
    );
    return rows[0]!.label;
  }

  /** The burst under `label` restarted its workspace (or never will): forget it. A newer burst's row stays. */
  async close(workspaceId: string, label: string): Promise<void> {
    await this.engine.query('DELETE FROM open_bursts WHERE workspace_id = $1 AND label = $2', [workspaceId, label]);
  }

  /** Every open burst (few: only workspaces being written to right now). */
  async list(): Promise<OpenBurst[]> {
    const { rows } = await this.engine.query<{ workspace_id: string; label: string }>('SELECT workspace_id, label FROM open_bursts ORDER BY opened_at');
    return rows.map((r) => ({ workspaceId: r.workspace_id, label: r.label }));
  }
}
