/** Production engine: PostgreSQL through a `pg` Pool. */
import pg from 'pg';
import type { QueryOptions, SqlEngine, SqlQueryable, SqlResult, TransactionOptions } from './engine.ts';
import { assertSchemaName, redactUrl } from './engine.ts';

export interface PgEngineOptions {
  url: string;
  schema?: string | undefined;
  max?: number | undefined;
  /** Errors of idle pooled connections (server restart, network). The next query reports them too. */
  onIdleError?: (err: Error) => void;
}

// int8 (bigserial seq, version) arrives as a string by default; wsup's counters fit in a double.
const INT8_OID = 20;
const parseInt8 = (v: string): number => Number(v);

function wrap(db: pg.Pool | pg.PoolClient): SqlQueryable {
  return {
    async query<R>(sql: string, params: readonly unknown[] = [], opts: QueryOptions = {}): Promise<SqlResult<R>> {
      const config: pg.QueryConfig = { text: sql, values: [...params], types: { getTypeParser } };
      // pg remembers per connection which names it has prepared, and prepares on first use.
      if (opts.name !== undefined) config.name = opts.name;
      const res = await db.query(config);
      return { rows: res.rows as R[], rowCount: res.rowCount ?? res.rows.length };
    },
    async exec(sql: string): Promise<void> {
      // No parameters: the simple query protocol, which accepts several statements.
      await db.query(sql);
    },
  };
}

function getTypeParser(oid: number, format?: 'text' | 'binary'): (v: string) => unknown {
  if (oid === INT8_OID) return parseInt8;
  return pg.types.getTypeParser(oid, format ?? 'text') as (v: string) => unknown;
}

/**
 * IF NOT EXISTS is not atomic: two sessions creating one schema at once can both pass the check and one
 * fails on the catalog's unique index. Losing that race means the schema exists, which is all we want.
 */
async function createSchema(db: SqlQueryable, schema: string): Promise<void> {
  try {
    await db.exec(`CREATE SCHEMA IF NOT EXISTS ${schema}`);
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if (code !== '23505' && code !== '42P06') throw err;
  }
}

export async function openPostgres(opts: PgEngineOptions): Promise<SqlEngine> {
  if (opts.schema !== undefined) assertSchemaName(opts.schema);
  const pool = new pg.Pool({
    connectionString: opts.url,
    max: opts.max ?? 10,
    // Every pooled session sees only its schema: how parallel test files share one database.
    ...(opts.schema !== undefined ? { options: `-c search_path=${opts.schema}` } : {}),
  });
  // Without a listener an idle client's error would crash the process.
  pool.on('error', (err) => opts.onIdleError?.(err));
  const outside = wrap(pool);
  try {
    if (opts.schema !== undefined) await createSchema(outside, opts.schema);
    else await outside.query('SELECT 1');
  } catch (err) {
    await pool.end().catch(() => undefined);
    throw err;
  }
  let closing: Promise<void> | null = null;
  return {
    kind: 'postgres',
    description: `PostgreSQL at ${redactUrl(opts.url)}${opts.schema !== undefined ? ` (schema ${opts.schema})` : ''}`,
    query: outside.query,
    exec: outside.exec,
    async transaction<T>(fn: (tx: SqlQueryable) => Promise<T>, topts: TransactionOptions = {}): Promise<T> {
      if (topts.singleStatement) return fn(outside);
      const client = await pool.connect();
      let broken: Error | undefined;
      try {
        await client.query('BEGIN');
        const result = await fn(wrap(client));
        await client.query('COMMIT');
        return result;
      } catch (err) {
        // A failed ROLLBACK means the connection is unusable: destroy it rather than pool it.
        await client.query('ROLLBACK').catch((e: unknown) => (broken = e instanceof Error ? e : new Error(String(e))));
        throw err;
      } finally {
        client.release(broken);
      }
    },
    close: () => (closing ??= pool.end()),
  };
}
