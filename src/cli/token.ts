/**
 * `wsup token`: print the local admin token, rotate it, or issue a role token with an expiry. Works on the
 * data dir's token files directly (a running server re-reads them), so it needs no connection.
 */
import { resolve } from 'node:path';
import { ROLES, type Role } from '../protocol/index.ts';
import { TokenFile } from '../server/auth.ts';
import { parseDuration } from './duration.ts';
import { emit } from './output.ts';

export interface TokenFlags {
  dataDir: string;
  rotate?: boolean;
  add?: string;
  label?: string;
  remove?: string;
  expiresIn?: string;
  json?: boolean;
}

/** A label names a requester in cycles, history and logs: no spaces, no `:` or `#` (those separate a role, token id and request number). */
const LABEL = /^[A-Za-z0-9._@-]{1,64}$/;

export function token(f: TokenFlags): number {
  const tokens = TokenFile.in(resolve(f.dataDir));
  if (f.add !== undefined) {
    if (!ROLES.includes(f.add as Role)) {
      process.stderr.write(`wsup: --add takes a role: ${ROLES.join(', ')}\n`);
      return 2;
    }
    const ttl = f.expiresIn === undefined ? null : parseDuration(f.expiresIn);
    if (f.expiresIn !== undefined && ttl === null) {
      process.stderr.write('wsup: --expires-in takes a duration like 90s, 15m, 12h, 7d\n');
      return 2;
    }
    if (f.label !== undefined && !LABEL.test(f.label)) {
      process.stderr.write('wsup: --label takes 1-64 letters, digits, . _ @ or -\n');
      return 2;
    }
    const expiresAt = ttl === null ? null : Date.now() + ttl;
    const t = tokens.add(f.add as Role, { expiresAt, ...(f.label !== undefined ? { label: f.label } : {}) });
    emit(f.json, { token: t, role: f.add, expiresAt, ...(f.label !== undefined ? { label: f.label } : {}) }, () => t);
    return 0;
  }
  if (f.remove !== undefined) {
    const n = tokens.remove(f.remove);
    if (n === 0) {
      process.stderr.write(`wsup: no token with id or label ${f.remove}\n`);
      return 1;
    }
    emit(f.json, { removed: n }, () => `removed ${n} token${n === 1 ? '' : 's'}`);
    return 0;
  }
  if (f.rotate) {
    const t = tokens.rotateAdmin();
    emit(f.json, { token: t, role: 'admin', rotated: true, path: tokens.adminPath }, () => t);
    return 0;
  }
  const t = tokens.readAdmin();
  if (t === null) {
    process.stderr.write(`wsup: no admin token in ${tokens.adminPath}: start \`wsup serve\` once, or run \`wsup token --rotate\`\n`);
    return 1;
  }
  emit(f.json, { token: t, role: 'admin', path: tokens.adminPath }, () => t);
  return 0;
}
