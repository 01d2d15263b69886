/**
 * `npm run bench`: every benchmark in one run, each in its own process, each printed as a table beside its
 * baselines. Pass names to run a subset: `npm run bench -- storm bus`.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { benchBus } from './bus.bench.ts';
import { benchCluster } from './cluster.bench.ts';
import { benchMillion } from './million.bench.ts';
import { benchPolicy } from './policy.bench.ts';
import { benchRequests } from './requests.bench.ts';
import { benchRestartStorm, measureIdleHeap } from './restart-storm.ts';
import { benchServer } from './server.bench.ts';
import { benchShardLoad } from './shard-load.bench.ts';
import { benchStore } from './store.bench.ts';

type Bench = { name: string; title: string; run: () => Promise<object[]> };

const benches: Bench[] = [
  { name: 'bus', title: 'bus: 1,000,000 file writes over 10,000 workspaces (target ≥ 5,000,000 events/s, 0 missed writes)', run: benchBus },
  {
    name: 'storm',
    title: 'restart storm: 10,000 workspaces × 20 concurrent restarts, FakeProvider 1 ms (targets: ≤ 2 cycles, 0 overlaps, wall ≤ 1.0× c)',
    run: () => benchRestartStorm(10_000, 20),
  },
  {
    name: 'requests',
    title: 'requests: bytes allocated per answered request through the Supervisor: join, queue, ensure of a running workspace (target ≤ 2 KB each)',
    run: benchRequests,
  },
  {
    name: 'store',
    title: 'store: durable transitions/s and p99 ack latency (targets: PGlite ≥ 5,000/s, PostgreSQL ≥ 20,000/s with group commit)',
    run: benchStore,
  },
  {
    name: 'server',
    title: 'server: p99 ack with 200 clients (target ≤ 5 ms), fan-out to 1,000 subscribers at 10,000 transitions/s (target p99 ≤ 50 ms), npm start to ready (target ≤ 2 s warm)',
    run: benchServer,
  },
  {
    name: 'cluster',
    title: 'cluster on PostgreSQL: commands/s through 1 vs 3 replicas, failover kill -9 → first command served (target ≤ 3 s, 0 duplicate starts)',
    run: benchCluster,
  },
  {
    name: 'shards',
    title: "shard load with 100,000 workspaces on PostgreSQL: what a replica reads when it gains a shard (baseline: every id listed, then the shard's by id)",
    run: benchShardLoad,
  },
  {
    name: 'policy',
    title: 'policies: activity through the bus over 100,000 running workspaces (target ≥ 200,000 events/CPU s), policy memory per workspace (target ≤ 1 KB), re-arm on restore (target ≤ 2 s)',
    run: benchPolicy,
  },
  {
    name: 'heap',
    title: 'idle workspace actors: heap per actor (target ≤ 10 KB) and creation time for 100,000 root actors',
    run: async () => {
      const r = await measureIdleHeap(100_000);
      return [{ actors: r.count, bytesPerActor: Math.round(r.bytesPerActor), kbPerActor: (r.bytesPerActor / 1024).toFixed(2), createMs: Math.round(r.createMs) }];
    },
  },
  {
    name: 'million',
    title:
      'a million workspaces on one node: wsup serve on 100,000 and 1,000,000 stored (10,000 running), PostgreSQL and PGlite, beside every actor in memory (targets with PostgreSQL: RSS ≤ 1.5 GB, ready ≤ 5 s, p99 ensure of a cold stopped / running workspace ≤ 20 ms); the restart storm on workspaces out of memory (≤ 2 cycles, 0 overlaps); growth 100,000 → 1,000,000',
    run: benchMillion,
  },
];

const only = process.argv.slice(2);
const unknown = only.filter((n) => !benches.some((b) => b.name === n));
if (unknown.length > 0) {
  console.error(`unknown bench: ${unknown.join(', ')} (known: ${benches.map((b) => b.name).join(', ')})`);
  process.exit(2);
}
const selected = benches.filter((b) => only.length === 0 || only.includes(b.name));

if (selected.length > 1) {
  // Each bench in its own process, one after the other, all tables on this stdout. In one process a bench
  // ran on what the ones before it left: their heap and PGlite's wasm memory, a JIT tuned to other code. The ack latency bench after the store bench gave p99 6.5 and 9.5 ms in the same process,
  // 2.8 and 3.0 ms in a new process started right after it.
  const failed: string[] = [];
  for (const b of selected) {
    const child = spawn(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), b.name], { stdio: 'inherit' });
    const [code, signal] = (await once(child, 'exit')) as [number | null, NodeJS.Signals | null];
    if (code !== 0) failed.push(`${b.name} (${signal ?? `exit ${code}`})`);
  }
  if (failed.length > 0) {
    console.error(`\nbench failed: ${failed.join(', ')}`);
    process.exit(1);
  }
} else {
  if (!(globalThis as { gc?: unknown }).gc) console.error('note: run with --expose-gc for stable heap figures (npm run bench does)');
  for (const b of selected) {
    (globalThis as { gc?: () => void }).gc?.();
    console.log(`\n## ${b.title}`);
    const started = performance.now();
    console.table(await b.run());
    console.log(`(${((performance.now() - started) / 1000).toFixed(1)} s)`);
  }
}
