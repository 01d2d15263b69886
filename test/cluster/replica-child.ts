/**
 * One replica of the cluster under test, in its own process (the test SIGKILLs and SIGSTOPs it): a real
 * `Replica` on PostgreSQL over the database-shared fake provider, driven through a small HTTP endpoint:
 * `POST /call {method, params}` → `{result}` or `{error: {code, message}}`; `POST /blink` drops the
 * replica's LISTEN connection; `GET /owned` → the shards it owns. Prints `READY <port>` once serving.
 *
 * Environment: DATABASE_URL, WSUP_CLUSTER_SCHEMA, WSUP_CLUSTER_REPLICA, WSUP_CLUSTER_LATENCY_MS, WSUP_CLUSTER_TTL_MS.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Replica, type ClusterMethod, type ClusterParams } from '../../src/cluster/index.ts';
import { WsupError } from '../../src/errors.ts';
import { openPostgres } from '../../src/store/pg-engine.ts';
import { DbFakeProvider } from './db-provider.ts';

const url = process.env.DATABASE_URL!;
const schema = process.env.WSUP_CLUSTER_SCHEMA!;
const replicaId = process.env.WSUP_CLUSTER_REPLICA!;
const db = await openPostgres({ url, schema, max: 4 });
const provider = new DbFakeProvider(db, replicaId, Number(process.env.WSUP_CLUSTER_LATENCY_MS ?? 20));
const replica = await Replica.start({
  url,
  schema,
  replica: replicaId,
  provider,
  ttlMs: Number(process.env.WSUP_CLUSTER_TTL_MS ?? 2000),
  // Short backoff: a workspace that failed during a takeover settles within the test's patience.
  supervisor: { config: { backoffBaseMs: 100, backoffCapMs: 1000, selfFireWindowMs: Number(process.env.WSUP_CLUSTER_WINDOW_MS ?? 60_000) } },
  onShard: (e) => {
    if (process.env.WSUP_CLUSTER_DEBUG) process.stderr.write(`[${replicaId}] ${new Date().toISOString()} shard ${e.shard} epoch ${e.epoch} ${e.what}\n`);
  },
  onError: (err, what) => {
    if (process.env.WSUP_CLUSTER_DEBUG) process.stderr.write(`[${replicaId}] ${what}: ${err instanceof Error ? err.message : String(err)}\n`);
  },
});

const server = http.createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    const reply = (status: number, body: unknown) => res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    if (req.url === '/owned') return reply(200, { owned: replica.owned() });
    if (req.url === '/blink') {
      replica.blinkListener();
      return reply(200, { ok: true });
    }
    const { method, params } = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { method: ClusterMethod; params: ClusterParams };
    replica.call(method, params).then(
      (result) => reply(200, { result }),
      (err: unknown) => reply(200, { error: { code: err instanceof WsupError ? err.code : 'ERROR', message: err instanceof Error ? err.message : String(err) } }),
    );
  });
});
server.listen(0, '127.0.0.1', () => process.stdout.write(`READY ${(server.address() as AddressInfo).port}\n`));
process.on('SIGTERM', () => {
  server.close();
  void replica.leave().then(() => db.close()).then(() => process.exit(0));
});
