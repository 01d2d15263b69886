/**
 * API tokens of a cluster, verified against the database: every replica keeps the live tokens (hashes,
 * roles, labels, expiries) in memory and reloads them when a write is announced (call `refresh()` from a
 * LISTEN on `channel()`), and on its own every `pollMs` when the table's fingerprint changed, so a lost
 * notification delays a revocation by at most `pollMs`. `verify` stays synchronous and never touches the
 * database: a flood of unknown tokens costs hash lookups in memory, not round trips.
 *
 * The server's periodic re-check of open sockets (`EdgeOptions.recheckMs`) verifies each socket's token
 * against this cache again, so a token revoked on any replica closes its sockets on every replica.
 *
 * @example
 * const tokens = await DbTokens.open({ engine });
 * const { admin } = await tokens.bootstrap('.wsup');     // first start: import tokens.json, mint one admin
 * const server = createServer({ supervisor, tokens });
 * await issueDbToken(engine, 'operator', { label: 'alice' }); // any replica (or the CLI) — all see it
 */
import { ROLES, type Role } from '../protocol/index.ts';
import { ApiTokenRows, type ApiTokenRow, type NewApiToken, type TokenFingerprint } from '../store/api-tokens.ts';
import type { SqlEngine } from '../store/engine.ts';
import { hashToken, newToken, tokenIdOf, TokenFile, writePrivate, type Principal, type TokenVerifier } from './auth.ts';
import { systemServerClock, type ServerClock } from './limits.ts';

export interface DbTokensOptions {
  engine: SqlEngine;
  /** Longest a missed notification can hide a change. Default 1000 ms. */
  pollMs?: number;
  /** Wall time for expiries (epoch ms). Default Date.now. */
  now?: () => number;
  /** Runs the poll (tests drive it). Default: an unref'd setInterval. */
  clock?: Pick<ServerClock, 'setInterval' | 'clearInterval'>;
  onError?: (err: unknown, what: string) => void;
}

interface Live {
  role: Role;
  label: string | null;
  expiresAt: number | null;
}

export class DbTokens implements TokenVerifier {
  readonly rows: ApiTokenRows;
  private byHash = new Map<string, Live>();
  private loaded: TokenFingerprint = '';
  private loading: Promise<void> | null = null;
  private again = false;
  private stopPoll: (() => void) | null = null;
  private closed = false;
  /** Reads of the database so far: loads of the token set, and polls of its fingerprint. */
  readonly stats = { loads: 0, polls: 0 };

  private constructor(private readonly opts: DbTokensOptions) {
    this.rows = new ApiTokenRows(opts.engine);
  }

  /** Load the live tokens and start polling. */
  static async open(opts: DbTokensOptions): Promise<DbTokens> {
    const t = new DbTokens(opts);
    await t.refresh();
    const clock = opts.clock ?? systemServerClock;
    const h = clock.setInterval(() => void t.poll(), opts.pollMs ?? 1000);
    t.stopPoll = () => clock.clearInterval(h);
    return t;
  }

  verify(token: string): Principal | null {
    const hash = hashToken(token);
    const e = this.byHash.get(hash);
    if (!e || (e.expiresAt !== null && e.expiresAt <= (this.opts.now ?? Date.now)())) return null;
    return e.label !== null ? { role: e.role, label: e.label, tokenId: tokenIdOf(hash) } : { role: e.role, tokenId: tokenIdOf(hash) };
  }

  /** The NOTIFY channel token writes are announced on. */
  channel(): Promise<string> {
    return this.rows.channel();
  }

  /** Reload the live tokens; calls during a reload make one more reload after it (it may have missed them). */
  refresh(): Promise<void> {
    if (this.loading) {
      this.again = true;
      return this.loading;
    }
    this.loading = (async () => {
      do {
        this.again = false;
        // The fingerprint first: a write landing between the two reads makes the next poll reload.
        const fp = await this.rows.fingerprint();
        const rows = await this.rows.live();
        this.stats.loads++;
        this.byHash = new Map(rows.filter((r) => isRole(r.role)).map((r) => [r.hash, { role: r.role as Role, label: r.label, expiresAt: r.expiresAt }]));
        this.loaded = fp;
      } while (this.again && !this.closed);
    })().finally(() => {
      this.loading = null;
    });
    return this.loading;
  }

  /**
   * First start of a replica: when the cluster has never had a token, the tokens of `dataDir`'s
   * `tokens.json` (a single node's) are imported; when it has no live default admin token, one is minted
   * and written to `<dataDir>/admin.token`. Returns the admin token of `dataDir` if it verifies.
   */
  async bootstrap(dataDir: string): Promise<{ admin: string | null; created: boolean; imported: number; adminPath: string }> {
    const file = TokenFile.in(dataDir);
    let minted: string | null = null;
    const r = await this.rows.bootstrap(
      () => tokenFileRows(file),
      () => {
        minted = newToken();
        return { hash: hashToken(minted), beforeCommit: () => writePrivate(file.adminPath, `${minted}\n`) };
      },
    );
    await this.refresh();
    const local = file.readAdmin();
    const admin = local !== null && this.verify(local)?.role === 'admin' ? local : null;
    return { admin, created: r.minted !== null, imported: r.imported, adminPath: file.adminPath };
  }

  close(): void {
    this.closed = true;
    this.stopPoll?.();
  }

  /** One poll: reload when the table changed since the last load. Returns whether it reloaded. */
  async poll(): Promise<boolean> {
    if (this.closed || this.loading) return false;
    try {
      this.stats.polls++;
      if ((await this.rows.fingerprint()) === this.loaded) return false;
      await this.refresh();
      return true;
    } catch (err) {
      // The tokens known so far stay in force until the database answers again.
      this.opts.onError?.(err, 'reading the API tokens failed: the tokens loaded last stay in force');
      return false;
    }
  }
}

const isRole = (r: string): r is Role => (ROLES as readonly string[]).includes(r);

/** Issue a token for the whole cluster; only its hash is stored. Returns the token. */
export async function issueDbToken(engine: SqlEngine, role: Role, opts: { label?: string; expiresAt?: number | null } = {}): Promise<{ token: string; row: ApiTokenRow }> {
  const token = newToken();
  const row = await new ApiTokenRows(engine).insert({ hash: hashToken(token), role, label: opts.label ?? null, expiresAt: opts.expiresAt ?? null });
  return { token, row };
}

/** Replace the cluster's default admin token and write the new one to `<dataDir>/admin.token`. */
export async function rotateDbAdmin(engine: SqlEngine, dataDir: string): Promise<{ token: string; path: string }> {
  const file = TokenFile.in(dataDir);
  const token = newToken();
  await new ApiTokenRows(engine).rotateAdmin(hashToken(token), () => writePrivate(file.adminPath, `${token}\n`));
  return { token, path: file.adminPath };
}

/** A single node's token file as rows to import. */
export function tokenFileRows(file: TokenFile): NewApiToken[] {
  return file.list().map((e) => ({ hash: e.hash, role: e.role, label: e.label ?? null, createdAt: e.createdAt, expiresAt: e.expiresAt }));
}
