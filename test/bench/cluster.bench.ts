/**
 * Cluster figures on a real PostgreSQL (`DATABASE_URL`), replicas as processes (test/cluster/harness.ts):
 * - commands/s through 1 replica vs 3 (restarts of 1,000 workspaces, closed loop, 24 clients, random replica);
 * - failover: kill -9 the owner of a workspace, time until a command for it is served through another
 *   replica (target ≤ 3 s), over several kills, with the duplicate-start check of the shared provider.
 */
import { shardOf } from '../../src/cluster/shards.ts';
import { isPostgresUrl } from '../../src/store/engine.ts';
import { ClusterRig, type ReplicaProcess } from '../cluster/harness.ts';

const TTL_MS = 2000; // the default lease

async function until(probe: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error('cluster bench: timed out');
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function throughput(rig: ClusterRig, via: ReplicaProcess[], seconds: number): Promise<{ calls: number; perSecond: number; p99: number }> {
  let calls = 0;
  const lat: number[] = [];
  const end = performance.now() + seconds * 1000;
  let n = 0;
  await Promise.all(
    Array.from({ length: 24 }, async () => {
      while (performance.now() < end) {
        const r = via[n++ % via.length]!;
        const t = performance.now();
        const out = await r.call('workspace.restart', { id: `tp-${n % 1000}`, reason: 'bench' });
        if (!out.ok) throw new Error(`cluster bench: ${out.code} ${out.message}`);
        lat.push(performance.now() - t);
        calls++;
      }
    }),
  );
  lat.sort((a, b) => a - b);
  void rig;
  return { calls, perSecond: Math.round(calls / seconds), p99: Math.round(lat[Math.floor(lat.length * 0.99)] ?? 0) };
}

export async function benchCluster(): Promise<object[]> {
  const url = process.env.DATABASE_URL;
  if (!isPostgresUrl(url)) return [{ skipped: 'DATABASE_URL is not a postgres:// url: the cluster needs PostgreSQL' }];
  const rows: object[] = [];

  // 1 vs 3 replicas.
  for (const replicas of [1, 3]) {
    const rig = await ClusterRig.create(url, { latencyMs: 1, ttlMs: TTL_MS });
    try {
      const procs = await Promise.all(Array.from({ length: replicas }, () => rig.spawn()));
      await until(async () => (await rig.owners()).size === replicas && [...(await rig.owners()).values()].reduce((a, b) => a + b, 0) === 64);
      await Promise.all(Array.from({ length: 1000 }, (_, i) => procs[i % replicas]!.call('workspace.ensure', { id: `tp-${i}` })));
      await throughput(rig, procs, 2); // warm-up
      const r = await throughput(rig, procs, 8);
      rows.push({ figure: `commands/s through ${replicas} replica${replicas > 1 ? 's' : ''}`, value: r.perSecond, p99Ms: r.p99, target: replicas === 3 ? 'more than 1 replica' : '', baseline: '' });
    } finally {
      await rig.dispose();
    }
  }

  // Failover.
  const rig = await ClusterRig.create(url, { latencyMs: 1, ttlMs: TTL_MS });
  try {
    await Promise.all([rig.spawn(), rig.spawn(), rig.spawn()]);
    const times: number[] = [];
    const KILLS = Number(process.env.WSUP_BENCH_KILLS ?? 5);
    for (let k = 0; k < KILLS; k++) {
      await until(async () => rig.alive().length === 3 && rig.alive().every((r) => r.port > 0) && [...(await rig.owners()).values()].reduce((a, b) => a + b, 0) === 64, 60_000);
      await until(async () => (await rig.owners()).size === 3, 60_000); // balanced: the victim owns shards
      const victim = rig.alive()[k % 3]!;
      const { rows: own } = await rig.db.query<{ shard: number }>('SELECT shard FROM shard_leases WHERE owner = $1 AND expires_at > now() LIMIT 1', [victim.name]);
      const id = orphanOf(own[0]!.shard, k);
      const other = rig.alive().find((r) => r !== victim)!;
      const ok = await other.call('workspace.ensure', { id });
      if (!ok.ok) throw new Error(`cluster bench: ${ok.message}`);
      const t0 = performance.now();
      await rig.kill(victim);
      const served = await other.call('workspace.restart', { id, reason: 'failover' }, 30_000);
      if (!served.ok) throw new Error(`cluster bench: failover call failed: ${served.message}`);
      times.push(performance.now() - t0);
      rig.spawnInBackground();
    }
    const { rows: dup } = await rig.db.query<{ n: number }>('SELECT count(*)::int AS n FROM fake_violations');
    times.sort((a, b) => a - b);
    rows.push({
      figure: `failover: kill -9 → first command served (lease ${TTL_MS} ms), ${KILLS} kills`,
      value: `p50 ${Math.round(times[Math.floor(times.length / 2)]!)} ms, max ${Math.round(times.at(-1)!)} ms`,
      p99Ms: '',
      target: '≤ 3,000 ms',
      baseline: `duplicate starts: ${dup[0]!.n} (target 0)`,
    });
  } finally {
    await rig.dispose();
  }
  return rows;
}

/** A workspace id that hashes into `shard` (unique per kill). */
function orphanOf(shard: number, k: number): string {
  for (let i = 0; ; i++) {
    const id = `fo-${k}-${i}`;
    if (shardOf(id, 64) === shard) return id;
  }
}
