/**
 * File-write bursts on record: acknowledged once on record, restarted under their label, cleared once run,
 * and recovered once by the next owner when the one that acknowledged them died first.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { SimulatedClock } from 'xstate';
import type { BusSink } from '../../src/bus/types.ts';
import { FakeProvider } from '../../src/providers/fake.ts';
import { WorkspaceStore } from '../../src/store/index.ts';
import { DurableBursts } from '../../src/supervisor/bursts.ts';
import { openDurableSupervisor } from '../../src/supervisor/durable.ts';
import { flush, T0 } from '../helpers/harness.ts';
import { pgliteFixture, type StoreFixture } from '../store/fixtures.ts';

const fixtures: StoreFixture[] = [];
afterEach(async () => {
  await Promise.all(fixtures.splice(0).map((f) => f.dispose()));
});

async function world() {
  const fx = await pgliteFixture();
  fixtures.push(fx);
  const store = await WorkspaceStore.open({ engine: await fx.engine() });
  const clock = new SimulatedClock();
  clock.set(T0);
  const { supervisor } = await openDurableSupervisor({ store, provider: new FakeProvider({ clock, latencyMs: 10 }), clock });
  const errors: unknown[] = [];
  const bursts = (prefix: string) => new DurableBursts({ store, prefix, owns: () => true, onError: (err) => errors.push(err) });
  const settle = async () => {
    for (let i = 0; i < 5; i++) {
      await flush();
      clock.increment(10);
      await flush();
    }
  };
  const requests = async (id: string) => (await store.events(id, { limit: 100 })).filter((e) => e.kind === 'request').map((e) => (e.data as { requester: string }).requester);
  return { store, supervisor, bursts, settle, requests, errors };
}

describe('durable file-write bursts', () => {
  it('puts a burst on record once, restarts it under its label, and clears the record once run', async () => {
    const w = await world();
    await w.supervisor.create('ws-1', {});
    const b = w.bursts('files:a');
    await Promise.all([b.opened('ws-1'), b.opened('ws-1'), b.opened('ws-1')]);
    expect(await w.store.bursts.list()).toEqual([{ workspaceId: 'ws-1', label: 'files:a.1' }]);
    const sink = b.sink(w.supervisor.busSink());
    const ran = sink.restart('ws-1', { source: 'file-write', reason: '3 files written', requester: 'bus:file-write:1' });
    await w.settle();
    await ran;
    await w.settle();
    expect(await w.requests('ws-1')).toEqual([expect.stringMatching(/^files:a\.1#/)]);
    expect(await w.store.bursts.list()).toEqual([]);
    // The next write opens a new burst, under a new label.
    await b.opened('ws-1');
    expect(await w.store.bursts.list()).toEqual([{ workspaceId: 'ws-1', label: 'files:a.2' }]);
    expect(w.errors).toEqual([]);
  });

  it("restarts, once, a burst whose owner died before restarting it; a burst already restarted is only cleared", async () => {
    const w = await world();
    await w.supervisor.create('ws-lost', {});
    await w.supervisor.create('ws-done', {});
    // The dead owner acknowledged both; it restarted ws-done (the request is in the log) but did not clear it.
    await w.store.bursts.open('ws-lost', 'files:dead.1');
    await w.store.bursts.open('ws-done', 'files:dead.2');
    const done = w.supervisor.restart('ws-done', { source: 'file-write', reason: 'flushed', requester: 'files:dead.2' });
    await w.settle();
    await done;
    const next = w.bursts('files:next');
    expect(await next.recover(w.supervisor as unknown as BusSink)).toBe(1);
    await w.settle();
    await expect.poll(() => w.store.bursts.list()).toEqual([]);
    expect(await w.requests('ws-lost')).toEqual([expect.stringMatching(/^files:dead\.1#/)]);
    expect(await w.requests('ws-done')).toHaveLength(1);
    // Recovering again (another owner) finds nothing to do.
    expect(await w.bursts('files:third').recover(w.supervisor as unknown as BusSink)).toBe(0);
    expect(await w.requests('ws-lost')).toHaveLength(1);
  });
});
