/**
 * Cluster figures on a real PostgreSQL (`DATABASE_URL`), replicas as processes (test/cluster/harness.ts):
 * - commands/s and p99 through 1 replica vs 3 (restarts of 1,000 workspaces, closed loop, 24 clients, the same
 *   12 provider connections in total), through
 *   3 without routing (round robin: two thirds forwarded through the inbox) and with owner routing (each
 *   command sent to its shard's owner, as ClusterClient does), the forwarded share (new inbox rows per
 *   command) and the CPU the replica processes used per command (utime + stime from /proc/<pid>/stat);
 * - the same through the SDK on `wsup serve --cluster` processes (WebSocket, JSON-RPC): ClusterClient (owner
 *   routing) through 1 and 3 replicas, and plain WsupClients spread over 3 replicas (forwarded);
 * - failover: kill -9 the owner of a workspace, time until a command for it is served through another
 *   replica (target ≤ 3 s), over several kills, with the duplicate-start check of the shared provider.
 */
import { readFileSync } from 'node:fs';
import { shardOf } from '../../src/cluster/shards.ts';
import { isPostgresUrl } from '../../src/store/engine.ts';
import WebSocket from 'ws';
import { ClusterClient, WsupClient } from '../../src/client/index.ts';
import { ClusterRig, ServeRig, type ReplicaProcess } from '../cluster/harness.ts';

const TTL_MS = 2000; // the default lease

