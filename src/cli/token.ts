/**
 * `wsup token`: print the local admin token, rotate it, issue a role token with an expiry, list or remove
 * tokens. A single node's tokens are the data dir's token files (a running server re-reads them); a
 * cluster's are in its database (`--cluster` with DATABASE_URL, or `--database-url`), which every replica
 * reloads on the write's notification. Either way it needs no connection to a server.
 *
 * @example
 * wsup token --add operator --label alice --expires-in 7d           # single node: <data-dir>/tokens.json
 * wsup token --cluster --add operator --label alice                  # a cluster: DATABASE_URL
 * wsup token --cluster --remove alice                                 # closes alice's sockets on every replica
 * wsup token --cluster --list
 */
import { resolve } from 'node:path';
import { errorMessage, WsupError } from '../errors.ts';
import { ROLES, type Role } from '../protocol/index.ts';
import { ADMIN_LABEL, hashToken, TokenFile, tokenIdOf } from '../server/auth.ts';
import type { SqlEngine } from '../store/index.ts';
import { parseDuration } from './duration.ts';
import { emit, table } from './output.ts';

export interface TokenFlags {
  dataDir: string;
  rotate?: boolean;
  add?: string;
  label?: string;
  remove?: string;
  expiresIn?: string;
  list?: boolean;
  /** Import a single node's tokens.json into the cluster's database (path, or true: the data dir's). */
  import?: string | boolean;
  cluster?: boolean;
  databaseUrl?: string;
  json?: boolean;
}

/** A label names a requester in cycles, history and logs: no spaces, no `:` or `#` (those separate a role, token id and request number). */
const LABEL = /^[A-Za-z0-9._@-]{1,64}$/;

interface Listed {
  id?: number;
  tokenId: string;
  role: string;
  label: string | null;
  createdAt: number;
  expiresAt: number | null;
  revokedAt?: number | null;
}

const fail = (code: number, message: string): number => {
  process.stderr.write(`wsup: ${message}\n`);
  return code;
};

export async function token(f: TokenFlags): Promise<number> {
  const dataDir = resolve(f.dataDir);
  const url = f.databaseUrl ?? (f.cluster ? process.env.DATABASE_URL : undefined);
  if (f.cluster && !url) return fail(2, '--cluster keeps tokens in PostgreSQL: pass --database-url or set DATABASE_URL');
  let issue: { role: Role; label?: string; expiresAt: number | null } | null = null;
  if (f.add !== undefined) {
    if (!ROLES.includes(f.add as Role)) return fail(2, `--add takes a role: ${ROLES.join(', ')}`);
    const ttl = f.expiresIn === undefined ? null : parseDuration(f.expiresIn);
    if (f.expiresIn !== undefined && ttl === null) return fail(2, '--expires-in takes a duration like 90s, 15m, 12h, 7d');
    if (f.label !== undefined && !LABEL.test(f.label)) return fail(2, '--label takes 1-64 letters, digits, . _ @ or -');
    if (f.label === ADMIN_LABEL) return fail(2, `--label ${ADMIN_LABEL} is the server's own admin token: use --rotate to replace it`);
    issue = { role: f.add as Role, ...(f.label !== undefined ? { label: f.label } : {}), expiresAt: ttl === null ? null : Date.now() + ttl };
  }
  if (f.import !== undefined && !url) return fail(2, '--import moves a token file into a cluster\'s database: add --cluster (with DATABASE_URL) or --database-url');
  if (url) {
    try {
      return await inDatabase(url, dataDir, f, issue);
    } catch (err) {
      if (err instanceof WsupError && err.code === 'WSUP_INVALID_ARGUMENT') return fail(2, err.message);
      return fail(1, `tokens in the database: ${errorMessage(err)}`);
    }
  }
  const tokens = TokenFile.in(dataDir);
  if (issue) {
    const t = tokens.add(issue.role, { expiresAt: issue.expiresAt, ...(issue.label !== undefined ? { label: issue.label } : {}) });
    emit(f.json, { token: t, ...issue }, () => t);
    return 0;
  }
  if (f.remove !== undefined) {
    const n = tokens.remove(f.remove);
    if (n === 0) return fail(1, `no token with id or label ${f.remove}`);
    emit(f.json, { removed: n }, () => `removed ${n} token${n === 1 ? '' : 's'}`);
    return 0;
  }
  if (f.list) {
    return printList(f.json, tokens.list().map((e) => ({ tokenId: tokenIdOf(e.hash), role: e.role, label: e.label ?? null, createdAt: e.createdAt, expiresAt: e.expiresAt })));
  }
  if (f.rotate) {
    const t = tokens.rotateAdmin();
    emit(f.json, { token: t, role: 'admin', rotated: true, path: tokens.adminPath }, () => t);
    return 0;
  }
  return printAdmin(f.json, tokens);
}

