/**
 * `npm run bench`: every benchmark in one process run, each printed as a table beside its baselines.
 * Pass names to run a subset: `npm run bench -- storm bus`.
 */
import { benchBus } from './bus.bench.ts';
import { benchCluster } from './cluster.bench.ts';
import { benchRestartStorm, measureIdleHeap } from './restart-storm.ts';
import { benchServer } from './server.bench.ts';
import { benchStore } from './store.bench.ts';

type Bench = { name: string; title: string; run: () => Promise<object[]> };

const benches: Bench[] = [
  // The bus first and the 100,000-actor heap bench last: what one bench leaves on the heap must not be
  // measured (or collected) in the middle of another.
  { name: 'bus', title: 'bus: 1,000,000 file writes over 10,000 workspaces (target ≥ 1,000,000 events/s, 0 missed writes)', run: benchBus },
  {
    name: 'storm',
    title: 'restart storm: 10,000 workspaces × 20 concurrent restarts, FakeProvider 1 ms (targets: ≤ 2 cycles, 0 overlaps, wall ≤ 1.5× c)',
    run: () => benchRestartStorm(10_000, 20),
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
    name: 'heap',
    title: 'idle workspace actors: heap per actor (target ≤ 10 KB) and creation time for 100,000 root actors',
    run: async () => {
      const r = await measureIdleHeap(100_000);
      return [{ actors: r.count, bytesPerActor: Math.round(r.bytesPerActor), kbPerActor: (r.bytesPerActor / 1024).toFixed(2), createMs: Math.round(r.createMs) }];
    },
  },
];

const only = process.argv.slice(2);
if (!(globalThis as { gc?: unknown }).gc) console.error('note: run with --expose-gc for stable heap figures (npm run bench does)');
for (const b of benches) {
  if (only.length > 0 && !only.includes(b.name)) continue;
  // Start each bench from a collected heap: what an earlier bench left behind (100,000 actors) must not be
  // measured, or collected in the middle of, a later one.
  (globalThis as { gc?: () => void }).gc?.();
  console.log(`\n## ${b.title}`);
  const started = performance.now();
  console.table(await b.run());
  console.log(`(${((performance.now() - started) / 1000).toFixed(1)} s)`);
}
