/**
 * API tokens: bearer tokens on the WebSocket upgrade, each with a role and an optional expiry.
 *
 * The token file (`<dataDir>/tokens.json`, mode 0600) stores sha256 hashes only. The embedded default also
 * keeps the admin token in plain text in `<dataDir>/admin.token` (0600) so the local CLI can find it, the
 * way `~/.docker/config.json` or a kubeconfig does. The file is re-read when its mtime changes, so
 * `wsup token --rotate` takes effect on a running server without a restart. A cluster's replicas verify
 * against the database instead (db-tokens.ts).
 *
 * @example
 * const tokens = TokenFile.in('.wsup');
 * const { token } = tokens.ensureAdmin();
 * tokens.verify(token); // { role: 'admin', label: 'default-admin', tokenId: '3f9a1c' }
 */
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { ROLES, type Role } from '../protocol/index.ts';
import { DEFAULT_ADMIN_LABEL } from '../store/api-tokens.ts';

/** Who a token speaks for: its role, its label when it has one, and a short id derived from its hash. */
export interface Principal {
  role: Role;
  label?: string;
  tokenId: string;
}

export interface TokenVerifier {
  /**
   * The token's principal, or null when unknown or expired. Synchronous: it runs on every upgrade and on
   * the server's periodic re-check of open sockets, so it must stay cheap (no file read per call).
   */
  verify(token: string): Principal | null;
}

/** The first 6 hex digits of a token's hash: enough to tell tokens apart in logs, useless to an attacker. */
export const tokenIdOf = (hash: string): string => hash.slice(0, 6);

/** How a principal is named as a requester: its label, or `role:tokenId`. */
export const principalName = (p: Principal): string => p.label ?? `${p.role}:${p.tokenId}`;

const principalOf = (hash: string, role: Role, label: string | undefined): Principal =>
  label !== undefined ? { role, label, tokenId: tokenIdOf(hash) } : { role, tokenId: tokenIdOf(hash) };

export const hashToken = (token: string): string => createHash('sha256').update(token, 'utf8').digest('hex');
export const newToken = (): string => `wsup_${randomBytes(24).toString('base64url')}`;

const entrySchema = z.object({
  hash: z.string().regex(/^[0-9a-f]{64}$/),
  role: z.enum(ROLES),
  createdAt: z.number(),
  expiresAt: z.number().nullable(),
  label: z.string().optional(),
});
const fileSchema = z.object({ version: z.literal(1), tokens: z.array(entrySchema) });
export type TokenEntry = z.infer<typeof entrySchema>;

/** The label of the admin token `wsup serve` makes on first start, in a file or the cluster's database. */
export const ADMIN_LABEL = DEFAULT_ADMIN_LABEL;

/** In-memory tokens (plain text in, hashed at once), for embedding and tests. */
export function staticTokens(
  list: Array<{ token: string; role: Role; expiresAt?: number | null; label?: string }>,
  now: () => number = Date.now,
): TokenVerifier {
  const byHash = new Map(list.map((t) => [hashToken(t.token), { role: t.role, expiresAt: t.expiresAt ?? null, label: t.label }]));
  return {
    verify(token) {
      const hash = hashToken(token);
      const e = byHash.get(hash);
      if (!e || (e.expiresAt !== null && e.expiresAt <= now())) return null;
      return principalOf(hash, e.role, e.label);
    },
  };
}

export class TokenFile implements TokenVerifier {
  private entries = new Map<string, TokenEntry>();
  /** Inode + mtime of the file last read: every save is a rename, so a new inode means new content. */
  private version = '';

  constructor(
    readonly path: string,
    readonly adminPath: string,
    private readonly now: () => number = Date.now,
  ) {}

  /** The token files of a data dir. */
  static in(dataDir: string, now?: () => number): TokenFile {
    return new TokenFile(join(dataDir, 'tokens.json'), join(dataDir, 'admin.token'), now);
  }

  verify(token: string): Principal | null {
    this.reload();
    const hash = hashToken(token);
    const e = this.entries.get(hash);
    if (!e || (e.expiresAt !== null && e.expiresAt <= this.now())) return null;
    return principalOf(hash, e.role, e.label);
  }

  /** Drop a token by its id (see `tokenIdOf`) or label; sockets opened with it are closed at the next re-check. */
  remove(idOrLabel: string): number {
    this.reload();
    let n = 0;
    for (const [h, e] of this.entries) {
      if (tokenIdOf(h) === idOrLabel || e.label === idOrLabel) {
        this.entries.delete(h);
        n++;
      }
    }
    if (n > 0) this.save();
    return n;
  }

  /** First start: make an admin token unless one is stored. `created` says whether it is new. */
  ensureAdmin(): { token: string; created: boolean } {
    const existing = this.readAdmin();
    if (existing !== null && this.verify(existing)?.role === 'admin') return { token: existing, created: false };
    return { token: this.rotateAdmin(), created: true };
  }

  /** Replace the default admin token; the old one stops working as soon as the server sees the file. */
  rotateAdmin(): string {
    this.reload();
    for (const [h, e] of this.entries) if (e.label === ADMIN_LABEL) this.entries.delete(h);
    const token = this.add('admin', { label: ADMIN_LABEL });
    writePrivate(this.adminPath, `${token}\n`);
    return token;
  }

  /** Issue a token; only its hash is stored. */
  add(role: Role, opts: { expiresAt?: number | null; label?: string } = {}): string {
    this.reload();
    const token = newToken();
    const entry: TokenEntry = { hash: hashToken(token), role, createdAt: this.now(), expiresAt: opts.expiresAt ?? null };
    if (opts.label !== undefined) entry.label = opts.label;
    this.entries.set(entry.hash, entry);
    this.save();
    return token;
  }

  /** Every token of the file (hashes), expired ones too: what a cluster imports on its first start. */
  list(): TokenEntry[] {
    this.reload();
    return [...this.entries.values()];
  }

  /** The plain-text admin token of the embedded default, if present. */
  readAdmin(): string | null {
    try {
      return readFileSync(this.adminPath, 'utf8').trim() || null;
    } catch {
      return null;
    }
  }

  private reload(): void {
    let version: string;
    try {
      const st = statSync(this.path);
      version = `${st.ino}:${st.mtimeMs}`;
    } catch {
      this.entries.clear();
      this.version = '';
      return;
    }
    if (version === this.version) return;
    const parsed = fileSchema.safeParse(JSON.parse(readFileSync(this.path, 'utf8')));
    if (!parsed.success) throw new Error(`token file ${this.path} is invalid (${parsed.error.message}): fix or delete it`);
    this.entries = new Map(parsed.data.tokens.map((e) => [e.hash, e]));
    this.version = version;
  }

  private save(): void {
    writePrivate(this.path, JSON.stringify({ version: 1, tokens: [...this.entries.values()] }, null, 2));
    const st = statSync(this.path);
    this.version = `${st.ino}:${st.mtimeMs}`;
  }
}

/** Write atomically with mode 0600 (temp file + rename), creating the directory 0700. */
export function writePrivate(path: string, text: string): void {
  const dir = join(path, '..');
  if (!existsSync(dir)) mkdirSync(dir, { recursive: true, mode: 0o700 });
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  writeFileSync(tmp, text, { mode: 0o600 });
  chmodSync(tmp, 0o600);
  renameSync(tmp, path);
}