async function inDatabase(url: string, dataDir: string, f: TokenFlags, issue: { role: Role; label?: string; expiresAt: number | null } | null): Promise<number> {
  const [{ openEngine, migrate, ApiTokenRows }, db] = await Promise.all([import('../store/index.ts'), import('../server/db-tokens.ts')]);
  const engine: SqlEngine = await openEngine({ url, maxConnections: 2 });
  try {
    await migrate(engine);
    const rows = new ApiTokenRows(engine);
    if (issue) {
      const { token: t, row } = await db.issueDbToken(engine, issue.role, issue);
      emit(f.json, { token: t, ...issue, id: row.id }, () => t);
      return 0;
    }
    if (f.remove !== undefined) {
      const revoked = await rows.revoke(f.remove);
      if (revoked.length === 0) return fail(1, `no live token with id or label ${f.remove}`);
      const n = revoked.length;
      emit(f.json, { removed: n, ids: revoked.map((r) => r.id) }, () => `revoked ${n} token${n === 1 ? '' : 's'}: their sockets close on every replica`);
      return 0;
    }
    if (f.import !== undefined) {
      const file = typeof f.import === 'string' ? new TokenFile(resolve(f.import), TokenFile.in(dataDir).adminPath) : TokenFile.in(dataDir);
      const r = await rows.import(db.tokenFileRows(file));
      emit(f.json, { ...r, path: file.path }, () => `imported ${r.imported} token${r.imported === 1 ? '' : 's'} from ${file.path}${r.skipped ? ` (${r.skipped} already there, or a second default admin)` : ''}`);
      return 0;
    }
    if (f.list) {
      return printList(f.json, (await rows.all()).map((r) => ({ id: r.id, tokenId: tokenIdOf(r.hash), role: r.role, label: r.label, createdAt: r.createdAt, expiresAt: r.expiresAt, revokedAt: r.revokedAt })));
    }
    if (f.rotate) {
      const r = await db.rotateDbAdmin(engine, dataDir);
      emit(f.json, { token: r.token, role: 'admin', rotated: true, path: r.path }, () => r.token);
      return 0;
    }
    const file = TokenFile.in(dataDir);
    const local = file.readAdmin();
    if (local !== null && !(await rows.live()).some((r) => r.hash === hashToken(local) && r.role === 'admin')) {
      return fail(1, `the admin token in ${file.adminPath} no longer works in the cluster (rotated or revoked elsewhere): \`wsup token --cluster --rotate\` makes a new one here`);
    }
    return printAdmin(f.json, file);
  } finally {
    await engine.close();
  }
}

function printAdmin(json: boolean | undefined, tokens: TokenFile): number {
  const t = tokens.readAdmin();
  if (t === null) return fail(1, `no admin token in ${tokens.adminPath}: start \`wsup serve\` once, or run \`wsup token --rotate\``);
  emit(json, { token: t, role: 'admin', path: tokens.adminPath }, () => t);
  return 0;
}

function printList(json: boolean | undefined, items: Listed[]): number {
  const when = (ms: number | null | undefined) => (ms === null || ms === undefined ? null : new Date(ms).toISOString().replace(/\.\d+Z$/, 'Z'));
  const rows = items.map((t) => ({
    ...(t.id !== undefined ? { id: t.id } : {}),
    token: t.tokenId,
    role: t.role,
    label: t.label,
    created: when(t.createdAt),
    expires: when(t.expiresAt),
    state: t.revokedAt ? `revoked ${when(t.revokedAt)}` : t.expiresAt !== null && t.expiresAt <= Date.now() ? 'expired' : 'live',
  }));
  const cols = [...(items.some((t) => t.id !== undefined) ? ['id'] : []), 'token', 'role', 'label', 'created', 'expires', 'state'];
  emit(json, { items }, () => table(rows, cols));
  return 0;
}
