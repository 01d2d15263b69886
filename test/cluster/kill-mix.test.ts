/**
 * `wsup serve --cluster` processes (the whole server: control, /agent, claims, the file-write bus, pools)
 * on a real PostgreSQL, SIGKILLed 20 times (100 in `npm run test:soak`) with a CPU hog on every core,
 * while clients go through the SDK's ClusterClient as users do:
 * - restarts and ensures of 200 workspaces (each command under a request id, re-sent when its answer is lost);
 * - bursts of file writes, each spread over clients seeded on different replicas;
 * - pool claims from a pool that refills itself, each claimed prebuild's agent on `/agent` of a random
 *   replica (reconnecting elsewhere when its replica dies) until it has acked its reinit.
 * Then: never two provider calls in flight for one workspace; every acknowledged restart in the log exactly
 * once; no call failed (a handover is the cluster's business, never the caller's); each claim won by one
 * claimer, its agent's reinit acked, never delivered again after the ack; no burst restarted its workspace
 * more than once; the pool back to full; every workspace a command reached running.
 */
import net from 'node:net';
import { afterAll, beforeAll, expect, it } from 'vitest';
import WebSocket from 'ws';
import { ClusterClient } from '../../src/client/index.ts';
import type { AgentServerFrame } from '../../src/protocol/index.ts';
import { CpuHog } from '../helpers/cpu-hog.ts';
import { describeWith, postgresUrl } from '../helpers/require.ts';
import { ServeRig } from './harness.ts';

const KILLS = Number(process.env.WSUP_CLUSTER_KILLS ?? (process.env.WSUP_SOAK ? 100 : 20));
const debug = (...args: unknown[]) => process.env.WSUP_CLUSTER_DEBUG && console.error(new Date().toISOString(), ...args);

const seed = Number(process.env.WSUP_CLUSTER_SEED ?? Date.now() % 100_000);
let x = seed;
// The high bits of the LCG: its low bits repeat with a short period.
const rand = (n: number) => ((x = (x * 1103515245 + 12345) % 2 ** 31), Math.floor((x / 2 ** 31) * n));
const poll = (ms = 30_000) => ({ timeout: ms, interval: 200 });
const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A claimed prebuild's agent: connects to `/agent` of a random live replica with the token its start got, acks its reinit. */
class MixAgent {
  /** Reinit frames for this claim, over every connection. */
  reinits = 0;
  /** Reinit frames that arrived after the ack was confirmed. */
  afterAck = 0;
  /** Connections that closed after a reinit and before its ack was confirmed (a re-delivery is then right). */
  cutBeforeAck = 0;
  acked = false;
  connections = 0;

  constructor(
    readonly id: string,
    readonly claimBuildId: string,
  ) {}

  async run(rig: ServeRig, deadline: number): Promise<void> {
    while (!this.acked && Date.now() < deadline) {
      const { rows } = await rig.db.query<{ agent_token: string | null }>('SELECT agent_token FROM fake_resources WHERE workspace_id = $1', [this.id]);
      const token = rows[0]?.agent_token;
      const via = rig.live()[rand(Math.max(1, rig.live().length))];
      if (token && via) await this.once(`${via.url.replace(/^http/, 'ws')}/agent`, token, deadline);
      if (!this.acked) await pause(200);
    }
  }

  /** One connection; resolves when it closes (or the ack is confirmed). */
  private once(url: string, token: string, deadline: number): Promise<void> {
    this.connections++;
    return new Promise<void>((resolve) => {
      const ws = new WebSocket(url, { headers: { authorization: `Bearer ${token}` } });
      let gotReinit = false;
      const timer = setTimeout(() => ws.terminate(), Math.max(0, deadline - Date.now()));
      ws.on('message', (d: Buffer) => {
        const f = JSON.parse(d.toString('utf8')) as AgentServerFrame;
        if (f.type === 'reinit' && typeof f.event === 'object' && f.event.claimBuildId === this.claimBuildId) {
          this.reinits++;
          if (this.acked) this.afterAck++;
          gotReinit = true;
          ws.send(JSON.stringify({ type: 'ack', claimBuildId: this.claimBuildId }));
        } else if (f.type === 'acked' && f.claimBuildId === this.claimBuildId && f.ok) {
          this.acked = true;
          ws.close();
        } else if (f.type === 'refused') ws.close();
      });
      ws.on('error', () => undefined); // a dead replica or a token from an earlier start: try again
      ws.on('close', () => {
        clearTimeout(timer);
        if (gotReinit && !this.acked) this.cutBeforeAck++;
        resolve();
      });
    });
  }
}

