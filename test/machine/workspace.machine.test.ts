import { describe, expect, it } from 'vitest';
import { initialTransition, transition } from 'xstate';
import { workspaceMachine } from '../../machines/workspace.machine.ts';
import { capture, flush, rig, startCalls, T0 } from '../helpers/harness.ts';

const id = 'ws-1';

async function running(r = rig()) {
  const ensured = r.sup.ensure(id);
  await r.advance(100);
  await ensured;
  expect((await r.sup.get(id)).state).toBe('running');
  return r;
}

describe('workspace machine, pure transitions (no effects run)', () => {
  it('answers a restart of an idle workspace with `started` and enters starting', () => {
    const [s0] = initialTransition(workspaceMachine, { id, now: T0 });
    const [s1, actions] = transition(workspaceMachine, s0, { type: 'RESTART', requester: 'a', source: 'manual', reason: 'r', at: T0 });
    expect(s1.value).toBe('starting');
    expect(s1.context.cycle?.n).toBe(1);
    const emitted = actions.map((a) => a as unknown as { type: string; params?: { event?: { type: string; outcome?: string } } });
    const answered = emitted.find((a) => a.type === 'xstate.emit' && a.params?.event?.type === 'answered');
    expect(answered?.params?.event?.outcome).toBe('started');
  });

  it('queues a manual restart that arrives after the provider start began', () => {
    const [s0] = initialTransition(workspaceMachine, { id, now: T0 });
    const [s1] = transition(workspaceMachine, s0, { type: 'RESTART', requester: 'a', source: 'manual', reason: '', at: T0 });
    const [s2] = transition(workspaceMachine, s1, { type: 'RESTART', requester: 'b', source: 'manual', reason: '', at: T0 + 1 });
    expect(s2.context.pending.map((r) => r.requester)).toEqual(['b']);
    expect(s2.context.pending[0]?.outcome).toBe('queued');
  });
});

