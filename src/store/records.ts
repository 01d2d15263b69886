/**
 * Agent and API tokens, and the local-process provider's records. Tokens are stored as sha256 hex only;
 * lookups hash the presented token, so the plaintext never reaches the database or its dumps.
 */
import { createHash } from 'node:crypto';
import type { SqlEngine } from './engine.ts';

export const hashToken = (token: string): string => createHash('sha256').update(token, 'utf8').digest('hex');

export interface ApiToken {
  role: string;
  createdAt: number;
  expiresAt: number | null;
}

export class TokenStore {
  constructor(private readonly engine: SqlEngine) {}

  /** Set or rotate a workspace's agent token (the previous one stops working at once). */
  async setAgentToken(workspaceId: string, token: string): Promise<void> {
    await this.engine.query(
      `INSERT INTO agent_tokens (workspace_id, token_hash) VALUES ($1, $2)
       ON CONFLICT (workspace_id) DO UPDATE SET token_hash = EXCLUDED.token_hash, rotated_at = now()`,
      [workspaceId, hashToken(token)],
    );
  }

  /** The workspace this agent token belongs to, or null. */
  async agentTokenWorkspace(token: string): Promise<string | null> {
    const { rows } = await this.engine.query<{ workspace_id: string }>(
      'SELECT workspace_id FROM agent_tokens WHERE token_hash = $1',
      [hashToken(token)],
    );
    return rows[0]?.workspace_id ?? null;
  }

  async deleteAgentToken(workspaceId: string): Promise<void> {
    await this.engine.query('DELETE FROM agent_tokens WHERE workspace_id = $1', [workspaceId]);
  }

  async addApiToken(token: string, role: string, expiresAt: number | null = null): Promise<void> {
    await this.engine.query(
      `INSERT INTO api_tokens (hash, role, expires_at) VALUES ($1, $2, $3)
       ON CONFLICT (hash) DO UPDATE SET role = EXCLUDED.role, expires_at = EXCLUDED.expires_at`,
      [hashToken(token), role, expiresAt === null ? null : new Date(expiresAt).toISOString()],
    );
  }

  /** The token's role if it exists and has not expired (by the database clock). */
  async findApiToken(token: string): Promise<ApiToken | null> {
    const { rows } = await this.engine.query<{ role: string; created_at: Date; expires_at: Date | null }>(
      'SELECT role, created_at, expires_at FROM api_tokens WHERE hash = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())',
      [hashToken(token)],
    );
    const r = rows[0];
    return r ? { role: r.role, createdAt: r.created_at.getTime(), expiresAt: r.expires_at?.getTime() ?? null } : null;
  }

  async revokeApiToken(token: string): Promise<boolean> {
    const { rowCount } = await this.engine.query('DELETE FROM api_tokens WHERE hash = $1', [hashToken(token)]);
    return rowCount > 0;
  }
}

/** What the local-process provider needs to find its processes again after a restart (pid, ports...). */
export class ProcessRecordStore {
  constructor(private readonly engine: SqlEngine) {}

  async put(workspaceId: string, data: Record<string, unknown>): Promise<void> {
    await this.engine.query(
      `INSERT INTO process_records (workspace_id, data) VALUES ($1, $2::jsonb)
       ON CONFLICT (workspace_id) DO UPDATE SET data = EXCLUDED.data`,
      [workspaceId, JSON.stringify(data)],
    );
  }

  async get(workspaceId: string): Promise<Record<string, unknown> | null> {
    const { rows } = await this.engine.query<{ data: Record<string, unknown> }>(
      'SELECT data FROM process_records WHERE workspace_id = $1',
      [workspaceId],
    );
    return rows[0]?.data ?? null;
  }

  async list(): Promise<Array<{ workspaceId: string; data: Record<string, unknown> }>> {
    const { rows } = await this.engine.query<{ workspace_id: string; data: Record<string, unknown> }>(
      'SELECT workspace_id, data FROM process_records ORDER BY workspace_id',
    );
    return rows.map((r) => ({ workspaceId: r.workspace_id, data: r.data }));
  }

  async delete(workspaceId: string): Promise<void> {
    await this.engine.query('DELETE FROM process_records WHERE workspace_id = $1', [workspaceId]);
  }
}
