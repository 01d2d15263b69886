/**
 * Open the store `wsup serve` runs on: PostgreSQL for a `postgres://` url, else PGlite in `<dataDir>/pglite`.
 * Its own module so `serve` can start opening it (PGlite compiles its wasm off the main thread) while the
 * server, supervisor and providers are still loading.
 */
import { join } from 'node:path';
import { WsupError, errorMessage } from '../errors.ts';
import { WorkspaceStore } from '../store/index.ts';

export async function openStore(opts: { dataDir: string; databaseUrl?: string }): Promise<WorkspaceStore> {
  try {
    return await WorkspaceStore.open(opts.databaseUrl ? { url: opts.databaseUrl } : { dataDir: join(opts.dataDir, 'pglite') });
  } catch (err) {
    if (err instanceof WsupError) throw err;
    throw new WsupError('WSUP_STORE', `cannot open the store: ${errorMessage(err)}`, { cause: err });
  }
}
