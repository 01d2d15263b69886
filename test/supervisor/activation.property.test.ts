/**
 * Actors that leave memory and come back, under random interleavings (fast-check): commands, provider
 * deaths, time, forced deactivations and the store's own latency, on one workspace whose state lives in a
 * store that answers a few event-loop turns late. After every step no two provider calls overlap; at the
 * end every request was answered, each answered restart was published once, a burst took at most two
 * cycles, every activation followed a deactivation (none twice for one absence), and the stored row is
 * what the actor last wrote.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Snapshot } from 'xstate';
import type { LifecycleState } from '../../machines/workspace.types.ts';
import type { ColdStore, PersistWrite, StoredWorkspace } from '../../src/supervisor/supervisor.ts';
import { actorCommands, injectedFailures, type ActorCmd } from '../helpers/commands.ts';
import { capture, flush, rig } from '../helpers/harness.ts';

const soak = process.env.WSUP_SOAK === '1';
const RUNS = soak ? 5_000 : 300;
const id = 'ws-v';

/** A store in memory whose reads and writes each take a few event-loop turns, in order. */
class SlowStore {
  readonly rows = new Map<string, { state: LifecycleState; snapshot: string; spec: Record<string, unknown>; nextDueAt: number | null }>();
  reads = 0;
  /** Reads of a row while a write of it was still on its way: what a deactivation must never allow. */
  readsBehind = 0;
  private readonly unlanded = new Map<string, number>();
  private writes = 0;
  /** Writes commit in the order they were made, each a few turns after the one before it. */
  private tail: Promise<void> = Promise.resolve();
  private readonly turns = async (n: number) => {
    for (let i = 0; i < n; i++) await new Promise<void>((r) => setImmediate(r));
  };

  persist = (w: PersistWrite): Promise<void> => {
    const row = { state: w.state, snapshot: JSON.stringify(w.snapshot), spec: w.spec, nextDueAt: w.nextDueAt };
    const n = 1 + (this.writes++ % 4);
    this.unlanded.set(w.id, (this.unlanded.get(w.id) ?? 0) + 1);
    this.tail = this.tail.then(async () => {
      await this.turns(n);
      this.rows.set(w.id, row);
      this.unlanded.set(w.id, this.unlanded.get(w.id)! - 1);
    });
    return this.tail;
  };

  private stored(key: string): StoredWorkspace | null {
    const row = this.rows.get(key);
    if (!row) return null;
    return { id: key, state: row.state, destroyed: row.state === 'destroyed', snapshot: JSON.parse(row.snapshot) as Snapshot<unknown>, spec: row.spec, nextDueAt: row.nextDueAt };
  }

  /** Resolves once every write made so far has landed. */
  async drained(): Promise<void> {
    for (let tail = this.tail; ; tail = this.tail) {
      await tail;
      if (tail === this.tail) return;
    }
  }

  readonly cold: ColdStore = {
    load: async (key) => {
      this.reads++;
      if ((this.unlanded.get(key) ?? 0) > 0) this.readsBehind++;
      await this.turns(1 + (this.reads % 3));
      return this.stored(key);
    },
    page: async (filter) => {
      await this.turns(1);
      return [...this.rows.keys()]
        .sort()
        .filter((k) => (filter.cursor === undefined || k > filter.cursor) && this.rows.get(k)!.state !== 'destroyed' && (filter.state === undefined || this.rows.get(k)!.state === filter.state))
        .slice(0, filter.limit)
        .map((k) => this.stored(k)!);
    },
    due: async (window, limit) => {
      await this.turns(1);
      return [...this.rows]
        .flatMap(([k, r]) => (r.state !== 'destroyed' && r.nextDueAt !== null && r.nextDueAt > window.after && r.nextDueAt <= window.before ? [{ id: k, at: r.nextDueAt }] : []))
        .sort((a, b) => a.at - b.at || (a.id < b.id ? -1 : 1))
        .filter((d) => !window.from || d.at > window.from.at || (d.at === window.from.at && d.id > window.from.id))
        .slice(0, limit);
    },
  };
}