async function until(probe: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error('cluster bench: timed out');
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Picks the replica a command goes to: round robin, or its shard's owner. */
type Pick = (id: string, n: number) => ReplicaProcess;

async function throughput(pick: Pick, seconds: number): Promise<{ calls: number; perSecond: number; p99: number }> {
  let calls = 0;
  const lat: number[] = [];
  const end = performance.now() + seconds * 1000;
  let n = 0;
  await Promise.all(
    Array.from({ length: 24 }, async () => {
      while (performance.now() < end) {
        const k = n++;
        const id = `tp-${k % 1000}`;
        const t = performance.now();
        const out = await pick(id, k).call('workspace.restart', { id, reason: 'bench' });
        if (!out.ok) throw new Error(`cluster bench: ${out.code} ${out.message}`);
        lat.push(performance.now() - t);
        calls++;
      }
    }),
  );
  lat.sort((a, b) => a - b);
  return { calls, perSecond: Math.round(calls / seconds), p99: Math.round(lat[Math.floor(lat.length * 0.99)] ?? 0) };
}

/** CPU time (user + system) a process used so far, in ms, from /proc/<pid>/stat (clock ticks of 10 ms). */
function cpuMs(pid: number | undefined): number {
  if (pid === undefined) return 0;
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10; // utime, stime (fields 14 and 15 of the line)
}

/**
 * Cycles begun so far (`cycle.started` events). Restarts coalesce: one that finds its workspace's cycle not
 * yet provisioning joins it, one that finds it provisioning queues one more cycle for all such, so how many
 * commands a cycle serves depends on how far cycles lag behind them. A cycle costs the replicas many times
 * what a command costs, so CPU per command compares two runs only beside their cycles per command.
 */
async function cyclesBegun(rig: { db: ClusterRig['db'] }): Promise<number> {
  const { rows } = await rig.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM workspace_events WHERE kind = 'cycle.started'`);
  return rows[0]!.n;
}

/** Closed loop of 24 callers through `send` for `seconds`: commands/s and p99 (ms). */
async function sdkThroughput(send: (id: string, k: number) => Promise<unknown>, seconds: number): Promise<{ calls: number; perSecond: number; p99: number }> {
  let calls = 0;
  let n = 0;
  const lat: number[] = [];
  const end = performance.now() + seconds * 1000;
  await Promise.all(
    Array.from({ length: 24 }, async () => {
      while (performance.now() < end) {
        const k = n++;
        const t = performance.now();
        await send(`tp-${k % 1000}`, k);
        lat.push(performance.now() - t);
        calls++;
      }
    }),
  );
  lat.sort((a, b) => a - b);
  return { calls, perSecond: Math.round(calls / seconds), p99: Math.round(lat[Math.floor(lat.length * 0.99)] ?? 0) };
}

async function inboxRows(rig: { db: ClusterRig['db'] }): Promise<number> {
  const { rows } = await rig.db.query<{ n: number }>('SELECT count(*)::int AS n FROM cluster_inbox');
  return rows[0]!.n;
}

/** Each shard's owner, as a routing client reads it from cluster.members. */
async function ownerPick(rig: ClusterRig, procs: ReplicaProcess[]): Promise<Pick> {
  const { rows } = await rig.db.query<{ shard: number; owner: string }>('SELECT shard, owner FROM shard_leases WHERE expires_at > now()');
  const byName = new Map(procs.map((p) => [p.name, p]));
  const owner = new Map(rows.map((r) => [r.shard, byName.get(r.owner)]));
  return (id, n) => owner.get(shardOf(id, 64)) ?? procs[n % procs.length]!;
}

export async function benchCluster(): Promise<object[]> {
  const url = process.env.DATABASE_URL;
  if (!isPostgresUrl(url)) return [{ skipped: 'DATABASE_URL is not a postgres:// url: the cluster needs PostgreSQL' }];
  const rows: object[] = [];

  // 1 vs 3 replicas; through 3, without and with owner routing.
  for (const replicas of [1, 3]) {
    // The same provider capacity in total, however many replicas share it: 12 connections to the shared
    // fake provider (with every workspace mid-cycle, that pool bounds a replica's cycles per second).
    const rig = await ClusterRig.create(url, { latencyMs: 1, ttlMs: TTL_MS, providerConnections: 12 / replicas });
    try {
      const procs = await Promise.all(Array.from({ length: replicas }, () => rig.spawn()));
      await until(async () => (await rig.owners()).size === replicas && [...(await rig.owners()).values()].reduce((a, b) => a + b, 0) === 64);
      await Promise.all(Array.from({ length: 1000 }, (_, i) => procs[i % replicas]!.call('workspace.ensure', { id: `tp-${i}` })));
      const modes: Array<['round robin' | 'owner routing', Pick]> = [['round robin', (_id, n) => procs[n % replicas]!]];
      if (replicas > 1) modes.push(['owner routing', await ownerPick(rig, procs)]);
      for (const [mode, pick] of modes) {
        await throughput(pick, 2); // warm-up
        const inbox0 = await inboxRows(rig);
        const cycles0 = await cyclesBegun(rig);
        const cpu0 = procs.map((p) => cpuMs(p.proc.pid));
        const r = await throughput(pick, 8);
        const forwarded = (await inboxRows(rig)) - inbox0;
        const cycles = (await cyclesBegun(rig)) - cycles0;
        const cpu = procs.map((p, i) => cpuMs(p.proc.pid) - cpu0[i]!);
        const total = cpu.reduce((a, b) => a + b, 0);
        rows.push({
          figure: `commands/s through ${replicas} replica${replicas > 1 ? 's' : ''}${replicas > 1 ? `, ${mode}` : ''}`,
          value: r.perSecond,
          p99Ms: r.p99,
          target: replicas === 3 ? 'owner routing: forwarded ~0' : '',
          baseline: `forwarded ${((100 * forwarded) / Math.max(1, r.calls)).toFixed(1)} %; replica CPU ${(total / r.calls).toFixed(2)} ms/command (per replica ${cpu.map((c) => (c / r.calls).toFixed(2)).join(' / ')}); cycles ${(cycles / Math.max(1, r.calls)).toFixed(2)}/command, CPU ${(total / Math.max(1, cycles)).toFixed(2)} ms/cycle`,
        });
      }
    } finally {
      await rig.dispose();
    }
  }

  // Through the SDK, on `wsup serve --cluster`.
  for (const [replicas, sdk] of [[1, 'ClusterClient'], [3, 'ClusterClient'], [3, 'WsupClient per replica']] as const) {
    const rig = await ServeRig.create(url, { latencyMs: 1, providerConnections: 12 / replicas });
    const clients: Array<{ call: WsupClient['call']; close(): void }> = [];
    try {
      await rig.spawn(); // migrates the schema
      await Promise.all(Array.from({ length: replicas - 1 }, () => rig.spawn()));
      await until(async () => (await rig.owners()).size === replicas && [...(await rig.owners()).values()].reduce((a, b) => a + b, 0) === 64);
      const urls = rig.live().map((r) => r.url);
      for (let i = 0; i < 6; i++) {
        clients.push(
          sdk === 'ClusterClient'
            ? new ClusterClient({ urls: [...urls.slice(i % replicas), ...urls.slice(0, i % replicas)], token: rig.operator, WebSocket, reconnect: false })
            : new WsupClient({ url: urls[i % replicas]!, token: rig.operator, WebSocket, reconnect: false }),
        );
      }
      await Promise.all(Array.from({ length: 1000 }, (_, i) => clients[i % clients.length]!.call('workspace.ensure', { id: `tp-${i}` })));
      const send = (id: string, k: number) => clients[k % clients.length]!.call('workspace.restart', { id, reason: 'bench' });
      await sdkThroughput(send, 2); // warm-up
      const inbox0 = await inboxRows(rig);
      const cycles0 = await cyclesBegun(rig);
      const cpu0 = rig.live().map((p) => cpuMs(p.proc.pid));
      const r = await sdkThroughput(send, 8);
      const forwarded = (await inboxRows(rig)) - inbox0;
      const cycles = (await cyclesBegun(rig)) - cycles0;
      const cpu = rig.live().map((p, i) => cpuMs(p.proc.pid) - cpu0[i]!);
      const total = cpu.reduce((a, b) => a + b, 0);
      rows.push({
        figure: `SDK commands/s through ${replicas} × wsup serve --cluster, ${sdk}`,
        value: r.perSecond,
        p99Ms: r.p99,
        target: sdk === 'ClusterClient' && replicas === 3 ? 'forwarded ~0' : '',
        baseline: `forwarded ${((100 * forwarded) / Math.max(1, r.calls)).toFixed(1)} %; replica CPU ${(total / r.calls).toFixed(2)} ms/command (per replica ${cpu.map((c) => (c / r.calls).toFixed(2)).join(' / ')}); cycles ${(cycles / Math.max(1, r.calls)).toFixed(2)}/command`,
      });
    } finally {
      for (const c of clients) c.close();
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
