/**
 * The durable supervisor on PGlite: acknowledgements are committed, a "crashed" supervisor (abandoned
 * without shutdown) is restored by a new one on the same store, corrupt rows are quarantined by id, and the
 * provider's actual state is reconciled.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { SimulatedClock } from 'xstate';
import { FakeProvider } from '../../src/providers/fake.ts';
import { WorkspaceStore } from '../../src/store/index.ts';
import { openDurableSupervisor, type OrphanPolicy } from '../../src/supervisor/durable.ts';
import { pgliteFixture, type StoreFixture } from '../store/fixtures.ts';
import { flush, T0 } from '../helpers/harness.ts';
import { shardOf } from '../../src/protocol/shards.ts';

const fixtures: StoreFixture[] = [];
afterEach(async () => {
  await Promise.all(fixtures.splice(0).map((f) => f.dispose()));
});

async function freshStore(): Promise<WorkspaceStore> {
  const fx = await pgliteFixture();
  fixtures.push(fx);
  return WorkspaceStore.open({ engine: await fx.engine() });
}

/** The provider's view after a crash: these workspaces' resources are still running. */
async function survivors(clock: SimulatedClock, ids: string[]): Promise<FakeProvider> {
  const provider = new FakeProvider({ clock, latencyMs: 0 });
  for (const id of ids) await provider.start({ id }, new AbortController().signal);
  provider.latencyMs = 100;
  return provider;
}

async function world(store?: WorkspaceStore, provider?: FakeProvider, clock?: SimulatedClock, orphans: OrphanPolicy = 'report', keepAll = false) {
  const s = store ?? (await freshStore());
  const c = clock ?? new SimulatedClock();
  if (!clock) c.set(T0);
  const p = provider ?? new FakeProvider({ clock: c, latencyMs: 100 });
  const { supervisor, recovery } = await openDurableSupervisor({ store: s, provider: p, clock: c, orphans, ...(keepAll ? { deactivateAfterMs: 0 } : {}) });
  const advance = async (ms: number) => {
    await flush();
    c.increment(ms);
    await flush();
  };
  return { store: s, provider: p, clock: c, sup: supervisor, recovery, advance };
}

