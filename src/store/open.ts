/**
 * Pick the engine for a store: PostgreSQL for a `postgres://` url, PGlite otherwise. Kept apart from
 * engine.ts so the engines can import its shared helpers without an import cycle. Each engine is loaded
 * only when opened: a PGlite server does not pay for `pg` at boot, nor a PostgreSQL one for PGlite's wasm.
 */
import { WsupError } from '../errors.ts';
import { assertSchemaName, DEFAULT_DATA_DIR, isPostgresUrl, redactUrl, type EngineOptions, type SqlEngine } from './engine.ts';

/** Open the engine the options name; the caller owns (and closes) it. */
export async function openEngine(opts: EngineOptions = {}): Promise<SqlEngine> {
  if (opts.schema !== undefined) assertSchemaName(opts.schema);
  if (isPostgresUrl(opts.url)) {
    const { openPostgres } = await import('./pg-engine.ts');
    return openPostgres({ url: opts.url, schema: opts.schema, max: opts.maxConnections });
  }
  if (opts.url !== undefined) {
    throw new WsupError('WSUP_INVALID_ARGUMENT', `unsupported database url ${redactUrl(opts.url)}: use postgres://user:pass@host:port/db or a PGlite data dir`);
  }
  const { openPglite } = await import('./pglite-engine.ts');
  return openPglite({ dataDir: opts.dataDir ?? DEFAULT_DATA_DIR, schema: opts.schema });
}
