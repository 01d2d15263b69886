/** Embedded engine: PGlite (PostgreSQL in WASM), one session per process, data under a directory. */
import { chmodSync, mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { PGlite, type Transaction } from '@electric-sql/pglite';
import type { SqlEngine, SqlQueryable, SqlResult } from './engine.ts';
import { assertSchemaName } from './engine.ts';
import { WsupError, errorMessage } from '../errors.ts';

export interface PgliteEngineOptions {
  /** A directory, or `memory://`. */
  dataDir: string;
  schema?: string | undefined;
  /**
   * Start from a tarball made by `PGlite.dumpDataDir()` instead of running initdb. Tests use it because
   * initdb in WASM takes seconds; a loaded template takes about one.
   */
  loadDataDir?: Blob;
}

type Queryable = Pick<Transaction, 'query' | 'exec'>;

function wrap(db: Queryable): SqlQueryable {
  return {
    async query<R>(sql: string, params: readonly unknown[] = []): Promise<SqlResult<R>> {
      const res = await db.query<R>(sql, [...params]);
      return { rows: res.rows, rowCount: res.affectedRows ?? res.rows.length };
    },
    async exec(sql: string): Promise<void> {
      await db.exec(sql);
    },
  };
}

/**
 * PGlite's start parameters plus smaller shared buffers. PostgreSQL's default 128 MB cost the embedded store
 * about 110 MB of RSS for a few MB of data. In the store bench, 16 MB gave the same group-commit rate (13,387
 * and 14,585 transitions/s against 13,126 and 14,147) at 458-482 MB RSS instead of 571-579. The data files are
 * still cached by the OS.
 */
const START_PARAMS = [...PGlite.defaultStartParams, '-c', 'shared_buffers=16MB'];

/**
 * Take group and other bits off everything under the data dir. PGlite's WASM file system sets modes itself
 * (0666 files), whatever the process umask; the 0700 data dir keeps files made between sweeps out of reach.
 */
function ownerOnly(dir: string): void {
  chmodSync(dir, 0o700);
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) ownerOnly(p);
    else if (e.isFile()) chmodSync(p, 0o600);
  }
}

export async function openPglite(opts: PgliteEngineOptions): Promise<SqlEngine> {
  const memory = opts.dataDir.startsWith('memory://');
  if (!memory) mkdirSync(opts.dataDir, { recursive: true, mode: 0o700 });
  const db = await PGlite.create({
    startParams: START_PARAMS,
    ...(memory ? {} : { dataDir: opts.dataDir }),
    ...(opts.loadDataDir ? { loadDataDir: opts.loadDataDir } : {}),
  }).catch((err: unknown) => {
    if (memory) throw err;
    // A damaged data dir makes PGlite's WASM abort with a message that names neither the dir nor a way out.
    throw new WsupError('WSUP_STORE', `PGlite data dir ${opts.dataDir} cannot be opened (${errorMessage(err)}): the store is damaged: restore the data dir from a backup, or move it away to start with an empty store`, { cause: err });
  });
  // PGlite is a single session, so a session-level search_path applies to every later statement.
  if (opts.schema !== undefined) {
    assertSchemaName(opts.schema);
    await db.exec(`CREATE SCHEMA IF NOT EXISTS ${opts.schema}; SET search_path TO ${opts.schema}`);
  }
  if (!memory) ownerOnly(opts.dataDir);
  const outside = wrap(db);
  let closing: Promise<void> | null = null;
  return {
    kind: 'pglite',
    description: memory ? 'PGlite (in memory)' : `PGlite at ${opts.dataDir}`,
    query: outside.query,
    exec: outside.exec,
    // PGlite serializes transactions with its own mutex; statements outside one wait their turn.
    transaction: (fn, topts) => (topts?.singleStatement ? fn(outside) : db.transaction((tx) => fn(wrap(tx)))),
    close: () =>
      (closing ??= db.close().then(() => {
        if (!memory) ownerOnly(opts.dataDir);
      })),
  };
}
