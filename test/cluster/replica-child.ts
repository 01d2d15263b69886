/**
 * One replica of the cluster under test, in its own process (the test SIGKILLs and SIGSTOPs it): a real
 * `Replica` on PostgreSQL, driven through a small HTTP endpoint:
 * `POST /call {method, params}` → `{result}` or `{error: {code, message}}`; `POST /blink` drops the
 * replica's LISTEN connection; `GET /owned` → the shards it owns; `GET /provider-calls` → the starts the
 * slow-start wrapper (below) has seen. Prints `READY <port>` once serving.
 *
 * Environment: DATABASE_URL, WSUP_CLUSTER_SCHEMA, WSUP_CLUSTER_REPLICA, WSUP_CLUSTER_LATENCY_MS, WSUP_CLUSTER_TTL_MS.
 * The provider, by WSUP_CLUSTER_PROVIDER:
 * - `db` (default): the database-shared fake provider (db-provider.ts), on a pool of
 *   WSUP_CLUSTER_PROVIDER_CONNECTIONS (default 4) connections: with every workspace mid-cycle, that pool is
 *   what bounds the cycles per second of a replica.
 * - `docker`: the real docker provider (DOCKER_HOST), image WSUP_CLUSTER_DOCKER_IMAGE, container name prefix
 *   WSUP_CLUSTER_DOCKER_PREFIX, command WSUP_CLUSTER_DOCKER_CMD (a JSON array).
 * - `ec2`: the real EC2 provider against WSUP_CLUSTER_EC2_ENDPOINT (test/ec2-server), with test credentials.
 *
 * WSUP_CLUSTER_SLOW_START_MS wraps the provider so that every start waits that long after the replica's
 * lease check and before the provider's first request: a test freezes the process (SIGSTOP) in that wait.
 * The wrapped call then runs under its own signal, not the lease's: it stands for a request that already
 * left the process when the lease lapsed, which no abort can recall, so only the provider's own fencing
 * (the epoch on the resource) can stop it.
 *
 * @example
 * new ReplicaProcess('r0', { ...env, WSUP_CLUSTER_PROVIDER: 'docker', WSUP_CLUSTER_DOCKER_IMAGE: 'wsup-test:latest', WSUP_CLUSTER_SLOW_START_MS: '4000' });
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Replica, type ClusterMethod, type ClusterParams } from '../../src/cluster/index.ts';
import { WsupError } from '../../src/errors.ts';
import { createDockerProvider } from '../../src/providers/docker.ts';
import { createEc2Provider } from '../../src/providers/ec2.ts';
import type { Provider, ProviderFence } from '../../src/providers/types.ts';
import type { SqlEngine } from '../../src/store/engine.ts';
import { openPostgres } from '../../src/store/pg-engine.ts';
import { DbFakeProvider } from './db-provider.ts';

const url = process.env.DATABASE_URL!;
const schema = process.env.WSUP_CLUSTER_SCHEMA!;
const replicaId = process.env.WSUP_CLUSTER_REPLICA!;

/** A start the slow-start wrapper saw: `waiting` (before the provider), then `done` or `failed`. */
interface SlowStartCall {
  id: string;
  shard?: number;
  epoch?: number;
  phase: 'waiting' | 'calling' | 'done' | 'failed';
  code?: string;
  message?: string;
}

function slowStarts(inner: Provider, delayMs: number, calls: SlowStartCall[]): Provider {
  return {
    kind: inner.kind,
    async start(spec, _signal, fence?: ProviderFence) {
      const call: SlowStartCall = { id: spec.id, ...fence, phase: 'waiting' };
      calls.push(call);
      await new Promise((r) => setTimeout(r, delayMs));
      call.phase = 'calling';
      try {
        const endpoint = await inner.start(spec, AbortSignal.timeout(120_000), fence);
        call.phase = 'done';
        return endpoint;
      } catch (err) {
        Object.assign(call, { phase: 'failed', code: err instanceof WsupError ? err.code : 'ERROR', message: err instanceof Error ? err.message : String(err) });
        throw err;
      }
    },
    stop: (id, signal, fence) => inner.stop(id, signal, fence),
    inspect: (id) => inner.inspect(id),
    list: () => inner.list(),
  };
}

let db: SqlEngine | null = null;
let base: Provider;
switch (process.env.WSUP_CLUSTER_PROVIDER ?? 'db') {
  case 'db':
    db = await openPostgres({ url, schema, max: Number(process.env.WSUP_CLUSTER_PROVIDER_CONNECTIONS ?? 4) });
    base = new DbFakeProvider(db, replicaId, Number(process.env.WSUP_CLUSTER_LATENCY_MS ?? 20));
    break;
  case 'docker':
    base = createDockerProvider({
      prefix: process.env.WSUP_CLUSTER_DOCKER_PREFIX ?? 'wsup-',
      defaultSpec: { image: process.env.WSUP_CLUSTER_DOCKER_IMAGE!, cmd: JSON.parse(process.env.WSUP_CLUSTER_DOCKER_CMD ?? '[]') as string[] },
      stopGraceSeconds: 1,
    });
    break;
  case 'ec2':
    base = createEc2Provider({
      endpoint: process.env.WSUP_CLUSTER_EC2_ENDPOINT!,
      region: 'us-east-1',
      credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
      defaultSpec: { ami: 'ami-0123456789abcdef0', instanceType: 't3.micro' },
      poll: { initialMs: 20, maxMs: 100 },
      deadlineMs: 60_000,
    });
    break;
  default:
    throw new Error(`WSUP_CLUSTER_PROVIDER=${process.env.WSUP_CLUSTER_PROVIDER}: use db, docker or ec2`);
}
const slowCalls: SlowStartCall[] = [];
const slowMs = Number(process.env.WSUP_CLUSTER_SLOW_START_MS ?? 0);
const provider = slowMs > 0 ? slowStarts(base, slowMs, slowCalls) : base;
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
    if (req.url === '/provider-calls') return reply(200, { calls: slowCalls });
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
  void replica.leave().then(() => db?.close()).then(() => base.close?.()).then(() => process.exit(0));
});
