/**
 * The supervisor's one deadline queue for every actor's policy (docs/policies.md, "Deadlines and the one timer"):
 * one clock timeout for all workspaces, restore without REARM unless a deferral or a backoff needs xstate timers
 * again, and an older snapshot (policy fields at the top level of context) folded in and re-armed.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { Actor, type Snapshot } from 'xstate';
import { FakeProvider } from '../../src/providers/fake.ts';
import { Supervisor } from '../../src/supervisor/supervisor.ts';
import type { SupervisorEvent } from '../../src/supervisor/types.ts';
import { flush, T0 } from '../helpers/harness.ts';
import { CountingClock } from '../machine/policy-rig.ts';

const MIN = 60_000;

function life(at: number) {
  const clock = new CountingClock();
  clock.set(at);
  const provider = new FakeProvider({ clock, latencyMs: 100 });
  const sup = new Supervisor({ provider, clock, config: { selfFireWindowMs: 10 * MIN } });
  const events: SupervisorEvent[] = [];
  sup.events.subscribe((e) => events.push(e));
  const run = async (ms: number, step = 1_000) => {
    for (let t = 0; t < ms; t += step) {
      await flush();
      clock.increment(Math.min(step, ms - t));
      await flush();
    }
  };
  const stops = (id: string) => events.filter((e) => e.type === 'policy' && e.id === id && e.action === 'stop');
  return { clock, provider, sup, events, run, stops };
}

/** The snapshot as the store hands it back: a JSON round trip. */
const stored = (sup: Supervisor, id: string): Snapshot<unknown> & { context: Record<string, unknown> } =>
  JSON.parse(JSON.stringify(sup.persistedSnapshot(id))) as Snapshot<unknown> & { context: Record<string, unknown> };

async function runningWithIdle(l: ReturnType<typeof life>, id: string, idleMs: number): Promise<void> {
  const ensured = l.sup.ensure(id);
  await l.run(1_000, 100);
  await ensured;
  await l.sup.setPolicy(id, { idleTimeoutMs: idleMs });
}

const rearms = () => {
  const send = vi.spyOn(Actor.prototype, 'send');
  return () => send.mock.calls.filter(([e]) => e.type === 'REARM').length;
};

afterEach(() => {
  vi.restoreAllMocks();
});

describe('the deadline queue', () => {
  it('keeps one clock timeout for every workspace, fires each on time, and shutdown clears it', async () => {
    const l = life(T0);
    for (let i = 0; i < 5; i++) await runningWithIdle(l, `ws-${i}`, (10 + i) * MIN);
    const dues = await Promise.all([0, 1, 2, 3, 4].map(async (i) => (await l.sup.get(`ws-${i}`)).next!.at));
    expect(l.provider.inFlightIds()).toEqual([]);
    expect(l.clock.live.size).toBe(1);
    await l.run(dues[0]! - l.clock.now());
    expect(l.stops('ws-0')).toHaveLength(1);
    expect(l.stops('ws-1')).toHaveLength(0);
    await l.run(dues[4]! - l.clock.now() + 1_000);
    for (let i = 0; i < 5; i++) expect(l.stops(`ws-${i}`).map((e) => e.at)).toEqual([dues[i]]);
    expect((await l.sup.list()).map((w) => w.state)).toEqual(['idle', 'idle', 'idle', 'idle', 'idle']);
    await l.sup.setPolicy('ws-0', { dormantAfterMs: 60 * MIN }); // idle workspaces queue their dormancy
    expect(l.clock.live.size).toBe(1);
    await l.sup.shutdown({ deadlineMs: 0 });
    expect(l.clock.live.size).toBe(0);
  });

  it('restores a running workspace without REARM; its idle deadline still fires on time', async () => {
    const a = life(T0);
    await runningWithIdle(a, 'ws-1', 30 * MIN);
    const due = (await a.sup.get('ws-1')).next!.at;
    const snap = stored(a.sup, 'ws-1');
    const b = life(T0 + 10 * MIN);
    const count = rearms();
    b.sup.restore('ws-1', snap);
    expect(count()).toBe(0);
    expect(b.clock.live.size).toBe(1);
    await b.run(due - b.clock.now() - 1_000);
    expect(b.stops('ws-1')).toEqual([]);
    await b.run(2_000);
    expect(b.stops('ws-1')).toMatchObject([{ source: 'idle', at: due }]);
  });

  it('a deadline that passed while down fires once, at once, at the restore time', async () => {
    const a = life(T0);
    await runningWithIdle(a, 'ws-1', 30 * MIN);
    const snap = stored(a.sup, 'ws-1');
    const back = T0 + 5 * 60 * MIN;
    const b = life(back);
    b.sup.restore('ws-1', snap);
    await b.run(10_000);
    expect(b.stops('ws-1')).toMatchObject([{ source: 'idle', at: back }]);
    await b.run(60 * MIN, MIN);
    expect(b.stops('ws-1')).toHaveLength(1);
  });

  it('sends REARM to a restored workspace with a deferral, so its xstate timer is raised again', async () => {
    const a = life(T0);
    await runningWithIdle(a, 'ws-1', 30 * MIN);
    await a.sup.restart('ws-1', { source: 'programmatic', reason: 'file changed' });
    await a.run(1_000, 100);
    expect((await a.sup.get('ws-1')).deferredUntil).not.toBeNull();
    const until = (await a.sup.get('ws-1')).deferredUntil!;
    const snap = stored(a.sup, 'ws-1');
    const b = life(a.clock.now() + MIN);
    const count = rearms();
    b.sup.restore('ws-1', snap);
    expect(count()).toBe(1);
    await b.run(until - b.clock.now() + 2_000, 100);
    expect(b.events.filter((e) => e.type === 'cycle.started')).toHaveLength(1);
  });

  it('restores a snapshot with the policy fields at the top level of context, and re-arms it', async () => {
    const a = life(T0);
    await runningWithIdle(a, 'ws-1', 30 * MIN);
    await a.sup.activity('ws-1', 'agent heartbeat');
    const due = (await a.sup.get('ws-1')).next!.at;
    const lastActivityAt = (await a.sup.get('ws-1')).lastActivityAt;
    const snap = stored(a.sup, 'ws-1');
    // The shape this version stored before `timing`: the same fields flat in context, no dueAt.
    const { dueAt: _dueAt, ...flat } = snap.context.timing as Record<string, unknown>;
    delete snap.context.timing;
    Object.assign(snap.context, flat);
    const b = life(T0 + 10 * MIN);
    const count = rearms();
    const view = b.sup.restore('ws-1', snap);
    expect(count()).toBe(1);
    expect(view).toMatchObject({ state: 'running', lastActivityAt, next: { action: 'stop', source: 'idle', at: due } });
    const ctx = (b.sup.persistedSnapshot('ws-1') as unknown as { context: Record<string, unknown> }).context;
    expect(Object.keys(ctx)).not.toContain('lastActivity');
    expect(Object.keys(ctx).length).toBeLessThanOrEqual(17);
    await b.run(due - b.clock.now() + 1_000);
    expect(b.stops('ws-1')).toMatchObject([{ source: 'idle', at: due, reason: expect.stringContaining('agent heartbeat') as unknown }]);
  });
});