/** A TCP balancer: each connection goes to a random port of `ports()` (a connection that fails is dropped). */
async function balancer(ports: () => number[]): Promise<{ url: string; close(): void }> {
  const server = net.createServer((inbound) => {
    const live = ports();
    if (live.length === 0) return inbound.destroy();
    const outbound = net.connect(live[Math.floor(Math.random() * live.length)]!, '127.0.0.1');
    inbound.pipe(outbound).pipe(inbound);
    inbound.on('error', () => outbound.destroy());
    outbound.on('error', () => inbound.destroy());
    inbound.on('close', () => outbound.destroy());
    outbound.on('close', () => inbound.destroy());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`, close: () => server.close() };
}

describeWith(postgresUrl(), 'wsup serve --cluster under kill -9, with claims, agents, file-write bursts and pool refills', (url) => {
  let hog: CpuHog | null = null;
  let rig: ServeRig | null = null;
  let lb: { url: string; close(): void } | null = null;
  const clients: ClusterClient[] = [];
  beforeAll(async () => {
    if (process.env.WSUP_CLUSTER_HOG !== '0') hog = await CpuHog.start();
  });
  afterAll(async () => {
    for (const c of clients) c.close();
    lb?.close();
    await rig?.dispose();
    await hog?.dispose();
  });

  it(`survives ${KILLS} kill -9 of serving replicas: no double provider call, no failed call, every command and reinit exactly once (seed ${seed})`, async () => {
    rig = await ServeRig.create(url, { latencyMs: 10 });
    const cluster = rig;
    const { db, operator } = cluster;
    const bootErrors: unknown[] = [];
    await cluster.spawn(); // migrates the schema
    await Promise.all([cluster.spawn(), cluster.spawn()]);
    await expect.poll(async () => [...(await cluster.owners()).values()].reduce((a, b) => a + b, 0), { ...poll(60_000), message: 'shards owned' }).toBe(64);

    // Clients are given the cluster's address (a TCP balancer over the live replicas, as a deployment puts
    // in front of them) and the replicas there at the start: every one of those is killed during the run.
    lb = await balancer(() => cluster.live().map((s) => Number(new URL(s.url).port)));
    const sdk = (first = 0) => {
      const urls = cluster.live().map((s) => s.url);
      const c = new ClusterClient({ urls: [lb!.url, ...urls.slice(first % urls.length), ...urls.slice(0, first % urls.length)], token: operator, WebSocket, reconnect: false, resendMs: 60_000 });
      clients.push(c);
      return c;
    };
    const failed = new Map<string, number>();
    const fail = (what: string, err: unknown) => {
      const code = `${what}: ${(err as { wsupCode?: string }).wsupCode ?? (err as Error).name}`;
      failed.set(code, (failed.get(code) ?? 0) + 1);
      if (process.env.WSUP_CLUSTER_DEBUG) console.log(code, (err as Error).message);
    };

    const WORKSPACES = 200;
    const wsId = (i: number) => `mx-${String(i).padStart(3, '0')}`;
    const setup = sdk();
    await Promise.all(Array.from({ length: WORKSPACES }, (_, i) => setup.call('workspace.ensure', { id: wsId(i) })));
    const FILE_WORKSPACES = 20;
    const fwId = (i: number) => `fw-${String(i).padStart(2, '0')}`;
    await Promise.all(Array.from({ length: FILE_WORKSPACES }, (_, i) => setup.call('workspace.create', { id: fwId(i) })));
    const POOL = 'mix';
    const DESIRED = 4;
    await setup.call('pool.set', { pool: POOL, desired: DESIRED });
    await expect.poll(async () => (await setup.call('pool.get', { pool: POOL })).ready, { ...poll(60_000), message: 'pool filled' }).toBe(DESIRED);

    let stop = false;
    let ops = 0;
    const acked = new Map<string, string>(); // request id -> workspace
    const touched = new Set<string>(Array.from({ length: WORKSPACES }, (_, i) => wsId(i)));

    const commander = async (k: number) => {
      const c = sdk(k);
      while (!stop) {
        const id = wsId(rand(WORKSPACES));
        const n = ++ops;
        try {
          if (rand(10) < 7) {
            const requestId = `rs-${n}`;
            await c.call('workspace.restart', { id, reason: requestId, requestId });
            acked.set(requestId, id);
          } else await c.call('workspace.ensure', { id });
        } catch (err) {
          fail('command', err);
        }
      }
    };

    const bursts = new Map<string, number>(); // file workspace -> bursts sent
    const writers = [sdk(0), sdk(1), sdk(2)];
    const writer = async () => {
      while (!stop) {
        const id = fwId(rand(FILE_WORKSPACES));
        bursts.set(id, (bursts.get(id) ?? 0) + 1);
        touched.add(id);
        const sent = await Promise.allSettled(Array.from({ length: 6 }, (_, i) => writers[i % 3]!.call('files.written', { id, paths: [`src/${i}.ts`] })));
        for (const s of sent) if (s.status === 'rejected') fail('files.written', s.reason);
        await pause(400 + rand(400));
      }
    };

    const agents: MixAgent[] = [];
    let empty = 0;
    const agentRuns: Array<Promise<void>> = [];
    const claimer = async () => {
      const c = sdk(1);
      for (let n = 0; !stop && n < 40; n++) {
        try {
          const claim = await c.call('workspace.claim', { pool: POOL, userId: `user-${n}` });
          const agent = new MixAgent(claim.id, claim.claimBuildId);
          agents.push(agent);
          agentRuns.push(agent.run(cluster, Date.now() + 240_000));
        } catch (err) {
          // The pool ran dry (claims come faster than a pool whose reconciler moves with every kill refills):
          // the caller's answer, not a handover failure.
          if ((err as { wsupCode?: string }).wsupCode === 'WSUP_CLAIM_CONFLICT' && /has no unclaimed prebuild/.test((err as Error).message)) empty++;
          else fail('claim', err);
        }
        await pause(500 + rand(500));
      }
    };

    const load = [...Array.from({ length: 6 }, (_, k) => commander(k)), writer(), claimer()];
    try {
      for (let k = 0; k < KILLS; k++) {
        await pause(400 + rand(800));
        await expect.poll(() => cluster.live().length, { ...poll(60_000), message: 'ready replicas' }).toBeGreaterThanOrEqual(2);
        const live = cluster.live();
        const victim = live[rand(live.length)]!;
        debug(`kill ${k + 1}: ${victim.name}; ${ops} commands, ${acked.size} acked, ${agents.length} claims, failed ${JSON.stringify(Object.fromEntries(failed))}`);
        await cluster.kill(victim);
        cluster.spawn().then((s) => debug(`${s.name} ready`), (err: unknown) => (debug('boot failed', err), bootErrors.push(err))); // a replacement joins while the others take over
      }
      await expect.poll(() => cluster.live().length, { ...poll(60_000), message: 'three ready replicas again' }).toBe(3);
      const healedAt = ops;
      await expect.poll(() => ops, { ...poll(), message: 'commands on the healed cluster' }).toBeGreaterThanOrEqual(healedAt + 100);
    } finally {
      stop = true; // a failed expectation above ends the load too
    }
    await Promise.all(load);
    await Promise.all(agentRuns);
    expect(bootErrors).toEqual([]);

    // Never two provider calls in flight for one workspace.
    const { rows: violations } = await db.query('SELECT workspace_id, replica, other, at FROM fake_violations');
    expect(violations, 'two provider calls in flight for one workspace').toEqual([]);

    // No call failed: a command whose answer died with its replica was sent again and answered.
    expect(Object.fromEntries(failed), 'failed calls by code').toEqual({});

    // Every acknowledged restart is in the log exactly once (its request id is in the requester).
    const { rows: counted } = await db.query<{ rid: string; n: number }>(
      `SELECT substring(data->>'requester' from '~req:(rs-[0-9]+)') AS rid, count(*)::int AS n FROM workspace_events
       WHERE kind = 'request' AND data->>'requester' LIKE '%~req:rs-%' GROUP BY 1`,
    );
    const times = new Map(counted.map((r) => [r.rid, r.n]));
    const notOnce = [...acked.keys()].filter((rid) => times.get(rid) !== 1);
    expect(notOnce.map((rid) => `${rid}: ${times.get(rid) ?? 0}`), 'acked restarts not recorded exactly once').toEqual([]);
    expect(counted.filter((r) => r.n > 1), 'restarts recorded twice').toEqual([]);

    // Claims: one winner each, every agent's reinit acked and never delivered again after the ack.
    expect(new Set(agents.map((a) => a.id)).size, 'a prebuild claimed twice').toBe(agents.length);
    expect(agents.filter((a) => !a.acked).map((a) => a.id), 'agents whose reinit was never acked').toEqual([]);
    expect(agents.filter((a) => a.afterAck > 0).map((a) => a.id), 'reinits delivered after their ack').toEqual([]);
    expect(agents.filter((a) => a.reinits > 1 + a.cutBeforeAck).map((a) => `${a.id}: ${a.reinits}`), 'reinits delivered twice on a live connection').toEqual([]);
    const { rows: owners } = await db.query<{ workspace_id: string; owner_id: string }>('SELECT workspace_id, owner_id FROM claims WHERE workspace_id = ANY($1::text[])', [agents.map((a) => a.id)]);
    expect(owners.length).toBe(agents.length);
    // And no claimer holds two prebuilds (a re-sent pool claim never wins a second one).
    const { rows: twice } = await db.query('SELECT owner_id, count(*)::int AS n FROM claims GROUP BY owner_id HAVING count(*) > 1');
    expect(twice, 'claimers holding two prebuilds').toEqual([]);

    // The pool refilled after the claims; every workspace a command reached settles running.
    const after = sdk();
    await expect.poll(async () => (await after.call('pool.get', { pool: POOL })).ready, { ...poll(90_000), message: 'pool refilled' }).toBe(DESIRED);
    const notRunning = async () => {
      const { rows } = await db.query<{ id: string; state: string }>(`SELECT id, state FROM workspaces WHERE id = ANY($1::text[])`, [[...touched]]);
      const running = new Set(rows.filter((r) => r.state === 'running').map((r) => r.id));
      return [...touched].filter((id) => !running.has(id));
    };
    await expect.poll(notRunning, { ...poll(90_000), message: 'touched workspaces not running' }).toEqual([]);

    // Every burst restarted its workspace, and none more than once (the owner coalesces, whichever replica got
    // the writes; a burst whose owner died before its restart is restarted by the next owner).
    const { rows: fileCycles } = await db.query<{ workspace_id: string; n: number }>(
      `SELECT workspace_id, count(*)::int AS n FROM workspace_events WHERE kind = 'cycle.completed' AND source = 'file-write' AND workspace_id LIKE 'fw-%' GROUP BY 1`,
    );
    expect(fileCycles.filter((r) => r.n > (bursts.get(r.workspace_id) ?? 0)), 'file-write cycles past the bursts sent').toEqual([]);
    const restartedBy = new Map(fileCycles.map((r) => [r.workspace_id, r.n]));
    expect([...bursts.keys()].filter((id) => !restartedBy.has(id)), 'workspaces whose bursts never restarted them').toEqual([]);

    const resent = clients.reduce((a, c) => a + c.stats.resent, 0);
    const { rows: refused } = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM fake_refused');
    console.log(
      `kill mix: ${KILLS} kills, ${ops} commands (${acked.size} acked restarts), ${resent} re-sent, ${agents.length} claims (${empty} found the pool empty, ${agents.reduce((a, g) => a + g.connections, 0)} agent connections, ${agents.reduce((a, g) => a + g.cutBeforeAck, 0)} cut before the ack), ` +
        `${[...bursts.values()].reduce((a, b) => a + b, 0)} bursts → ${fileCycles.reduce((a, r) => a + r.n, 0)} file-write cycles, ${refused[0]!.n} calls refused by the provider's fence, 0 violations, 0 failed calls; ` +
        `cpu hog ${hog ? `${hog.children.length} children, ${hog.cpuMs()} ms CPU` : 'off'}`,
    );
    expect(acked.size, 'restarts acknowledged during the kills').toBeGreaterThanOrEqual(100);
    expect(agents.length, 'claims during the kills').toBeGreaterThanOrEqual(5);
  }, 900_000);
});