describe('workspace actor', () => {
  describe('start: a restart that finds the workspace idle, running or failed begins a cycle', () => {
    it('starts from idle', async () => {
      const r = rig();
      const res = await r.sup.restart(id, { source: 'manual' });
      expect(res).toMatchObject({ outcome: 'started', cycle: 1, state: 'starting' });
      await r.advance(100);
      expect((await r.sup.get(id)).state).toBe('running');
    });

    it('starts from running: stop half first, then the provider start', async () => {
      const r = await running();
      const res = await r.sup.restart(id, { source: 'manual' });
      expect(res).toMatchObject({ outcome: 'started', cycle: 2, state: 'stopping' });
      await r.advance(100);
      expect((await r.sup.get(id)).state).toBe('starting');
      await r.advance(100);
      expect((await r.sup.get(id)).state).toBe('running');
      expect(r.provider.calls.map((c) => c.op)).toEqual(['start', 'stop', 'start']);
    });
  });

  describe('join: a restart before the cycle\'s provider start began is satisfied by that cycle', () => {
    it('joins during the stop half and runs one cycle for all', async () => {
      const r = await running();
      await r.sup.restart(id, { source: 'manual' });
      const joined = await r.sup.restart(id, { source: 'programmatic', reason: 'config changed' });
      expect(joined).toMatchObject({ outcome: 'joined', cycle: 2 });
      await r.settle();
      expect(r.cycles(id)).toBe(2);
      const completed = r.events.filter((e) => e.type === 'cycle.completed');
      expect(completed.at(-1)?.type === 'cycle.completed' && completed.at(-1)?.cycle.requesters.map((q) => q.outcome)).toEqual(['started', 'joined']);
    });
  });

  describe('queue: a restart after the start began sets the one pending flag', () => {
    it('queues, merges further requests, and runs exactly one more cycle', async () => {
      const r = rig();
      await r.sup.restart(id, { source: 'manual' });
      const outcomes = [];
      for (let i = 0; i < 5; i++) outcomes.push((await r.sup.restart(id, { source: 'manual' })).outcome);
      expect(outcomes).toEqual(['queued', 'queued', 'queued', 'queued', 'queued']);
      expect((await r.sup.get(id)).pending).toBe(5);
      await r.settle();
      expect(r.cycles(id)).toBe(2);
      expect(r.provider.overlaps).toEqual([]);
    });

    it('a waiting requester resolves when the queued cycle completes', async () => {
      const r = rig();
      await r.sup.restart(id, { source: 'manual' });
      const waited = r.sup.restart(id, { source: 'manual', wait: true });
      await r.settle();
      await expect(waited).resolves.toMatchObject({ outcome: 'queued', cycle: 2 });
    });
  });

  describe('defer, never drop: automatic restarts inside the self-fire window', () => {
    it('defers a programmatic restart within 60 s of the last cycle start and runs one trailing cycle at the window end', async () => {
      const r = await running();
      await r.advance(10_000);
      const res = await r.sup.restart(id, { source: 'programmatic', reason: 'env changed' });
      expect(res).toMatchObject({ outcome: 'deferred', cycle: null });
      expect((await r.sup.get(id)).deferredUntil).toBe(T0 + 60_000);
      await r.advance(49_000);
      expect(r.cycles(id)).toBe(1);
      await r.advance(1_000);
      expect(r.cycles(id)).toBe(2);
      await r.settle();
      expect((await r.sup.get(id)).state).toBe('running');
    });

    it('never defers manual, claim or liveness requests', async () => {
      for (const source of ['manual', 'claim', 'liveness'] as const) {
        const r = await running();
        const res = await r.sup.restart(id, { source });
        expect(res.outcome).toBe('started');
      }
    });

    it('a manual cycle absorbs the deferred requests (they arrived before its start)', async () => {
      const r = await running();
      const deferred = r.sup.restart(id, { source: 'file-write', reason: '3 files', wait: true });
      await flush();
      await r.sup.restart(id, { source: 'manual' });
      await r.settle();
      await expect(deferred).resolves.toMatchObject({ outcome: 'deferred', cycle: 2 });
      expect(r.cycles(id)).toBe(2);
    });

    it('fires again once the window has passed', async () => {
      const r = await running();
      await r.advance(60_000);
      expect((await r.sup.restart(id, { source: 'programmatic' })).outcome).toBe('started');
    });
  });

  describe('ensure: get-or-start', () => {
    it('gives started: true to exactly one of two concurrent callers, and both the same endpoint', async () => {
      const r = rig();
      const a = r.sup.ensure(id);
      const b = r.sup.ensure(id);
      await r.advance(100);
      const [ra, rb] = await Promise.all([a, b]);
      expect([ra.started, rb.started].sort()).toEqual([false, true]);
      expect(ra.endpoint).toBe(rb.endpoint);
      expect(startCalls(r, id)).toBe(1);
    });

    it('answers at once when running', async () => {
      const r = await running();
      await expect(r.sup.ensure(id)).resolves.toMatchObject({ started: false, state: 'running' });
      expect(startCalls(r, id)).toBe(1);
    });

    it('rejects every waiter with the cause when the start fails', async () => {
      const r = rig({ fault: (c) => (c.op === 'start' ? new Error('image not found') : undefined) });
      const a = capture(r.sup.ensure(id));
      const b = capture(r.sup.ensure(id));
      await r.advance(100);
      expect(await a).toMatchObject({ ok: false, error: { code: 'WSUP_CYCLE_FAILED', message: expect.stringContaining('image not found') as unknown } });
      expect(await b).toMatchObject({ ok: false, error: { code: 'WSUP_CYCLE_FAILED' } });
    });
  });

  describe('crash loop', () => {
    it('after more than maxRestarts failures within the period, waits in failed with doubling backoff', async () => {
      const r = rig({ latencyMs: 10, fault: (c) => (c.op === 'start' ? new Error('boom') : undefined) });
      await r.sup.restart(id, { source: 'manual' });
      await r.run(200);
      expect((await r.sup.get(id)).state).toBe('failed');
      const first = (await r.sup.get(id)).backoffUntil! - r.clock.now();
      expect(first).toBeGreaterThan(900);
      expect(first).toBeLessThanOrEqual(1_000);
      const failuresBefore = r.events.filter((e) => e.type === 'cycle.failed').length;
      expect(failuresBefore).toBe(6);
      await r.run(1_100);
      expect((await r.sup.get(id)).state).toBe('failed');
      expect(r.events.filter((e) => e.type === 'cycle.failed').length).toBe(7);
      const second = (await r.sup.get(id)).backoffUntil! - r.clock.now();
      expect(second).toBeGreaterThan(1_000);
      expect(second).toBeLessThanOrEqual(2_000);
    });

    it('a manual restart resets the count and starts at once', async () => {
      let failing = true;
      const r = rig({ latencyMs: 10, fault: (c) => (failing && c.op === 'start' ? new Error('boom') : undefined) });
      await r.sup.restart(id, { source: 'manual' });
      await r.run(200);
      expect((await r.sup.get(id)).state).toBe('failed');
      failing = false;
      expect((await r.sup.restart(id, { source: 'manual' })).outcome).toBe('started');
      await r.run(100);
      expect(await r.sup.get(id)).toMatchObject({ state: 'running', backoffUntil: null });
    });
  });

  describe('liveness', () => {
    it('"died" while running restarts with source liveness', async () => {
      const r = await running();
      r.sup.liveness(id, false, 'container exited 137');
      await flush();
      const started = r.events.filter((e) => e.type === 'cycle.started').at(-1);
      expect(started?.type === 'cycle.started' && started.cycle.source).toBe('liveness');
    });

    it('"died" while starting is ignored (a health probe failing during provisioning)', async () => {
      const r = rig();
      void r.sup.ensure(id);
      r.sup.liveness(id, false, 'probe failed');
      await r.settle();
      expect(r.cycles(id)).toBe(1);
    });
  });

  describe('stop and destroy during a cycle', () => {
    it('stop during the start lets the start finish, then stops; queued requests are superseded', async () => {
      const r = rig();
      await r.sup.restart(id, { source: 'manual' });
      const queued = capture(r.sup.restart(id, { source: 'manual', wait: true }));
      await flush();
      const stopped = r.sup.stop(id);
      await r.settle();
      await expect(stopped).resolves.toMatchObject({ state: 'idle' });
      expect(await queued).toMatchObject({ ok: false, error: { code: 'WSUP_SUPERSEDED' } });
      expect(r.provider.calls.map((c) => `${c.op}:${c.outcome}`)).toEqual(['start:ok', 'stop:ok']);
      expect(r.provider.overlaps).toEqual([]);
    });

    it('stop during the stop half cancels the start half', async () => {
      const r = await running();
      const restart = capture(r.sup.restart(id, { source: 'manual', wait: true }));
      await flush();
      const stopped = r.sup.stop(id);
      await r.settle();
      await expect(stopped).resolves.toMatchObject({ state: 'idle' });
      expect(await restart).toMatchObject({ ok: false, error: { code: 'WSUP_SUPERSEDED' } });
      expect(startCalls(r, id)).toBe(1);
    });

    it('destroy waits for the call in flight, removes the resource, and refuses further commands', async () => {
      const r = rig();
      void r.sup.ensure(id).catch(() => undefined);
      await flush();
      const destroyed = r.sup.destroy(id);
      await r.settle();
      await expect(destroyed).resolves.toMatchObject({ state: 'destroyed' });
      expect(r.provider.calls.map((c) => c.op)).toEqual(['start', 'stop']);
      await expect(r.sup.restart(id)).rejects.toMatchObject({ code: 'WSUP_DESTROYED' });
      await expect(r.sup.ensure(id)).rejects.toMatchObject({ code: 'WSUP_DESTROYED' });
      expect(await r.sup.accepts(id)).toBe(false);
    });
  });

  describe('provider call timeout', () => {
    it('aborts the call through its signal and fails the cycle with a timeout error', async () => {
      const r = rig({ fault: (c) => (c.op === 'start' ? 'hang' : undefined), sup: { providerTimeoutMs: 5_000 } });
      const ensured = capture(r.sup.ensure(id));
      await r.advance(4_999);
      expect((await r.sup.get(id)).state).toBe('starting');
      await r.advance(1);
      expect(await ensured).toMatchObject({ ok: false, error: { code: 'WSUP_CYCLE_FAILED', message: expect.stringContaining('timed out after 5000 ms') as unknown } });
      expect(r.provider.calls[0]?.outcome).toBe('aborted');
      expect((await r.sup.get(id)).lastError?.code).toBe('WSUP_PROVIDER_TIMEOUT');
    });
  });

  describe('bad input', () => {
    it('rejects invalid ids with a clear error and creates nothing', async () => {
      const r = rig();
      await expect(r.sup.restart('Bad Id!')).rejects.toMatchObject({ code: 'WSUP_INVALID_ID' });
      await expect(r.sup.ensure('x'.repeat(64))).rejects.toMatchObject({ code: 'WSUP_INVALID_ID' });
      expect(r.sup.size).toBe(0);
    });

    it('a provider that throws synchronously never crashes the process', async () => {
      const r = rig();
      r.provider.start = () => {
        throw new Error('sync boom');
      };
      await expect(r.sup.ensure(id)).rejects.toMatchObject({ code: 'WSUP_CYCLE_FAILED' });
    });
  });
});