type Cmd = ActorCmd | { kind: 'deactivate' } | { kind: 'together'; n: number };

const cmd: fc.Arbitrary<Cmd> = fc.oneof<Array<fc.WeightedArbitrary<Cmd>>>(
  ...actorCommands(5),
  { weight: 4, arbitrary: fc.constant({ kind: 'deactivate' as const }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('together' as const), n: fc.integer({ min: 2, max: 6 }) }) },
);

type Restart = { outcome: string; cycle: number | null; requester: string };

describe('workspace actors leaving and re-entering memory (fast-check)', () => {
  it(`keep single flight and lose no request across deactivate/activate (${RUNS} runs)`, async () => {
    const totals = { activations: 0, deactivations: 0 };
    await fc.assert(
      fc.asyncProperty(fc.array(fc.tuple(cmd, fc.boolean()), { minLength: 1, maxLength: 25 }), async (steps) => {
        const { failures, fault } = injectedFailures();
        const store = new SlowStore();
        const r = rig({
          latencyMs: 10,
          fault,
          sup: {
            persist: store.persist,
            cold: store.cold,
            deactivateAfterMs: 1,
            wakeAheadMs: 100,
            config: { selfFireWindowMs: 500, backoffBaseMs: 100, backoffCapMs: 400, maxRestarts: 3, periodMs: 1_000 },
          },
        });
        const bursts: Array<Promise<Awaited<ReturnType<typeof capture<Restart>>>>[]> = [];
        const others: Promise<unknown>[] = [];
        let deactivations = 0;
        await r.sup.create(id);

        // A step either lets everything it set off run (writes, reads) or goes on at once: a deactivation
        // may then come before the writes of the command just sent.
        for (const [c, settleStep] of steps) {
          switch (c.kind) {
            case 'burst':
              bursts.push(c.sources.map((source) => capture(r.sup.restart(id, { source, wait: true }))));
              break;
            case 'ensure':
              others.push(capture(r.sup.ensure(id)));
              break;
            case 'stop':
              others.push(capture(r.sup.stop(id)));
              break;
            case 'died':
              r.sup.liveness(id, false, 'random death');
              break;
            case 'deactivate':
              r.clock.increment(1); // quiet for the deactivation time
              deactivations += r.sup.deactivateIdle();
              break;
            case 'together':
              // Several callers at once, as many as arrive while it is read from the store.
              for (let i = 0; i < c.n; i++) others.push(i % 2 === 0 ? capture(r.sup.ensure(id)) : capture(r.sup.get(id)));
              break;
            case 'advance':
              await r.advance(c.ms);
              break;
            case 'failNext':
              failures.push(c.op);
              break;
          }
          if (settleStep) await flush();
          expect(r.provider.overlaps).toEqual([]);
          const res = r.sup.residency();
          expect(res.activations, 'an activation without a deactivation before it').toBeLessThanOrEqual(res.deactivations);
          expect(res.active).toBeLessThanOrEqual(1);
        }

        failures.length = 0;
        await r.settle(120_000);
        await r.sup.settled();
        await store.drained();
        await flush();
        expect(r.provider.overlaps).toEqual([]);
        expect(r.provider.inFlightIds()).toEqual([]);
        expect(store.readsBehind, 'an activation read the row while a write of it was on its way').toBe(0);
        expect(r.sup.residency().deactivations).toBeGreaterThanOrEqual(deactivations);
        totals.deactivations += r.sup.residency().deactivations;
        totals.activations += r.sup.residency().activations;

        // Every request answered: none of the captured promises may still be pending.
        const pendingMarker = Symbol('pending');
        for (const p of [...bursts.flat(), ...others]) expect(await Promise.race([p, Promise.resolve(pendingMarker)])).not.toBe(pendingMarker);

        // A burst is satisfied by at most 2 cycles; every answered restart was published exactly once.
        const published = new Map<string, string[]>();
        for (const e of r.events) if (e.type === 'request') published.set(e.requester, [...(published.get(e.requester) ?? []), e.outcome]);
        for (const burst of bursts) {
          const results = await Promise.all(burst);
          expect(new Set(results.flatMap((x) => (x.ok ? [x.value.cycle] : []))).size).toBeLessThanOrEqual(2);
          for (const x of results) if (x.ok) expect(published.get(x.value.requester), `request events of ${x.value.requester}`).toEqual([x.value.outcome]);
        }

        // The row is what the actor last wrote: in memory or not, the two agree.
        const view = await r.sup.get(id);
        const row = store.rows.get(id)!;
        expect(row.state).toBe(view.state);
        expect(['idle', 'running', 'failed']).toContain(view.state);
        expect(view.pending).toBe(0);
        expect(r.errors).toEqual([]);
      }),
      { numRuns: RUNS },
    );
    // The runs did move the actor out and back in (about half the runs deactivate it; a floor far below that).
    expect(totals.deactivations).toBeGreaterThan(RUNS / 10);
    expect(totals.activations).toBeGreaterThan(RUNS / 20);
  }, soak ? 3_600_000 : 300_000);

  it('activates a workspace once however many commands arrive while it is read from the store', async () => {
    const store = new SlowStore();
    const r = rig({ latencyMs: 10, sup: { persist: store.persist, cold: store.cold, deactivateAfterMs: 1_000 } });
    const first = r.sup.ensure(id);
    await r.run(100);
    await first;
    expect(r.sup.peek(id)?.state).toBe('running');
    await r.run(2_000, 500); // quiet: the sweep takes it out of memory
    expect(r.sup.peek(id)).toBeUndefined();
    const reads = store.reads;
    const answers = Promise.all(Array.from({ length: 50 }, () => r.sup.ensure(id)));
    await flush();
    await r.sup.settled();
    const ensured = await answers;
    expect(ensured.every((e) => e.state === 'running' && !e.started)).toBe(true);
    expect(store.reads - reads).toBe(1);
    expect(r.sup.residency()).toMatchObject({ active: 1, activations: 1, deactivations: 1 });
    expect(r.provider.calls.filter((c) => c.op === 'start')).toHaveLength(1); // still the one start from before
  });

  it('keeps an actor in memory while a command waits on it, a call is in flight or a deadline is near', async () => {
    const store = new SlowStore();
    const r = rig({ latencyMs: 1_000, sup: { persist: store.persist, cold: store.cold, deactivateAfterMs: 1, wakeAheadMs: 60_000, policy: { idleTimeoutMs: 30_000 } } });
    await r.sup.create(id);
    const starting = r.sup.ensure(id);
    await r.advance(10);
    expect(r.sup.peek(id)?.state).toBe('starting');
    expect(r.sup.deactivateIdle()).toBe(0); // starting, and its ensure waits
    await r.run(2_000, 100);
    await starting;
    await r.advance(10);
    expect(r.sup.deactivateIdle()).toBe(0); // running with its idle stop 30 s away: inside the wake-ahead window
    expect(r.sup.peek(id)?.state).toBe('running');
  });

  it('wakes a deactivated running workspace for its idle stop, from the store index alone', async () => {
    const store = new SlowStore();
    const r = rig({ latencyMs: 10, sup: { persist: store.persist, cold: store.cold, deactivateAfterMs: 1_000, wakeAheadMs: 10_000, policy: { idleTimeoutMs: 60_000 } } });
    const first = r.sup.ensure(id);
    await r.run(100);
    await first;
    await r.run(2_000, 500);
    expect(r.sup.peek(id)).toBeUndefined();
    expect(store.rows.get(id)).toMatchObject({ state: 'running', nextDueAt: expect.any(Number) as unknown });
    const due = store.rows.get(id)!.nextDueAt!;
    for (let t = r.clock.now(); t < due + 1_000; t += 1_000) {
      await r.advance(1_000);
      await r.sup.settled();
    }
    await r.advance(100);
    expect(r.events.filter((e) => e.type === 'policy' && e.id === id).map((e) => e.type === 'policy' && [e.action, e.source, e.at])).toEqual([['stop', 'idle', due]]);
    expect(r.sup.peek(id)?.state).toBe('idle');
  });
});
