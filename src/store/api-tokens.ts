/**
 * API tokens in the database: one set for every replica of a cluster. Rows hold the sha256 hash, never the
 * token; the caller hashes (src/server/auth.ts). Every write NOTIFYs the schema's tokens channel in its own
 * transaction, so each replica's cache reloads as the write commits; `fingerprint()` is what a replica polls
 * to catch a notification it missed.
 *
 * @example
 * const tokens = new ApiTokenRows(engine);
 * await tokens.insert({ hash, role: 'operator', label: 'alice', expiresAt: null });
 * await tokens.revoke('alice'); // by label, 6-hex short id or row id; the row stays, revoked
 */
import { WsupError } from '../errors.ts';
import type { SqlEngine, SqlQueryable } from './engine.ts';

/** The label of the token `wsup serve` mints on a cluster's first start (at most one live, by index). */
export const DEFAULT_ADMIN_LABEL = 'default-admin';

/** Arbitrary constant naming "wsup api tokens" in pg_advisory_xact_lock's (int, int) key space. */
const TOKENS_LOCK = 0x77737074;

export interface ApiTokenRow {
  id: number;
  hash: string;
  role: string;
  label: string | null;
  createdAt: number;
  expiresAt: number | null;
  revokedAt: number | null;
}

export interface NewApiToken {
  hash: string;
  role: string;
  label?: string | null;
  expiresAt?: number | null;
  /** For imports: when the token was first issued (default: now). */
  createdAt?: number;
}

/** What changes whenever a token is inserted, revoked or deleted: compared by a replica's poll. */
export type TokenFingerprint = string;

interface Raw {
  id: number;
  hash: string;
  role: string;
  label: string | null;
  created_at: Date;
  expires_at: Date | null;
  revoked_at: Date | null;
}

const COLUMNS = 'id, hash, role, label, created_at, expires_at, revoked_at';
/** Per schema, and short whatever the schema's name (a channel name has at most 63 bytes). */
const CHANNEL = `'wsup_tokens_' || left(md5(current_schema()), 16)`;
const NOTIFY = `SELECT pg_notify(${CHANNEL}, '')`;

const rowOf = (r: Raw): ApiTokenRow => ({
  id: Number(r.id),
  hash: r.hash,
  role: r.role,
  label: r.label,
  createdAt: r.created_at.getTime(),
  expiresAt: r.expires_at?.getTime() ?? null,
  revokedAt: r.revoked_at?.getTime() ?? null,
});

const iso = (ms: number | null | undefined): string | null => (ms === null || ms === undefined ? null : new Date(ms).toISOString());

export class ApiTokenRows {
  constructor(private readonly engine: SqlEngine) {}

  /** The channel this schema's token writes are announced on (LISTEN on it to hear them). */
  async channel(): Promise<string> {
    const { rows } = await this.engine.query<{ channel: string }>(`SELECT ${CHANNEL} AS channel`);
    return rows[0]!.channel;
  }

  /** Tokens that may still verify (not revoked; expiry is the verifier's to judge, per call). */
  async live(): Promise<ApiTokenRow[]> {
    const { rows } = await this.engine.query<Raw>(`SELECT ${COLUMNS} FROM api_tokens WHERE revoked_at IS NULL ORDER BY id`);
    return rows.map(rowOf);
  }

  /** Every token, revoked ones too, oldest first. */
  async all(): Promise<ApiTokenRow[]> {
    const { rows } = await this.engine.query<Raw>(`SELECT ${COLUMNS} FROM api_tokens ORDER BY id`);
    return rows.map(rowOf);
  }

  async fingerprint(): Promise<TokenFingerprint> {
    const { rows } = await this.engine.query<{ n: number; top: number; revoked: number }>(
      'SELECT count(*)::int AS n, coalesce(max(id), 0)::int AS top, count(revoked_at)::int AS revoked FROM api_tokens',
    );
    const r = rows[0]!;
    return `${r.n}:${r.top}:${r.revoked}`;
  }

  async insert(t: NewApiToken): Promise<ApiTokenRow> {
    return this.engine.transaction(async (tx) => {
      const row = await insertRow(tx, t);
      if (!row) throw new WsupError('WSUP_INVALID_ARGUMENT', `a live ${DEFAULT_ADMIN_LABEL} token exists already: rotate it instead`);
      await tx.query(NOTIFY);
      return row;
    });
  }

