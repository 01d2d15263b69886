/**
 * Prebuild claims and agent reinit end to end, in one process: a real control server with `/agent`, a durable supervisor on a real
 * store (PGlite; PostgreSQL too when DATABASE_URL is set), the agent SDK over loopback through a proxy that
 * cuts connections on cue. The SDK's backoff sleeps run on a manual scheduler: no test sleeps.
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { memoryLedger } from '../../src/agent/index.ts';
import { postgresUrl } from '../helpers/require.ts';
import { pgliteFixture, postgresFixture, type StoreFixture } from '../store/fixtures.ts';
import { ManualScheduler, runAgent, type RunningAgent } from './helpers.ts';
import { agentToken, startClaimRig, type ClaimRig } from './rig.ts';

const url = postgresUrl();
const engines: Array<[string, () => Promise<StoreFixture>]> = [['PGlite', pgliteFixture]];
if (url) engines.push(['PostgreSQL', postgresFixture(url)]);

describe.each(engines)('prebuild claims and agent reinit on %s', (_name, fixture) => {
  let fx: StoreFixture;
  let rig: ClaimRig;
  let agents: RunningAgent[];
  let scheduler: ManualScheduler;

  // One server and store for the file (setup costs seconds); every test uses its own workspace ids.
  beforeAll(async () => {
    fx = await fixture();
    rig = await startClaimRig(await fx.engine());
  });
  afterAll(async () => {
    await rig.close();
    await fx.dispose();
  });
  beforeEach(() => {
    agents = [];
    scheduler = new ManualScheduler();
    rig.onDeliver = null;
    rig.provider.latencyMs = 0;
  });
  afterEach(async () => {
    await Promise.all(agents.map((a) => a.stop()));
  });
  const deliveredTo = (id: string) => rig.delivered.filter((e) => e.workspaceId === id);

  const agent = (id: string, extra: Partial<Parameters<typeof runAgent>[0]> = {}) => {
    const a = runAgent({ url: rig.agentUrl, token: agentToken(id), scheduler, workspaceId: id, ...extra });
    agents.push(a);
    return a;
  };
  const waiting = (a: RunningAgent, why: string) => a.until(() => a.statuses.at(-1)?.type === 'waiting' && (a.statuses.at(-1) as { why: string }).why === why, `waiting ${why}`);
  const claimOf = (id: string) => rig.store.claims.get(id);

  describe('the four upstream cases', () => {
    it('an unclaimed prebuild waits, then gets one reinit when claimed, and acks it durably', async () => {
      await rig.prebuild('pb-1');
      const a = agent('pb-1');
      await waiting(a, 'unclaimed');
      expect(a.yielded).toEqual([]);

      const r = await rig.control.call('workspace.claim', { id: 'pb-1', userId: 'alice' });
      expect(r).toMatchObject({ id: 'pb-1', ownerId: 'alice' });
      await a.until(() => a.yielded.length === 1, 'the reinit');
      expect(a.yielded[0]).toEqual({ workspaceId: 'pb-1', ownerId: 'alice', claimBuildId: r.claimBuildId, reason: 'prebuild_claimed' });
      await a.until(() => a.count('acked') === 1, 'the ack');
      expect((await claimOf('pb-1'))?.ackedAt).toEqual(expect.any(Number));
      // The claim drove a cycle with source `claim` and the build is recorded as complete.
      expect((await claimOf('pb-1'))?.buildCompletedAt).toEqual(expect.any(Number));
      const cycles = (await rig.store.events('pb-1', { limit: 100 })).filter((e) => e.kind === 'cycle.started');
      expect(cycles.map((e) => e.source)).toContain('claim');
    });

    it('a claimed prebuild whose build finished gets the reinit at once on connect', async () => {
      await rig.prebuild('pb-2');
      const r = await rig.control.call('workspace.claim', { id: 'pb-2', userId: 'bob' });
      await expect.poll(async () => (await claimOf('pb-2'))?.buildCompletedAt ?? null).not.toBeNull();
      const a = agent('pb-2');
      await a.until(() => a.yielded.length === 1, 'the reinit');
      expect(a.yielded[0]).toMatchObject({ ownerId: 'bob', claimBuildId: r.claimBuildId });
      // At once: no waiting before the reinit (after it, the agent may go on to wait for the next one).
      expect(a.statuses.slice(0, a.yieldedAfter[0]).filter((s) => s.type === 'waiting')).toEqual([]);
    });

    it('a claimed prebuild whose build is running gets the reinit only after the build completes', async () => {
      rig.provider.latencyMs = 1000; // builds complete when the build clock says so
      await rig.prebuild('pb-3');
      const r = await rig.control.call('workspace.claim', { id: 'pb-3', userId: 'carol' });
      const a = agent('pb-3');
      await waiting(a, 'claim_build_running');
      expect(deliveredTo('pb-3')).toEqual([]);
      await expect.poll(() => rig.buildClock.pending).toBe(1);
      rig.buildClock.advance(1000);
      await a.until(() => a.yielded.length === 1, 'the reinit after the build');
      expect(a.yielded[0]).toMatchObject({ ownerId: 'carol', claimBuildId: r.claimBuildId });
      expect((await rig.supervisor.get('pb-3')).state).toBe('running');
    });

    it('a regular workspace is refused (the 409) and the SDK stops for good', async () => {
      await rig.regular('plain');
      const a = agent('plain');
      expect(await a.end).toMatchObject({ reason: 'refused', code: 'WSUP_NOT_PREBUILD' });
      expect(a.count('connecting')).toBe(1);
      expect(scheduler.requested).toEqual([]);
      expect(a.yielded).toEqual([]);
    });
  });

  describe('claims', () => {
    it('two concurrent claims of one prebuild: exactly one wins, the other gets WSUP_CLAIM_CONFLICT', async () => {
      await rig.prebuild('pb-race');
      const results = await Promise.allSettled([
        rig.control.call('workspace.claim', { id: 'pb-race', userId: 'u1' }),
        rig.control.call('workspace.claim', { id: 'pb-race', userId: 'u2' }),
      ]);
      const won = results.filter((r) => r.status === 'fulfilled');
      const lost = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
      expect(won).toHaveLength(1);
      expect(lost[0]?.reason).toMatchObject({ wsupCode: 'WSUP_CLAIM_CONFLICT' });
      expect(String((lost[0]?.reason as Error).message)).toMatch(/already claimed by u[12]/);
    });

    it('concurrent pool claims get different prebuilds; an empty pool is a clear error', async () => {
      await rig.prebuild('pool-a', 'py');
      await rig.prebuild('pool-b', 'py');
      const got = await Promise.all([1, 2].map((i) => rig.control.call('workspace.claim', { pool: 'py', userId: `u${i}` })));
      expect(new Set(got.map((g) => g.id))).toEqual(new Set(['pool-a', 'pool-b']));
      await expect(rig.control.call('workspace.claim', { pool: 'py', userId: 'u3' })).rejects.toMatchObject({ wsupCode: 'WSUP_CLAIM_CONFLICT' });
      await rig.regular('not-pb');
      await expect(rig.control.call('workspace.claim', { id: 'not-pb', userId: 'u' })).rejects.toMatchObject({ wsupCode: 'WSUP_CLAIM_CONFLICT' });
      await expect(rig.control.call('workspace.create', { id: 'not-pb', prebuild: true })).rejects.toMatchObject({ wsupCode: 'WSUP_INVALID_ARGUMENT' });
    });
  });

  it('a connection cut exactly between the claim commit and the delivery: delivered once on reconnect', async () => {
    await rig.prebuild('pb-cut');
    const a = agent('pb-cut');
    await waiting(a, 'unclaimed');
    let cuts = 0;
    rig.onDeliver = async (id) => {
      if (id !== 'pb-cut' || cuts++ > 0) return;
      rig.proxy.cut(); // the frame is written into a dead connection
      await scheduler.untilSleeping();
    };
    const r = await rig.control.call('workspace.claim', { id: 'pb-cut', userId: 'dana' });
    await a.until(() => scheduler.sleeping === 1, 'backoff after the cut');
    expect(a.yielded).toEqual([]);
    expect(scheduler.requested).toEqual([100]);
    scheduler.release();
    await a.until(() => a.count('acked') === 1, 'the reinit and its ack after reconnecting');
    expect(a.yielded).toEqual([{ workspaceId: 'pb-cut', ownerId: 'dana', claimBuildId: r.claimBuildId, reason: 'prebuild_claimed' }]);
    expect(deliveredTo('pb-cut')).toHaveLength(2); // written twice (once into the void), yielded once
  });

  it('after the ack: 50 reconnects deliver nothing more', async () => {
    await rig.prebuild('pb-ack');
    const a = agent('pb-ack');
    await rig.control.call('workspace.claim', { id: 'pb-ack', userId: 'erin' });
    await a.until(() => a.count('acked') === 1, 'ack');
    const sent = deliveredTo('pb-ack').length;
    for (let i = 0; i < 50; i++) {
      const connected = a.count('connected');
      rig.proxy.cut();
      await scheduler.untilSleeping();
      scheduler.release();
      await a.until(() => a.count('connected') === connected + 1 && a.statuses.at(-1)?.type === 'waiting', `reconnect ${i + 1}`);
    }
    expect(a.count('connected')).toBe(51);
    expect(deliveredTo('pb-ack').length).toBe(sent);
    expect(a.yielded).toHaveLength(1);
    expect(a.count('duplicate')).toBe(0);
    // Each reconnect was told to wait because the claim is acknowledged, and backoff reset every time.
    expect(new Set(scheduler.requested)).toEqual(new Set([100]));
  });

  it('an agent token of one workspace never receives or acks another workspace’s claim', async () => {
    await rig.prebuild('mine');
    await rig.prebuild('theirs');
    const a = agent('mine');
    await waiting(a, 'unclaimed');
    const r = await rig.control.call('workspace.claim', { id: 'theirs', userId: 'mallory' });
    await expect.poll(async () => (await claimOf('theirs'))?.buildCompletedAt ?? null).not.toBeNull();
    expect(a.yielded).toEqual([]);
    // Acking the other workspace's build over this token changes nothing: the socket is bound to `mine`.
    expect(await rig.claims.ack('mine', r.claimBuildId)).toBe(false);
    expect((await claimOf('theirs'))?.ackedAt).toBeNull();
    const b = agent('theirs');
    await b.until(() => b.yielded.length === 1, 'their reinit');
    expect(a.yielded).toEqual([]);
  });

  it('a state file (ledger) remembers a yielded reinit across agent restarts: acked, not yielded again', async () => {
    await rig.prebuild('pb-led');
    const r = await rig.control.call('workspace.claim', { id: 'pb-led', userId: 'frank' });
    const ledger = memoryLedger();
    await ledger.add('frank', r.claimBuildId); // yielded by a previous life that died before its ack arrived
    const a = agent('pb-led', { ledger });
    await a.until(() => a.count('acked') === 1, 'ack of the duplicate');
    expect(a.yielded).toEqual([]);
    expect(a.count('duplicate')).toBe(1);
    expect((await claimOf('pb-led'))?.ackedAt).toEqual(expect.any(Number));
  });

  it('100 agents reconnecting while 100 claims happen: each gets exactly one reinit, for its own workspace', async () => {
    const ids = Array.from({ length: 100 }, (_, i) => `herd-${i}`);
    for (const id of ids) await rig.prebuild(id, 'herd');
    scheduler.auto = true; // reconnect at once after every cut
    const herd = ids.map((id) => agent(id));
    await Promise.all(herd.map((a) => a.until(() => a.count('waiting') > 0, 'first waiting')));
    const cutter = (async () => {
      for (let i = 0; i < 20; i++) {
        rig.proxy.cut();
        await new Promise<void>((r) => setImmediate(r));
      }
    })();
    const claimed = await Promise.all(ids.map((_, i) => rig.control.call('workspace.claim', { pool: 'herd', userId: `user-${i}` })));
    await cutter;
    expect(new Set(claimed.map((c) => c.id)).size).toBe(100);
    await Promise.all(herd.map((a) => a.until(() => a.yielded.length >= 1 && a.count('acked') >= 1, 'reinit + ack', 20_000)));
    const byId = new Map(claimed.map((c) => [c.id, c]));
    herd.forEach((a, i) => {
      expect(a.yielded).toHaveLength(1);
      const ev = a.yielded[0]!;
      expect(ev.workspaceId).toBe(ids[i]);
      expect(ev).toMatchObject({ ownerId: byId.get(ids[i]!)!.ownerId, claimBuildId: byId.get(ids[i]!)!.claimBuildId });
    });
  }, 30_000);
});
