/**
 * Fresh, isolated databases for the store contract suite: one per test, on either engine.
 * PGlite: a new in-memory instance loaded from a template (initdb in WASM costs seconds; a template ~1 s).
 * PostgreSQL: a uniquely named schema on DATABASE_URL, so parallel test files never see each other's rows.
 */
import { PGlite } from '@electric-sql/pglite';
import type { SqlEngine, SqlQueryable, TransactionOptions } from '../../src/store/engine.ts';
import { openPglite } from '../../src/store/pglite-engine.ts';
import { openPostgres } from '../../src/store/pg-engine.ts';

export interface StoreFixture {
  /** An engine on this fixture's database. PGlite returns its one instance; PostgreSQL a new pool. */
  engine(): Promise<SqlEngine>;
  dispose(): Promise<void>;
}

/** Counts transactions and commits, and can make the next transaction fail after its writes ran. */
export interface CountingEngine extends SqlEngine {
  readonly counts: { transactions: number; committed: number };
}

export function counting(inner: SqlEngine): CountingEngine {
  const counts = { transactions: 0, committed: 0 };
  return {
    kind: inner.kind,
    description: inner.description,
    query: (sql, params) => inner.query(sql, params),
    exec: (sql) => inner.exec(sql),
    close: () => inner.close(),
    counts,
    async transaction<T>(fn: (tx: SqlQueryable) => Promise<T>, opts?: TransactionOptions): Promise<T> {
      counts.transactions++;
      const result = await inner.transaction(fn, opts);
      counts.committed++;
      return result;
    },
  };
}

let template: Promise<Blob> | null = null;

export async function pgliteTemplate(): Promise<Blob> {
  return (template ??= (async () => {
    const db = await PGlite.create();
    try {
      return await db.dumpDataDir('none');
    } finally {
      await db.close();
    }
  })());
}

export async function pgliteFixture(): Promise<StoreFixture> {
  const engine = await openPglite({ dataDir: 'memory://', loadDataDir: await pgliteTemplate() });
  // Stores opened on a given engine do not close it; the fixture does, once.
  return { engine: async () => engine, dispose: () => engine.close() };
}

let schemas = 0;

export function postgresFixture(url: string): () => Promise<StoreFixture> {
  return async () => {
    const schema = `wsup_test_${process.pid}_${++schemas}_${Math.random().toString(36).slice(2, 8)}`;
    const opened: SqlEngine[] = [];
    return {
      async engine() {
        const engine = await openPostgres({ url, schema, max: 20 });
        opened.push(engine);
        return engine;
      },
      async dispose() {
        await Promise.all(opened.map((e) => e.close()));
        const admin = await openPostgres({ url, max: 1 });
        try {
          await admin.exec(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
        } finally {
          await admin.close();
        }
      },
    };
  };
}
