/**
 * The one seam between wsup's SQL and a database driver. Both engines run the same SQL text (PGlite is
 * real PostgreSQL compiled to WASM), so everything above this file is engine-agnostic.
 *
 * @example
 * const engine = await openEngine({ url: process.env.DATABASE_URL });       // pg Pool
 * const local = await openEngine({ dataDir: '.wsup/pglite' });                // embedded PGlite
 * await engine.transaction(async (tx) => tx.query('SELECT 1'));
 */
import { WsupError } from '../errors.ts';

export type EngineKind = 'pglite' | 'postgres';

export interface SqlResult<R> {
  rows: R[];
  /** Rows inserted, updated or deleted (or returned, for SELECT). */
  rowCount: number;
}

export interface QueryOptions {
  /**
   * A hot statement: PostgreSQL prepares it once per connection under this name and then only binds and
   * executes it (no parse, analyze or, once a generic plan wins, planning). One name, one text, always.
   * PGlite ignores it.
   */
  name?: string;
}

export interface SqlQueryable {
  /** One statement with `$1`-style parameters. Pass jsonb values as JSON text (`JSON.stringify`). */
  query: <R = Record<string, unknown>>(sql: string, params?: readonly unknown[], opts?: QueryOptions) => Promise<SqlResult<R>>;
  /** Several statements, no parameters: migrations. */
  exec: (sql: string) => Promise<void>;
}

export interface TransactionOptions {
  /**
   * `fn` runs exactly one statement: the engine may run it as its own (implicit) transaction, without
   * BEGIN and COMMIT: one round trip instead of three. A statement outside BEGIN is atomic, and the
   * driver answers it only after PostgreSQL's ReadyForQuery, which follows the commit.
   */
  singleStatement?: boolean;
}

export interface SqlEngine extends SqlQueryable {
  readonly kind: EngineKind;
  /** For messages: never contains a password. */
  readonly description: string;
  /**
   * Run `fn` in BEGIN/COMMIT on one connection; ROLLBACK and rethrow if it throws. Either way, once the
   * promise resolves the transaction has committed.
   */
  transaction<T>(fn: (tx: SqlQueryable) => Promise<T>, opts?: TransactionOptions): Promise<T>;
  /** Idempotent. */
  close(): Promise<void>;
}

export interface EngineOptions {
  /** `postgres://...`: use PostgreSQL through a `pg` Pool. */
  url?: string;
  /** PGlite data directory, or `memory://` for a throwaway database. Default `.wsup/pglite`. */
  dataDir?: string;
  /** Put every table in this schema (created if missing): isolates parallel test runs on one database. */
  schema?: string;
  /** Pool size for PostgreSQL. Default 10. */
  maxConnections?: number;
}

export const DEFAULT_DATA_DIR = '.wsup/pglite';
const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

export function isPostgresUrl(url: string | undefined): url is string {
  return url !== undefined && /^postgres(ql)?:\/\//.test(url);
}

export function assertSchemaName(schema: string): void {
  // Interpolated into SQL (search_path cannot be a parameter), so only plain identifiers pass.
  if (!SCHEMA_NAME.test(schema)) {
    throw new WsupError('WSUP_INVALID_ARGUMENT', `invalid schema name ${JSON.stringify(schema)}: use lowercase letters, digits and '_'`);
  }
}

export function redactUrl(url: string): string {
  return url.replace(/\/\/([^:@/]+):[^@/]*@/, '//$1:***@');
}
