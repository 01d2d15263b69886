/**
 * Scale-out on a real PostgreSQL, replicas as separate processes:
 * - 3 replicas; 1,000 workspaces; clients send restarts and ensures through random replicas while a random
 *   replica is SIGKILLed (and replaced) 20 times (100 in `npm run test:soak`). Never two provider calls in
 *   flight for one workspace anywhere (the database-shared fake provider records it); every acknowledged
 *   restart took effect exactly once (one request event under its label); every workspace settles.
 * - A replica paused (SIGSTOP) past its lease and resumed performs no provider call after the pause.
 * Both run with a CPU hog on every core for the whole file (`WSUP_CLUSTER_HOG=0` turns it off, to compare):
 * leases must hold on a busy machine, not only on an idle one.
 */
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { CpuHog } from '../helpers/cpu-hog.ts';
import { describeWith, postgresUrl } from '../helpers/require.ts';
import { ClusterRig, type CallOutcome } from './harness.ts';
const KILLS = process.env.WSUP_SOAK ? 100 : 20;
const WORKSPACES = 1000;

/** Deterministic randomness per run, printed so a failure can be replayed. */
const seed = Number(process.env.WSUP_CLUSTER_SEED ?? Date.now() % 100_000);
let x = seed;
const rand = (n: number) => ((x = (x * 1103515245 + 12345) % 2 ** 31), x % n);

const wsId = (i: number) => `ws-${String(i).padStart(4, '0')}`;

/** Polling replica processes and the database: `ms` bounds it. */
const poll = (ms = 30_000) => ({ timeout: ms, interval: 100 });
const sum = (owners: Map<string, number>) => [...owners.values()].reduce((a, b) => a + b, 0);