  /** Revoke every live token with this label, 6-hex short id or row id; returns the revoked rows. */
  async revoke(idOrLabel: string): Promise<ApiTokenRow[]> {
    return this.engine.transaction(async (tx) => {
      const { rows } = await tx.query<Raw>(
        `UPDATE api_tokens SET revoked_at = now()
         WHERE revoked_at IS NULL AND (label = $1 OR left(hash, 6) = $1 OR id::text = $1)
         RETURNING ${COLUMNS}`,
        [idOrLabel],
      );
      if (rows.length > 0) await tx.query(NOTIFY);
      return rows.map(rowOf);
    });
  }

  /**
   * Replace the default admin token: the live one is revoked and `hash` takes its place, in one transaction.
   * `beforeCommit` runs inside it (write the plain token where the CLI finds it), so a failure there leaves
   * the old token working.
   */
  async rotateAdmin(hash: string, beforeCommit: () => void): Promise<ApiTokenRow> {
    return this.engine.transaction(async (tx) => {
      await tx.query('SELECT pg_advisory_xact_lock($1, hashtext(current_schema()))', [TOKENS_LOCK]);
      await tx.query(`UPDATE api_tokens SET revoked_at = now() WHERE label = $1 AND revoked_at IS NULL`, [DEFAULT_ADMIN_LABEL]);
      const row = await insertRow(tx, { hash, role: 'admin', label: DEFAULT_ADMIN_LABEL });
      beforeCommit();
      await tx.query(NOTIFY);
      return row!;
    });
  }

  /**
   * A cluster's first start, run by every replica as it starts, once at a time (an advisory lock): when the
   * table has never held a token, `imports` (a single node's token file) go in first; then, when no live
   * default admin token exists, `mint()` gives one, whose `beforeCommit` writes its plain text out.
   * Exactly one replica mints, however many start at once.
   */
  async bootstrap(
    imports: () => NewApiToken[],
    mint: () => { hash: string; beforeCommit: () => void },
  ): Promise<{ imported: number; minted: ApiTokenRow | null }> {
    return this.engine.transaction(async (tx) => {
      await tx.query('SELECT pg_advisory_xact_lock($1, hashtext(current_schema()))', [TOKENS_LOCK]);
      let imported = 0;
      const { rows: any } = await tx.query('SELECT 1 FROM api_tokens LIMIT 1');
      if (any.length === 0) for (const t of imports()) if (await insertRow(tx, t)) imported++;
      const { rows: admins } = await tx.query('SELECT 1 FROM api_tokens WHERE label = $1 AND revoked_at IS NULL', [DEFAULT_ADMIN_LABEL]);
      let minted: ApiTokenRow | null = null;
      if (admins.length === 0) {
        const m = mint();
        minted = await insertRow(tx, { hash: m.hash, role: 'admin', label: DEFAULT_ADMIN_LABEL });
        if (minted) m.beforeCommit();
      }
      if (imported > 0 || minted) await tx.query(NOTIFY);
      return { imported, minted };
    });
  }

  /** Add tokens (a token file's) that are not here yet; a second live default admin is skipped. */
  async import(tokens: NewApiToken[]): Promise<{ imported: number; skipped: number }> {
    return this.engine.transaction(async (tx) => {
      let imported = 0;
      for (const t of tokens) if (await insertRow(tx, t)) imported++;
      if (imported > 0) await tx.query(NOTIFY);
      return { imported, skipped: tokens.length - imported };
    });
  }
}

/** Insert one token; null when its hash, or a live default admin, is already there. */
async function insertRow(tx: SqlQueryable, t: NewApiToken): Promise<ApiTokenRow | null> {
  const { rows } = await tx.query<Raw>(
    `INSERT INTO api_tokens (hash, role, label, created_at, expires_at) VALUES ($1, $2, $3, coalesce($4::timestamptz, now()), $5)
     ON CONFLICT DO NOTHING RETURNING ${COLUMNS}`,
    [t.hash, t.role, t.label ?? null, iso(t.createdAt), iso(t.expiresAt)],
  );
  return rows[0] ? rowOf(rows[0]) : null;
}
