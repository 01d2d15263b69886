/**
 * Policy deadlines across a crash, on a real PGlite store and simulated clocks: a supervisor is abandoned
 * without shutdown (its clock never moves again, so its actors are as dead as a killed process's), and a
 * new one restores the same store. Each idle, max-lifetime and schedule deadline fires on time when it is
 * still ahead, or once, at once, when it passed while nobody was running.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { SimulatedClock } from 'xstate';
import { FakeProvider } from '../../src/providers/fake.ts';
import { WorkspaceStore } from '../../src/store/index.ts';
import { eventHistory, openDurableSupervisor } from '../../src/supervisor/durable.ts';
import type { PolicyPatch, SupervisorEvent } from '../../src/supervisor/types.ts';
import { pgliteFixture, type StoreFixture } from '../store/fixtures.ts';
import { flush, T0 } from '../helpers/harness.ts';

const MIN = 60_000;
const fixtures: StoreFixture[] = [];
afterEach(async () => {
  await Promise.all(fixtures.splice(0).map((f) => f.dispose()));
});

async function freshStore(): Promise<WorkspaceStore> {
  const fx = await pgliteFixture();
  fixtures.push(fx);
  return WorkspaceStore.open({ engine: await fx.engine() });
}

/** One supervisor life on its own clock; `running` are the resources the provider still has at its start. */
async function life(store: WorkspaceStore, at: number, running: string[] = [], policy?: PolicyPatch) {
  const clock = new SimulatedClock();
  clock.set(at);
  const provider = new FakeProvider({ clock, latencyMs: 0 });
  for (const id of running) await provider.start({ id }, new AbortController().signal);
  provider.latencyMs = 100;
  const events: SupervisorEvent[] = [];
  const { supervisor, recovery } = await openDurableSupervisor({
    store,
    provider,
    clock,
    ...(policy ? { policy } : {}),
    beforeRecovery: (s) => s.events.subscribe((e) => events.push(e)),
  });
  const advance = async (ms: number) => {
    await flush();
    clock.increment(ms);
    await supervisor.settled(); // workspaces the scheduler found due are read from the store
    await flush();
  };
  /** Move to `t` exactly (in steps, so provider calls released on the way complete). */
  const until = async (t: number) => {
    while (clock.now() < t) await advance(Math.min(MIN, t - clock.now()));
    await flush();
  };
  const policyOf = (id: string) => events.flatMap((e) => ((e.type === 'policy' || e.type === 'policy.warning') && e.id === id ? [e] : []));
  return { store, clock, provider, sup: supervisor, recovery, events, advance, until, policyOf };
}

/** `action:source` of policy events, a warning as `warning`. */
const actions = (events: SupervisorEvent[]) => events.map((e) => (e.type === 'policy' ? `${e.action}:${e.source}` : e.type === 'policy.warning' ? `warning:${e.source}` : e.type));

// T0 is 2023-11-14T22:13:20Z.
const AUTOSTOP_AT = Date.UTC(2023, 10, 14, 22, 30); // "30 22 * * *" UTC
const AUTOSTART_AT = Date.UTC(2023, 10, 14, 23, 0); // "0 * * * *" UTC

/** The first life: four workspaces, each with one rule armed, abandoned one minute in. */
async function armedThenCrashed() {
  const store = await freshStore();
  const a = await life(store, T0);
  await a.sup.create('ws-idle', { wsupPolicy: { idleTimeoutMs: 10 * MIN } });
  await a.sup.create('ws-life', { wsupPolicy: { maxLifetimeMs: 20 * MIN, maxLifetimeWarnMs: 5 * MIN } });
  await a.sup.create('ws-stop', { wsupPolicy: { autostop: { cron: '30 22 * * *', tz: 'UTC' } } });
  await a.sup.create('ws-start', { wsupPolicy: { autostart: { cron: '0 * * * *', tz: 'UTC' } } });
  await Promise.all([a.sup.ensure('ws-idle'), a.sup.ensure('ws-life'), a.sup.ensure('ws-stop'), a.advance(100)]);
  const next: Record<string, number | undefined> = Object.fromEntries(await Promise.all(['ws-idle', 'ws-life', 'ws-stop', 'ws-start'].map(async (id) => [id, (await a.sup.get(id)).next?.at] as const)));
  expect(next).toEqual({ 'ws-idle': T0 + 100 + 10 * MIN, 'ws-life': T0 + 100 + 20 * MIN, 'ws-stop': AUTOSTOP_AT, 'ws-start': AUTOSTART_AT });
  await a.advance(MIN);
  await store.commit({}); // every acknowledged write is in; then the "kill"
  return { store, next, running: ['ws-idle', 'ws-life', 'ws-stop'] };
}

