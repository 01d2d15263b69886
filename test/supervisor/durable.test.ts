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

async function world(store?: WorkspaceStore, provider?: FakeProvider, clock?: SimulatedClock, orphans: OrphanPolicy = 'report') {
  const s = store ?? (await freshStore());
  const c = clock ?? new SimulatedClock();
  if (!clock) c.set(T0);
  const p = provider ?? new FakeProvider({ clock: c, latencyMs: 100 });
  const { supervisor, recovery } = await openDurableSupervisor({ store: s, provider: p, clock: c, orphans });
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

  it('a new supervisor on the same store restores every workspace, re-arms deadlines and re-runs interrupted calls', async () => {
    const a = await world();
    await Promise.all([a.sup.ensure('ws-run'), a.sup.ensure('ws-def'), a.advance(100)]);
    expect((await a.sup.restart('ws-def', { source: 'file-write' })).outcome).toBe('deferred');
    void a.sup.ensure('ws-mid').catch(() => undefined); // its provider start is in flight at the "crash"
    await flush();
    await a.store.commit({}); // nothing pending: every acknowledged write is in
    // Crash: abandon `a` without shutdown. A fresh provider view of the same world keeps the running ones.
    const provider = await survivors(a.clock, ['ws-run', 'ws-def']);
    const b = await world(a.store, provider, a.clock);
    expect(b.recovery.restored.sort()).toEqual(['ws-def', 'ws-mid', 'ws-run']);
    expect(b.recovery.adopted.sort()).toEqual(['ws-def', 'ws-run']);
    expect(b.sup.get('ws-def').deferredUntil).toBe(T0 + 60_000);
    expect(b.sup.get('ws-mid').state).toBe('starting');
    await b.advance(100);
    expect(b.sup.get('ws-mid').state).toBe('running');
    await b.advance(60_000);
    expect(provider.calls.filter((c) => c.id === 'ws-def').map((c) => c.op)).toEqual(['start', 'stop']); // seeded start, then the deferred cycle
  });

  it('quarantines a corrupt row by id, loads the others, and refuses commands on it with a clear error', async () => {
    const a = await world();
    await Promise.all([a.sup.ensure('ws-good'), a.sup.ensure('ws-bad'), a.advance(100)]);
    await a.store.engine.query(`UPDATE workspaces SET snapshot = '{"status":"active","value":42}'::jsonb WHERE id = 'ws-bad'`, []);
    const b = await world(a.store, a.provider, a.clock);
    expect(b.recovery.restored).toEqual(['ws-good']);
    expect(b.recovery.corrupt).toEqual([{ id: 'ws-bad', reason: expect.stringContaining('snapshot') as unknown }]);
    await expect(b.sup.restart('ws-bad')).rejects.toMatchObject({ code: 'WSUP_CORRUPT_STATE', workspaceId: 'ws-bad' });
    expect(() => b.sup.get('ws-bad')).toThrow(/ws-bad/);
  });

  it('restarts a running workspace whose resource vanished, and reports or removes orphans by policy', async () => {
    const a = await world();
    await Promise.all([a.sup.ensure('ws-gone'), a.advance(100)]);
    const provider = await survivors(a.clock, ['ws-stranger']);
    const b = await world(a.store, provider, a.clock, 'report');
    expect(b.recovery.vanished).toEqual(['ws-gone']);
    expect(b.recovery.orphans).toEqual([{ id: 'ws-stranger', action: 'reported' }]);
    expect(b.sup.get('ws-gone').state).toBe('stopping');
    await b.advance(100);
    await b.advance(100);
    expect(b.sup.get('ws-gone').state).toBe('running');

    // Removing the orphan is a provider call on the simulated clock: keep time moving until recovery ends.
    let done = false;
    const opening = world(a.store, provider, a.clock, 'remove').finally(() => (done = true));
    while (!done) await b.advance(50);
    const c = await opening;
    expect(c.recovery.orphans).toEqual([{ id: 'ws-stranger', action: 'removed' }]);
    expect(await provider.inspect('ws-stranger')).toBeNull();
  });
});