describeWith(postgresUrl(), 'cluster on PostgreSQL (replicas as processes)', (url) => {
  let rig: ClusterRig | null = null;
  let hog: CpuHog | null = null;
  beforeAll(async () => {
    if (process.env.WSUP_CLUSTER_HOG !== '0') hog = await CpuHog.start();
  });
  afterAll(async () => {
    await hog?.dispose();
  });
  afterEach(async () => {
    await rig?.dispose();
    rig = null;
  });

  it(`survives ${KILLS} kill -9 with no double provider call, every acked restart exactly once, all settled (seed ${seed})`, async () => {
    rig = await ClusterRig.create(url, { ttlMs: 2000, latencyMs: 10 });
    const cluster = rig;
    await Promise.all([cluster.spawn(), cluster.spawn(), cluster.spawn()]);
    await expect.poll(async () => sum(await cluster.owners()), { ...poll(), message: 'shards owned' }).toBe(64);

    // 1,000 workspaces, each ensured through a random replica (most calls are forwarded to the owner).
    const replicas = cluster.alive();
    const ensured = await Promise.all(Array.from({ length: WORKSPACES }, (_, i) => replicas[rand(replicas.length)]!.call('workspace.ensure', { id: wsId(i) })));
    expect(ensured.filter((r) => !r.ok)).toEqual([]);

    const acked = new Map<string, string>(); // op label -> workspace
    const touched = new Set<string>(Array.from({ length: WORKSPACES }, (_, i) => wsId(i)));
    let ops = 0;
    let failures = 0;
    const failed = new Map<string, number>();
    let stop = false;
    const client = async () => {
      while (!stop) {
        const live = cluster.alive().filter((r) => r.port > 0);
        const via = live[rand(live.length)];
        if (!via) throw new Error('no replica alive: the kill schedule must leave one');
        const id = wsId(rand(WORKSPACES));
        const restart = rand(10) < 7;
        // Restarts are counted in the log; an ensure is idempotent (a re-run joins the cycle it started).
        const label = `${restart ? 'rs' : 'en'}-${++ops}`;
        const r: CallOutcome = restart
          ? await via.call('workspace.restart', { id, requester: label, reason: label })
          : await via.call('workspace.ensure', { id, requester: label });
        if (r.ok) {
          touched.add(id);
          if (restart) acked.set(label, id);
        } else {
          failures++;
          failed.set(r.code, (failed.get(r.code) ?? 0) + 1);
        }
      }
    };
    const clients = Array.from({ length: 12 }, () => client());

    for (let k = 0; k < KILLS; k++) {
      await new Promise((r) => setTimeout(r, 300 + rand(700))); // a random point in the load
      // Never the last ready replica: replacements take seconds to boot.
      await expect.poll(() => cluster.alive().filter((r) => r.port > 0).length, { ...poll(60_000), message: 'ready replicas' }).toBeGreaterThanOrEqual(2);
      const live = cluster.alive().filter((r) => r.port > 0);
      const victim = live[rand(live.length)]!;
      await cluster.kill(victim);
      cluster.spawnInBackground(); // a replacement joins while the others take over
    }
    const ready = () => cluster.alive().map((r) => r.port > 0);
    await expect.poll(ready, { ...poll(60_000), message: 'three ready replicas again' }).toEqual([true, true, true]);
    // The load goes on for a while on the healed cluster before it stops.
    const healedAt = ops;
    await expect.poll(() => ops, { ...poll(), message: 'commands on the healed cluster' }).toBeGreaterThanOrEqual(healedAt + 100);
    stop = true;
    await Promise.all(clients);

    const { rows: violations } = await cluster.db.query<{ workspace_id: string }>('SELECT workspace_id, replica, other, at FROM fake_violations');
    if (violations.length > 0) {
      const { rows: calls } = await cluster.db.query('SELECT replica, op, shard, epoch, began_at FROM fake_calls WHERE workspace_id = $1 ORDER BY id', [violations[0]!.workspace_id]);
      console.log(JSON.stringify({ violations, calls }));
    }
    expect(violations, 'two provider calls in flight for one workspace').toEqual([]);

    // Every acknowledged restart is in the log exactly once; an unacknowledged one at most once.
    const { rows: counted } = await cluster.db.query<{ op: string; n: number }>(
      `SELECT split_part(split_part(data->>'requester', '#', 1), '~', 1) AS op, count(*)::int AS n FROM workspace_events
       WHERE kind = 'request' AND data->>'requester' LIKE 'rs-%' GROUP BY 1`,
    );
    const times = new Map(counted.map((r) => [r.op, r.n]));
    const missing = [...acked.keys()].filter((op) => times.get(op) !== 1);
    expect(missing.map((op) => `${op}: ${times.get(op) ?? 0}`), 'acked restarts not recorded exactly once').toEqual([]);
    const twice = counted.filter((r) => r.n > 1);
    if (twice.length > 0 && process.env.WSUP_CLUSTER_DEBUG) {
      const { rows } = await cluster.db.query(
        `SELECT seq, workspace_id, data->>'requester' AS req, data->>'outcome' AS outcome, data->>'cycle' AS cycle, at FROM workspace_events WHERE kind = 'request' AND data->>'requester' LIKE $1 || '~%'`,
        [twice[0]!.op],
      );
      const { rows: inbox } = await cluster.db.query(`SELECT id, workspace_id, origin, params, done_at, result, error FROM cluster_inbox WHERE params->>'requester' = $1`, [twice[0]!.op]);
      console.log(JSON.stringify({ rows, inbox }, null, 1));
    }
    expect(twice).toEqual([]);

    // Every workspace a command reached settles running (none stuck in starting/stopping or behind a lost command).
    const notRunning = async () => {
      const { rows } = await cluster.db.query<{ id: string; state: string }>(`SELECT id, state FROM workspaces WHERE id = ANY($1::text[])`, [[...touched]]);
      const running = new Set(rows.filter((r) => r.state === 'running').map((r) => r.id));
      return [...touched].filter((id) => !running.has(id));
    };
    await expect.poll(notRunning, { ...poll(60_000), message: 'touched workspaces not running' }).toEqual([]);
    const { rows: refused } = await cluster.db.query<{ n: number }>('SELECT count(*)::int AS n FROM fake_refused');
    console.log(`cluster: ${refused[0]!.n} calls refused by the provider's fence (stale lease); ${KILLS} kills, ${ops} commands (${acked.size} acked restarts, ${failures} failed at a killed replica), ${touched.size} workspaces, 0 violations; failures by code ${JSON.stringify(Object.fromEntries(failed))}; cpu hog ${hog ? `${hog.children.length} children, ${hog.cpuMs()} ms CPU` : 'off'}`);
    // The load really ran through the kills (a fixed floor: with a kill every ~1.5 s, most client calls die
    // with the replica they were sent to, so acknowledged restarts do not grow with the number of kills).
    expect(acked.size, 'restarts acknowledged during the kills').toBeGreaterThanOrEqual(40);
  }, 600_000);

  it('a replica paused past its lease performs no provider call after it resumes', async () => {
    rig = await ClusterRig.create(url, { ttlMs: 1000, latencyMs: 10, windowMs: 1500 });
    const cluster = rig;
    const [a, b] = await Promise.all([cluster.spawn(), cluster.spawn()]);
    await expect.poll(async () => (await cluster.owners()).size, { ...poll(), message: 'replicas owning shards' }).toBe(2);
    const ids = Array.from({ length: 40 }, (_, i) => `paused-${i}`);
    const mine = await Promise.all(ids.map((id) => b.call('workspace.ensure', { id })));
    expect(mine.filter((r) => !r.ok)).toEqual([]);
    // Automatic restarts inside the self-fire window: each leaves a trailing cycle due when the window
    // ends — while a is paused, for the workspaces a owns. a wakes up wanting to call the provider.
    const deferred = await Promise.all(ids.map((id) => a.call('workspace.restart', { id, source: 'programmatic', reason: 'due during the pause' })));
    expect(deferred.filter((r) => !r.ok || (r.result as { outcome: string }).outcome !== 'deferred')).toEqual([]);
    await expect.poll(async () => (await cluster.db.query('SELECT 1 FROM fake_inflight')).rows.length, { ...poll(), message: 'provider calls in flight' }).toBe(0);
    const { rows: before } = await cluster.db.query<{ shard: number; epoch: number }>(`SELECT shard, epoch FROM shard_leases WHERE owner = 'r0'`);
    a.proc.kill('SIGSTOP');
    const { rows: at } = await cluster.db.query<{ now: Date }>('SELECT clock_timestamp() AS now');
    await expect.poll(async () => (await cluster.owners()).get('r1'), { ...poll(15_000), message: 'shards b owns' }).toBe(64);
    // b serves a's former workspaces while a sleeps (and runs their trailing cycles).
    const during = await Promise.all(ids.map((id) => b.call('workspace.restart', { id, reason: 'during the pause' })));
    expect(during.filter((r) => !r.ok)).toEqual([]);
    a.proc.kill('SIGCONT');
    // a wakes up with its window timers overdue: give it time to try whatever it would try.
    await new Promise((r) => setTimeout(r, 2500));
    // No call under the leases it held before the pause (once it is back it may win shards anew, with new
    // epochs, and serve them: those calls are legitimate).
    const { rows: late } = await cluster.db.query(
      `SELECT c.workspace_id, c.op, c.began_at FROM fake_calls c JOIN unnest($3::int[], $4::bigint[]) AS o(shard, epoch) ON c.shard = o.shard AND c.epoch = o.epoch
       WHERE c.replica = $1 AND c.began_at > $2`,
      ['r0', at[0]!.now, before.map((l) => l.shard), before.map((l) => l.epoch)],
    );
    expect(late, 'provider calls by the paused replica, under leases it lost, after the pause began').toEqual([]);
    // And it was the replica itself that held back, not the provider's fence: at most a call already past
    // its gate when SIGSTOP landed reaches the provider and is refused there (some 20 trailing cycles were due).
    const { rows: refused } = await cluster.db.query('SELECT workspace_id, op FROM fake_refused WHERE replica = $1', ['r0']);
    expect(refused.length, JSON.stringify(refused)).toBeLessThanOrEqual(2);
    const { rows: violations } = await cluster.db.query('SELECT * FROM fake_violations');
    expect(violations).toEqual([]);
    // And it rejoins: takes its share back and serves again.
    await expect.poll(async () => (await cluster.owners()).get('r0') ?? 0, { ...poll(15_000), message: 'shards a owns again' }).toBeGreaterThan(0);
    const after = await a.call('workspace.restart', { id: ids[0]!, reason: 'after' });
    expect(after.ok).toBe(true);
  }, 120_000);
});