describe('policy deadlines after a crash', () => {
  it('fire on time when they are still ahead at recovery', async () => {
    const { store, next, running } = await armedThenCrashed();
    const b = await life(store, T0 + 2 * MIN, running);
    expect(b.recovery.adopted.sort()).toEqual(['ws-idle', 'ws-life', 'ws-stop']);
    for (const id of Object.keys(next)) expect((await b.sup.get(id)).next?.at).toBe(next[id]);

    const warnAt = next['ws-life']! - 5 * MIN;
    for (const [id, due] of [['ws-idle', next['ws-idle']!], ['ws-life', warnAt], ['ws-stop', AUTOSTOP_AT], ['ws-life', next['ws-life']!], ['ws-start', AUTOSTART_AT]] as const) {
      const seen = b.policyOf(id).length;
      await b.until(due - 1_000);
      expect(b.policyOf(id), `${id} before ${new Date(due).toISOString()}`).toHaveLength(seen);
      await b.until(due + 1_000);
      expect(b.policyOf(id).slice(seen).map((e) => e.at), `${id} at ${new Date(due).toISOString()}`).toEqual([due]);
    }
    await b.advance(1_000);
    expect(actions(b.policyOf('ws-idle'))).toEqual(['stop:idle']);
    expect(actions(b.policyOf('ws-life'))).toEqual(['warning:max-lifetime', 'stop:max-lifetime']);
    expect(b.policyOf('ws-life')[0]).toMatchObject({ type: 'policy.warning', stopAt: next['ws-life'] });
    expect(actions(b.policyOf('ws-stop'))).toEqual(['stop:schedule']);
    expect(actions(b.policyOf('ws-start'))).toEqual(['start:schedule']);
    expect(Object.fromEntries(await Promise.all(['ws-idle', 'ws-life', 'ws-stop', 'ws-start'].map(async (id) => [id, (await b.sup.get(id)).state] as const)))).toEqual({
      'ws-idle': 'idle',
      'ws-life': 'idle',
      'ws-stop': 'idle',
      'ws-start': 'running',
    });
    // The stored history has them too, as published.
    await store.commit({});
    const history = await eventHistory(store, 'ws-life', 100);
    expect(history.filter((e) => e.type === 'policy' || e.type === 'policy.warning')).toEqual(b.policyOf('ws-life'));
  });

  it('fire once, at once, when they passed while nobody was running', async () => {
    const { store, running } = await armedThenCrashed();
    const back = AUTOSTART_AT + 3 * MIN; // every deadline has passed; the missed start is still inside its hour
    const b = await life(store, back, running);
    await b.advance(100);
    await b.advance(100);
    for (const id of ['ws-idle', 'ws-life', 'ws-stop']) {
      expect(b.policyOf(id).flatMap((e) => (e.type === 'policy' ? [[e.action, e.at]] : [])), id).toEqual([['stop', back]]);
      expect((await b.sup.get(id)).state, id).toBe('idle');
    }
    expect(b.policyOf('ws-start').map((e) => [actions([e])[0], e.at])).toEqual([['start:schedule', back]]);
    expect((await b.sup.get('ws-start')).state).toBe('running');
    await b.until(back + 3 * 60 * MIN);
    // Nothing fires twice: the stopped ones stay stopped, the started one runs on (no rule stops it).
    for (const id of ['ws-idle', 'ws-life', 'ws-stop']) expect(b.policyOf(id).filter((e) => e.type === 'policy' && e.action === 'stop'), id).toHaveLength(1);
    expect(b.policyOf('ws-start').filter((e) => e.type === 'policy' && e.action === 'start')).toHaveLength(1);
    expect(b.provider.calls.filter((c) => c.id === 'ws-start' && c.op === 'start')).toHaveLength(1);
  });

  it('a changed server default reaches restored workspaces before their deadlines are re-armed', async () => {
    const store = await freshStore();
    const a = await life(store, T0, [], { idleTimeoutMs: 60 * MIN });
    await Promise.all([a.sup.ensure('ws-a'), a.advance(100)]);
    await a.sup.create('ws-own', { wsupPolicy: { idleTimeoutMs: 45 * MIN } });
    await Promise.all([a.sup.ensure('ws-own'), a.advance(100)]);
    await store.commit({});
    const b = await life(store, T0 + 20 * MIN, ['ws-a', 'ws-own'], { idleTimeoutMs: 10 * MIN });
    expect((await b.sup.get('ws-a')).policy.idleTimeoutMs).toBe(10 * MIN);
    expect((await b.sup.get('ws-own')).policy.idleTimeoutMs).toBe(45 * MIN); // its own layer wins over any default
    await b.advance(100);
    // 10 min after its start has passed: stopped once, at once.
    expect(b.policyOf('ws-a').map((e) => [actions([e])[0], e.at])).toEqual([['stop:idle', T0 + 20 * MIN]]);
    expect(b.policyOf('ws-own')).toEqual([]);
  });
});
