import { describe, expect, it } from 'vitest';
import { SimulatedClock } from 'xstate';
import { FakeProvider } from '../../src/providers/fake.ts';
import { Supervisor, type PersistWrite } from '../../src/supervisor/supervisor.ts';
import { capture, flush, rig, T0 } from '../helpers/harness.ts';

describe('supervisor shutdown', () => {
  it('refuses new commands, lets calls in flight finish, and publishes its lifecycle', async () => {
    const r = rig({ latencyMs: 100 });
    const seen: string[] = [];
    r.sup.lifecycleChanges.subscribe((l) => seen.push(l));
    const ensured = capture(r.sup.ensure('ws-a'));
    await flush();
    const closing = r.sup.shutdown({ deadlineMs: 1_000 });
    await expect(r.sup.restart('ws-a')).rejects.toMatchObject({ code: 'WSUP_SHUTTING_DOWN' });
    await r.advance(100);
    await closing;
    expect(await ensured).toMatchObject({ ok: true, value: { started: true } });
    expect(r.provider.calls.map((c) => c.outcome)).toEqual(['ok']);
    expect(seen).toEqual(['draining', 'stopped']);
    expect(r.sup.shutdown()).toBe(closing); // idempotent
  });

  it('aborts calls still running at the deadline', async () => {
    const r = rig({ fault: () => 'hang' });
    const ensured = capture(r.sup.ensure('ws-a'));
    await flush();
    const closing = r.sup.shutdown({ deadlineMs: 500 });
    await r.advance(500);
    await closing;
    expect(r.provider.calls[0]?.outcome).toBe('aborted');
    expect(await ensured).toMatchObject({ ok: false, error: { code: 'WSUP_SHUTTING_DOWN' } });
  });

  it('leaves no timer armed once an idle supervisor has shut down (a process must be able to exit)', async () => {
    const inner = new SimulatedClock();
    const armed = new Set<unknown>();
    const clock = {
      now: () => inner.now(),
      setTimeout: (fn: (...args: unknown[]) => void, ms: number) => {
        const id: unknown = inner.setTimeout(() => (armed.delete(id), fn()), ms);
        armed.add(id);
        return id;
      },
      clearTimeout: (id: unknown) => (armed.delete(id), inner.clearTimeout(id as number)),
    };
    const sup = new Supervisor({ provider: new FakeProvider({ clock, latencyMs: 0 }), clock });
    await sup.ensure('ws-a');
    await sup.shutdown({ deadlineMs: 30_000 });
    // Before the fix the 30 s drain deadline stayed armed although nothing was busy: `wsup serve` lingered.
    expect(armed.size).toBe(0);
  });
});

describe('restoring a workspace from a persisted snapshot', () => {
  async function restoredFrom(prepare: (r: ReturnType<typeof rig>) => Promise<void>) {
    const r = rig({ latencyMs: 100 });
    await prepare(r);
    const snapshot = JSON.parse(JSON.stringify(r.sup.persistedSnapshot('ws-a'))) as ReturnType<Supervisor['persistedSnapshot']>;
    await r.sup.shutdown({ deadlineMs: 0 });
    const clock = new SimulatedClock();
    clock.set(r.clock.now());
    const provider = new FakeProvider({ clock, latencyMs: 100 });
    const sup = new Supervisor({ provider, clock });
    sup.restore('ws-a', snapshot);
    const advance = async (ms: number) => {
      await flush();
      clock.increment(ms);
      await flush();
    };
    return { sup, provider, clock, advance };
  }

  it('re-arms a deferred restart deadline that XState does not restore by itself', async () => {
    const { sup, provider, advance } = await restoredFrom(async (r) => {
      await Promise.all([r.sup.ensure('ws-a'), r.advance(100)]);
      expect((await r.sup.restart('ws-a', { source: 'file-write' })).outcome).toBe('deferred');
    });
    expect(await sup.get('ws-a')).toMatchObject({ state: 'running', deferredUntil: T0 + 60_000 });
    await advance(60_000 - 100);
    expect(provider.calls.map((c) => c.op)).toEqual(['stop']);
  });

  it('runs an interrupted provider call again (calls are idempotent)', async () => {
    const { sup, provider, advance } = await restoredFrom(async (r) => {
      void r.sup.ensure('ws-a').catch(() => undefined);
      await flush();
      expect((await r.sup.get('ws-a')).state).toBe('starting');
    });
    expect((await sup.get('ws-a')).state).toBe('starting');
    await advance(100);
    expect(provider.calls.map((c) => `${c.op}:${c.outcome}`)).toEqual(['start:ok']);
    expect((await sup.get('ws-a')).state).toBe('running');
  });

  it('re-arms a crash-loop backoff', async () => {
    let failing = true;
    const { sup, provider, clock, advance } = await restoredFrom(async (r) => {
      r.provider.fault = (c) => (failing && c.op === 'start' ? new Error('boom') : undefined);
      await r.sup.restart('ws-a', { source: 'manual' });
      await r.run(2_000, 50);
      expect((await r.sup.get('ws-a')).state).toBe('failed');
    });
    failing = false;
    const until = (await sup.get('ws-a')).backoffUntil!;
    expect(until).toBeGreaterThan(0);
    await advance(until - 1 - clock.now());
    expect(provider.calls).toEqual([]); // still backing off
    await advance(1);
    await advance(100); // retry cycle: stop half
    await advance(100); // start
    expect(provider.calls.map((c) => c.op)).toEqual(['stop', 'start']);
    expect((await sup.get('ws-a')).state).toBe('running');
  });
});

describe('write-ahead: a provider call waits for the transition that made it', () => {
  it('does not start or stop the provider before the store has committed starting or stopping', async () => {
    const writes: Array<{ state: string; commit: () => void }> = [];
    const r = rig({
      latencyMs: 0,
      sup: { persist: (w: PersistWrite) => new Promise<void>((resolve) => writes.push({ state: w.state, commit: resolve })) },
    });
    const commitAll = () => {
      for (const w of writes.splice(0)) w.commit();
    };
    const ensured = capture(r.sup.ensure('ws-a'));
    await flush();
    expect(writes.map((w) => w.state)).toContain('starting');
    expect(r.provider.calls).toEqual([]); // a kill now leaves nothing the store does not know was asked for
    commitAll();
    await flush();
    expect(r.provider.calls.map((c) => c.op)).toEqual(['start']);
    for (let i = 0; i < 5 && writes.length > 0; i++) {
      commitAll();
      await flush();
    }
    expect(await ensured).toMatchObject({ ok: true, value: { started: true } });

    const stopped = capture(r.sup.stop('ws-a'));
    await flush();
    expect(writes.map((w) => w.state)).toContain('stopping');
    expect(r.provider.calls.map((c) => c.op)).toEqual(['start']);
    commitAll();
    await flush();
    expect(r.provider.calls.map((c) => c.op)).toEqual(['start', 'stop']);
    for (let i = 0; i < 5 && writes.length > 0; i++) {
      commitAll();
      await flush();
    }
    expect(await stopped).toMatchObject({ ok: true, value: { state: 'idle' } });
  });
});
