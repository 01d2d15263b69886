/**
 * `wsup serve --cluster` as a replica process, the whole server (control, /agent, claims, file-write bus,
 * pools) exactly as the CLI runs it, except that its provider is the database-shared fake (db-provider.ts),
 * so a test sees every replica's provider calls in one place. Prints the server's banner (`wsup ready on …`).
 *
 * Environment: DATABASE_URL (base), WSUP_CLUSTER_SCHEMA, WSUP_CLUSTER_REPLICA, WSUP_CLUSTER_DATA_DIR,
 * WSUP_CLUSTER_LATENCY_MS, WSUP_CLUSTER_PROVIDER_CONNECTIONS (the provider's pool; default 4).
 */
import { serve } from '../../src/cli/serve.ts';
import { openPostgres } from '../../src/store/pg-engine.ts';
import { DbFakeProvider } from './db-provider.ts';

const url = process.env.DATABASE_URL!;
const schema = process.env.WSUP_CLUSTER_SCHEMA!;
const replica = process.env.WSUP_CLUSTER_REPLICA!;
const db = await openPostgres({ url, schema, max: Number(process.env.WSUP_CLUSTER_PROVIDER_CONNECTIONS ?? 4) });
const provider = new DbFakeProvider(db, replica, Number(process.env.WSUP_CLUSTER_LATENCY_MS ?? 20));
const code = await serve(
  {
    port: '0',
    host: '127.0.0.1',
    dataDir: process.env.WSUP_CLUSTER_DATA_DIR!,
    provider: 'fake',
    databaseUrl: `${url}${url.includes('?') ? '&' : '?'}options=${encodeURIComponent(`-c search_path=${schema}`)}`,
    orphans: 'report',
    cluster: true,
    replicaId: replica,
  },
  { provider },
);
await db.close();
process.exit(code);
