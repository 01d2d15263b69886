/**
 * A claim that committed just before its supervisor died, on a prebuild whose resource survived (so the next
 * start leaves it out of memory): the next supervisor's claim service brings it in, starts the claim build
 * once, and completes the claim.
 */
import { afterEach, expect, it, vi } from 'vitest';
import { FakeProvider } from '../../src/providers/fake.ts';
import { WorkspaceStore } from '../../src/store/index.ts';
import { ClaimService } from '../../src/supervisor/claims.ts';
import { openDurableSupervisor } from '../../src/supervisor/durable.ts';
import { pgliteFixture, type StoreFixture } from '../store/fixtures.ts';

const fixtures: StoreFixture[] = [];
afterEach(async () => {
  await Promise.all(fixtures.splice(0).map((f) => f.dispose()));
});

it('resumes the claim build of a claim whose restart a crash lost, for a prebuild not in memory', async () => {
  const fx = await pgliteFixture();
  fixtures.push(fx);
  const store = await WorkspaceStore.open({ engine: await fx.engine() });
  const provider = new FakeProvider({ latencyMs: 0 }); // one provider for both lives: the prebuild keeps running
  const life = async (afterCommit?: () => void) => {
    const claims = new ClaimService({ store, ...(afterCommit ? { afterCommit } : {}) });
    await claims.load();
    const opened = await openDurableSupervisor({ store, provider, prepareSpec: claims.prepareSpec, beforeRecovery: (s) => claims.attach(s) });
    return { claims, ...opened };
  };

  const a = await life(() => {
    throw new Error('died right after the claim committed');
  });
  await a.claims.reconcile();
  await a.claims.createPrebuild('pb-1', {}, 'web');
  await a.supervisor.ensure('pb-1');
  await expect(a.claims.claim({ id: 'pb-1', userId: 'alice' })).rejects.toThrow(/died right after/);
  const starts = provider.starts.get('pb-1');

  const b = await life();
  expect(b.recovery.adopted).toEqual(['pb-1']);
  expect(b.supervisor.peek('pb-1')).toBeUndefined(); // running, nothing due: left in the store
  await b.claims.reconcile();
  await vi.waitFor(async () => expect(await store.claims.unfinished()).toEqual([]), { timeout: 10_000, interval: 20 });
  expect(provider.starts.get('pb-1')).toBe(starts! + 1); // one claim build
  expect((await store.claims.get('pb-1'))?.ownerId).toBe('alice');
  expect((await b.supervisor.get('pb-1')).state).toBe('running');
  await b.supervisor.shutdown();
  await a.supervisor.shutdown({ deadlineMs: 0 });
});
