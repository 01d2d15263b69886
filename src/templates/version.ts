/**
 * A template's version: a hash of everything in its definition that shapes the specs it renders (the
 * fields it fixes, its parameter rules, its default policy), not of what only describes it (`description`)
 * or limits who and how many (`role`, `maxRunning`). Canonical JSON, so key order does not matter.
 *
 * @example
 * templateVersion({ provider: 'docker', docker: { image: 'a' } }) === templateVersion({ docker: { image: 'a' }, provider: 'docker' }); // true
 */
import { createHash } from 'node:crypto';

/** JSON with object keys sorted at every level; arrays keep their order (it is meaningful). */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    typeof v === 'object' && v !== null && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : v,
  );
}

/** sha256 of the canonical JSON, first 12 hex digits. */
export function templateVersion(definition: unknown): string {
  return createHash('sha256').update(canonicalJson(definition)).digest('hex').slice(0, 12);
}
