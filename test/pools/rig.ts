/**
 * A pool rig: a durable supervisor on a fresh PGlite store, a FakeProvider and the PoolService, all on one
 * SimulatedClock. `advance(ms)` moves time and lets every chain it released run (store round trips too).
 */
import type { PolicyPatch } from '../../src/supervisor/types.ts';
import { SimulatedClock } from 'xstate';
import { FakeProvider, type FaultPlan } from '../../src/providers/fake.ts';
import { SYSTEM_OWNER, WorkspaceStore } from '../../src/store/index.ts';
import { ClaimService } from '../../src/supervisor/claims.ts';
import { openDurableSupervisor } from '../../src/supervisor/durable.ts';
import { PoolService, type PoolServiceOptions, type RenderSpec } from '../../src/supervisor/pools.ts';
import type { Supervisor } from '../../src/supervisor/supervisor.ts';
import type { SupervisorEvent, WorkspaceView } from '../../src/supervisor/types.ts';
import { flush, T0 } from '../helpers/harness.ts';
import { pgliteFixture, type StoreFixture } from '../store/fixtures.ts';

export interface PoolRig {
  clock: SimulatedClock;
  provider: FakeProvider;
  store: WorkspaceStore;
  sup: Supervisor;
  claims: ClaimService;
  pools: PoolService;
  events: SupervisorEvent[];
  errors: unknown[];
  advance(ms: number): Promise<void>;
  /** Advance in `step`s until `done()` holds (or `maxMs` passes); answers whether it held. */
  until(done: () => boolean | Promise<boolean>, maxMs?: number, step?: number): Promise<boolean>;
  /** Live prebuilds of `pool` by owner: unclaimed (system) views and claimed ones. */
  members(pool: string): Promise<{ unclaimed: WorkspaceView[]; claimed: WorkspaceView[] }>;
  close(): Promise<void>;
}

/** The rig's renderer: raw specs only (templates are the server's, tested through it). */
export const rawSpec: RenderSpec = (req) => {
  if (req.spec === undefined) throw new Error('the pool rig renders raw specs only: pass spec');
  return req.spec;
};

export async function poolRig(opts: { latencyMs?: number; fault?: FaultPlan; pools?: Partial<PoolServiceOptions>; fixture?: StoreFixture; policy?: PolicyPatch } = {}): Promise<PoolRig & { fixture: StoreFixture }> {
  const fixture = opts.fixture ?? (await pgliteFixture());
  const clock = new SimulatedClock();
  clock.set(T0);
  const provider = new FakeProvider({ clock, latencyMs: opts.latencyMs ?? 100, ...(opts.fault ? { fault: opts.fault } : {}) });
  const store = await WorkspaceStore.open({ engine: await fixture.engine() });
  const errors: unknown[] = [];
  const claims = new ClaimService({ store, onError: (e) => errors.push(e) });
  await claims.load();
  const { supervisor: sup } = await openDurableSupervisor({ store, provider, clock, onError: (e) => errors.push(e), beforeRecovery: (s) => claims.attach(s), ...(opts.policy ? { policy: opts.policy } : {}) });
  await claims.reconcile();
  const events: SupervisorEvent[] = [];
  sup.events.subscribe((e) => events.push(e));
  const pools = new PoolService({ store, claims, supervisor: sup, clock, onError: (e) => errors.push(e), ...opts.pools });
  await pools.start();
  const settle = async () => {
    for (let i = 0; i < 5; i++) {
      await flush();
      await store.commit({});
      await pools.idle();
    }
  };
  const advance = async (ms: number) => {
    await settle();
    clock.increment(ms);
    await settle();
  };
  return {
    fixture,
    clock,
    provider,
    store,
    sup,
    claims,
    pools,
    events,
    errors,
    advance,
    async until(done, maxMs = 600_000, step = 50) {
      for (let t = 0; t <= maxMs; t += step) {
        if (await done()) return true;
        await advance(step);
      }
      return false;
    },
    async members(pool) {
      const rows = await store.pools.members(pool);
      const known = await Promise.all(rows.map(async (m) => ((await sup.has(m.id)) ? { m, v: await sup.get(m.id) } : null)));
      const views = known.filter((k) => k !== null);
      return {
        unclaimed: views.filter(({ m, v }) => m.owner === SYSTEM_OWNER && !m.claimed && v.desired !== 'destroyed').map(({ v }) => v),
        claimed: views.filter(({ m }) => m.claimed).map(({ v }) => v),
      };
    },
    async close() {
      await pools.close();
      claims.close();
      await sup.shutdown({ deadlineMs: 0 });
      await store.close();
      if (!opts.fixture) await fixture.dispose();
    },
  };
}
