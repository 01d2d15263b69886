/**
 * The open-time check that a store can be read: a damaged store fails at start, with what to do, instead
 * of starting ready and failing the first request that touches the damage.
 *
 * Per table: a full scan (every heap page is read: a torn or short page fails it) and the first and last
 * rows fetched through the primary key's index (a heap cut back to fewer pages than the index points into
 * fails it, which a scan alone would read as a shorter table).
 */
import { WsupError, errorMessage } from '../errors.ts';
import type { SqlEngine } from './engine.ts';

/** wsup's own tables and their primary keys (the cluster's tables are checked by nobody: they are leases). */
const TABLES: ReadonlyArray<readonly [table: string, key: string]> = [
  ['schema_migrations', 'version'],
  ['workspaces', 'id'],
  ['workspace_events', 'seq'],
  ['claims', 'workspace_id'],
  ['agent_tokens', 'workspace_id'],
  ['api_tokens', 'hash'],
  ['process_records', 'workspace_id'],
  ['pools', 'pool'],
];

/** What the operator can do about a damaged store of this engine. */
export function recoveryStep(engine: SqlEngine): string {
  return engine.kind === 'pglite'
    ? 'restore the data dir from a backup, or move it away to start with an empty store'
    : 'restore the database from a backup';
}

export async function checkIntegrity(engine: SqlEngine): Promise<void> {
  for (const [table, key] of TABLES) {
    try {
      await engine.query(`SELECT count(*) FROM ${table}`);
      await engine.transaction(async (tx) => {
        await tx.exec('SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off; SET LOCAL enable_indexonlyscan = off');
        await tx.query(`(SELECT * FROM ${table} ORDER BY ${key} LIMIT 1) UNION ALL (SELECT * FROM ${table} ORDER BY ${key} DESC LIMIT 1)`);
      });
    } catch (err) {
      throw new WsupError('WSUP_STORE', `store ${engine.description} is damaged: table ${table} cannot be read (${errorMessage(err)}): ${recoveryStep(engine)}`, { cause: err });
    }
  }
}