describe('durable supervisor', () => {
  it('answers a command only after the transition it caused is committed', async () => {
    const w = await world();
    const ensured = w.sup.ensure('ws-a');
    await w.advance(100);
    await ensured;
    const answer = await w.sup.restart('ws-a', { source: 'manual', reason: 'deploy' });
    const row = await w.store.getWorkspace('ws-a');
    expect(row).toMatchObject({ state: 'stopping', desired: 'running' });
    expect((row!.snapshot!.context as unknown as { cycleCount: number }).cycleCount).toBe(answer.cycle);
    const log = await w.store.events('ws-a', { limit: 50 });
    expect(log.some((e) => e.kind === 'request' && e.outcome === 'started')).toBe(true);
    expect(log.some((e) => e.kind === 'cycle.started' && e.reason === 'deploy')).toBe(true);
  });

  it('keeping every actor: a new supervisor on the same store restores every workspace, re-arms deadlines and re-runs interrupted calls', async () => {
    const a = await world();
    await Promise.all([a.sup.ensure('ws-run'), a.sup.ensure('ws-def'), a.advance(100)]);
    expect((await a.sup.restart('ws-def', { source: 'file-write' })).outcome).toBe('deferred');
    void a.sup.ensure('ws-mid').catch(() => undefined); // its provider start is in flight at the "crash"
    await flush();
    await a.store.commit({}); // nothing pending: every acknowledged write is in
    // Crash: abandon `a` without shutdown. A fresh provider view of the same world keeps the running ones.
    const provider = await survivors(a.clock, ['ws-run', 'ws-def']);
    const b = await world(a.store, provider, a.clock, 'report', true);
    expect(b.recovery.restored.sort()).toEqual(['ws-def', 'ws-mid', 'ws-run']);
    expect(b.recovery.adopted.sort()).toEqual(['ws-def', 'ws-run']);
    expect((await b.sup.get('ws-def')).deferredUntil).toBe(T0 + 60_000);
    expect((await b.sup.get('ws-mid')).state).toBe('starting');
    await b.advance(100);
    expect((await b.sup.get('ws-mid')).state).toBe('running');
    await b.advance(60_000);
    expect(provider.calls.filter((c) => c.id === 'ws-def').map((c) => c.op)).toEqual(['start', 'stop']); // seeded start, then the deferred cycle
  });

  it('keeping every actor: quarantines a corrupt row by id, loads the others, and refuses commands on it with a clear error', async () => {
    const a = await world();
    await Promise.all([a.sup.ensure('ws-good'), a.sup.ensure('ws-bad'), a.advance(100)]);
    await a.store.engine.query(`UPDATE workspaces SET snapshot = '{"status":"active","value":42}'::jsonb WHERE id = 'ws-bad'`, []);
    const b = await world(a.store, a.provider, a.clock, 'report', true);
    expect(b.recovery.restored).toEqual(['ws-good']);
    expect(b.recovery.corrupt).toEqual([{ id: 'ws-bad', reason: expect.stringContaining('snapshot') as unknown }]);
    await expect(b.sup.restart('ws-bad')).rejects.toMatchObject({ code: 'WSUP_CORRUPT_STATE', workspaceId: 'ws-bad' });
    await expect(b.sup.get('ws-bad')).rejects.toThrow(/ws-bad/);
  });

  it('with actors leaving memory: restores only the workspaces with a call in flight or due soon, and activates the rest on use', async () => {
    const a = await world();
    await Promise.all([a.sup.ensure('ws-run'), a.sup.ensure('ws-def'), a.advance(100)]);
    expect((await a.sup.restart('ws-def', { source: 'file-write' })).outcome).toBe('deferred');
    void a.sup.ensure('ws-mid').catch(() => undefined); // in flight at the "crash"
    await a.sup.create('ws-idle');
    await flush();
    await a.store.commit({});
    const provider = await survivors(a.clock, ['ws-run', 'ws-def']);
    const b = await world(a.store, provider, a.clock);
    expect(b.recovery.restored.sort()).toEqual(['ws-def', 'ws-mid']); // deferred (due within a minute) and starting
    expect(b.recovery.cold).toBe(2);
    expect(b.recovery.adopted.sort()).toEqual(['ws-def', 'ws-run']); // the running ones are checked all the same
    expect(b.sup.peek('ws-run')).toBeUndefined();
    expect(b.sup.summary.getSnapshot().context.counts).toMatchObject({ running: 2, starting: 1, idle: 1 });
    expect(await b.sup.get('ws-run')).toMatchObject({ state: 'running' }); // read from the store, still not in memory
    expect(b.sup.peek('ws-run')).toBeUndefined();
    expect(await b.sup.list()).toHaveLength(4);
    expect((await b.sup.restart('ws-run')).outcome).toBe('started'); // activated by the command
    expect(b.sup.peek('ws-run')?.state).toBe('stopping');
    expect(b.sup.residency().activations).toBe(1);
  });

  it('with actors leaving memory: finds a corrupt row when it is first used, quarantines it by id and refuses commands on it', async () => {
    const a = await world();
    await Promise.all([a.sup.ensure('ws-good'), a.sup.ensure('ws-bad'), a.advance(100)]);
    await a.store.engine.query(`UPDATE workspaces SET snapshot = '{"status":"active","value":42}'::jsonb WHERE id = 'ws-bad'`, []);
    const b = await world(a.store, a.provider, a.clock);
    expect(b.recovery.corrupt).toEqual([]);
    await expect(b.sup.restart('ws-bad')).rejects.toMatchObject({ code: 'WSUP_CORRUPT_STATE', workspaceId: 'ws-bad' });
    await expect(b.sup.get('ws-bad')).rejects.toThrow(/ws-bad/);
    expect(b.sup.quarantined().map((q) => q.id)).toEqual(['ws-bad']);
    expect((await b.sup.ensure('ws-good')).state).toBe('running');
  });

  it("with actors leaving memory: a shard's new owner restores only that shard's workspaces with work in flight", async () => {
    const a = await world();
    const shard = shardOf('ws-s0', 64);
    const pool = Array.from({ length: 2_000 }, (_, i) => `ws-s${i}`);
    const mine = pool.filter((id) => shardOf(id, 64) === shard).slice(0, 6);
    const ids = [...mine, ...pool.filter((id) => shardOf(id, 64) !== shard).slice(0, 10)];
    const busy = [...mine.slice(0, 3), ...ids.slice(6, 11)]; // their starts are in flight at the "crash"
    for (const id of ids) await a.sup.create(id);
    for (const id of busy) void a.sup.ensure(id).catch(() => undefined);
    await flush();
    await a.store.commit({});
    const c = new SimulatedClock();
    c.set(a.clock.now());
    const take = () => openDurableSupervisor({ store: a.store, provider: new FakeProvider({ clock: c, latencyMs: 100 }), clock: c, shards: { count: 64, of: [shard] } });
    // The shard's first owner ever brings every one of its workspaces up to the server default once.
    const first = await take();
    expect(first.recovery.restored.sort()).toEqual([...mine].sort());
    await first.supervisor.shutdown({ deadlineMs: 0 });
    const { supervisor, recovery } = await take();
    expect(mine).toHaveLength(6);
    expect(recovery.restored.sort()).toEqual(mine.slice(0, 3).sort());
    expect(recovery.cold).toBe(mine.filter((id) => !busy.includes(id)).length);
    expect(supervisor.summary.getSnapshot().context.total).toBe(mine.length);
    expect((await supervisor.list()).map((v) => v.id).sort()).toEqual([...mine].sort()); // only its shard's rows
    await supervisor.shutdown({ deadlineMs: 0 });
  });

  it('restarts a running workspace whose resource vanished, and reports or removes orphans by policy', async () => {
    const a = await world();
    await Promise.all([a.sup.ensure('ws-gone'), a.advance(100)]);
    const provider = await survivors(a.clock, ['ws-stranger']);
    const b = await world(a.store, provider, a.clock, 'report');
    expect(b.recovery.vanished).toEqual(['ws-gone']);
    expect(b.recovery.orphans).toEqual([{ id: 'ws-stranger', action: 'reported' }]);
    expect((await b.sup.get('ws-gone')).state).toBe('stopping');
    await b.advance(100);
    await b.advance(100);
    expect((await b.sup.get('ws-gone')).state).toBe('running');

    // Removing the orphan is a provider call on the simulated clock: keep time moving until recovery ends.
    let done = false;
    const opening = world(a.store, provider, a.clock, 'remove').finally(() => (done = true));
    while (!done) await b.advance(50);
    const c = await opening;
    expect(c.recovery.orphans).toEqual([{ id: 'ws-stranger', action: 'removed' }]);
    expect(await provider.inspect('ws-stranger')).toBeNull();
  });
});
