/**
 * Pick the engine for a store: PostgreSQL for a `postgres://` url, PGlite otherwise. Kept apart from
 * engine.ts so the engines can import its shared helpers without an import cycle.
 */
import { WsupError } from '../errors.ts';
import { assertSchemaName, DEFAULT_DATA_DIR, isPostgresUrl, redactUrl, type EngineOptions, type SqlEngine } from './engine.ts';
import { openPglite } from './pglite-engine.ts';
import { openPostgres } from './pg-engine.ts';

/** Open the engine the options name; the caller owns (and closes) it. */
export async function openEngine(opts: EngineOptions = {}): Promise<SqlEngine> {
  if (opts.schema !== undefined) assertSchemaName(opts.schema);
  if (isPostgresUrl(opts.url)) {
    return openPostgres({ url: opts.url, schema: opts.schema, max: opts.maxConnections });
  }
  if (opts.url !== undefined) {
    throw new WsupError('WSUP_INVALID_ARGUMENT', `unsupported database url ${redactUrl(opts.url)}: use postgres://user:pass@host:port/db or a PGlite data dir`);
  }
  return openPglite({ dataDir: opts.dataDir ?? DEFAULT_DATA_DIR, schema: opts.schema });
}
