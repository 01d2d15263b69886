/**
 * The lifecycle races that workspace platforms keep shipping, each as the test that proves it cannot happen
 * here. Elsewhere each was patched with a lock, a flag or a timer added by hand; here the statechart is the
 * only path to the provider.
 */
import { describe, expect, it } from 'vitest';
import { capture, flush, rig, startCalls } from '../helpers/harness.ts';

async function runningRig(id: string, latencyMs = 100) {
  const r = rig({ latencyMs });
  const e = r.sup.ensure(id);
  await r.advance(latencyMs);
  await e;
  await r.advance(60_000); // leave the self-fire window of the first start
  return r;
}

describe('two restart paths racing: manual and programmatic, both reaching the provider start', () => {
  it('one call runs one cycle', async () => {
    const r = await runningRig('ws-a');
    await r.sup.restart('ws-a', { source: 'manual' });
    await r.settle();
    expect(r.cycles('ws-a')).toBe(2); // the ensure's start, then this restart
    expect(r.provider.calls.slice(1).map((c) => c.op)).toEqual(['stop', 'start']);
  });

  it('concurrent callers serialize: manual and programmatic never overlap provider calls', async () => {
    const r = await runningRig('ws-a');
    const [m, p] = await Promise.all([
      r.sup.restart('ws-a', { source: 'manual', reason: 'POST /restart' }),
      r.sup.restart('ws-a', { source: 'programmatic', reason: 'RestartByID' }),
    ]);
    expect([m.outcome, p.outcome]).toEqual(['started', 'joined']);
    await r.settle();
    expect(r.provider.overlaps).toEqual([]);
    expect(startCalls(r, 'ws-a')).toBe(2);
  });

  it('a busy workspace answers at once instead of blocking', async () => {
    const r = await runningRig('ws-a');
    await r.sup.restart('ws-a', { source: 'manual' });
    await r.advance(100); // stop half done; the provider start is now in flight
    expect((await r.sup.get('ws-a')).state).toBe('starting');
    const answer = await r.sup.restart('ws-a', { source: 'manual' }); // no clock advance needed to answer
    expect(answer).toMatchObject({ outcome: 'queued', state: 'starting' });
  });

  it('two concurrent cycles never overlap, even when the pending flag drains into a second one', async () => {
    const r = await runningRig('ws-a');
    await r.sup.restart('ws-a', { source: 'manual' });
    await r.advance(100);
    await r.sup.restart('ws-a', { source: 'manual' });
    await r.settle();
    expect(r.provider.overlaps).toEqual([]);
    const ops = r.provider.calls.map((c) => [c.startedAt, c.endedAt!] as const);
    for (let i = 1; i < ops.length; i++) expect(ops[i]![0]).toBeGreaterThanOrEqual(ops[i - 1]![1]);
  });

  it('two workspaces are independent: both provider starts are in flight at once (a global lock would fail)', async () => {
    const r = rig({ latencyMs: 100 });
    void r.sup.ensure('ws-a');
    void r.sup.ensure('ws-b');
    await flush();
    expect(r.provider.inFlightIds().sort()).toEqual(['ws-a', 'ws-b']);
    await r.settle();
  });
});

describe('check-then-start: two clients both see "not running" and both start it', () => {
  it('two concurrent ensures: exactly one started: true, both the same endpoint, one provider start', async () => {
    const r = rig();
    const [a, b] = [r.sup.ensure('ws-race'), r.sup.ensure('ws-race')];
    await r.advance(100);
    const results = await Promise.all([a, b]);
    expect(results.filter((x) => x.started)).toHaveLength(1);
    expect(results[0].endpoint).toBe(results[1].endpoint);
    expect(startCalls(r, 'ws-race')).toBe(1);
  });
});

describe('a burst of saves restarting a workspace in a tight loop', () => {
  it('10 programmatic restarts arriving together run 1 cycle', async () => {
    const r = await runningRig('ws-a');
    const answers = await Promise.all(Array.from({ length: 10 }, () => r.sup.restart('ws-a', { source: 'programmatic' })));
    expect(answers.map((a) => a.outcome)).toEqual(['started', ...Array<string>(9).fill('joined')]);
    await r.settle();
    expect(r.cycles('ws-a')).toBe(2);
  });

  it('a 50-caller herd runs exactly 1 cycle', async () => {
    const r = await runningRig('ws-a');
    const herd = Array.from({ length: 50 }, (_, i) => capture(r.sup.restart('ws-a', { source: i % 2 ? 'programmatic' : 'file-write', wait: true })));
    await r.settle();
    const results = await Promise.all(herd);
    expect(results.every((x) => x.ok)).toBe(true);
    expect(new Set(results.map((x) => (x.ok ? x.value.cycle : -1)))).toEqual(new Set([2]));
    expect(r.cycles('ws-a')).toBe(2);
  });

  it('a request during a drained cycle meets a fresh self-fire window (path B\'s re-stamp)', async () => {
    const r = await runningRig('ws-a');
    await r.sup.restart('ws-a', { source: 'manual' });
    await r.advance(100);
    await r.sup.restart('ws-a', { source: 'manual' }); // queued → drains into cycle 3
    await r.advance(100); // cycle 2 completes, cycle 3 begins
    const cycle3 = r.events.filter((e) => e.type === 'cycle.started').at(-1);
    expect(cycle3?.type === 'cycle.started' && cycle3.cycle.n).toBe(3);
    const late = await r.sup.restart('ws-a', { source: 'programmatic' });
    expect(late.outcome).toBe('joined'); // its stop half is still running
    await r.advance(100);
    const deferred = await r.sup.restart('ws-a', { source: 'programmatic' });
    expect(deferred.outcome).toBe('deferred');
    expect((await r.sup.get('ws-a')).deferredUntil).toBe((cycle3?.type === 'cycle.started' ? cycle3.cycle.startedAt : 0) + 60_000);
  });

  it('a request after the window fires again', async () => {
    const r = await runningRig('ws-a');
    expect((await r.sup.restart('ws-a', { source: 'file-write' })).outcome).toBe('started');
    await r.settle();
    await r.advance(60_000);
    expect((await r.sup.restart('ws-a', { source: 'file-write' })).outcome).toBe('started');
  });

  it('per-workspace isolation: one workspace\'s window does not defer another', async () => {
    const r = rig();
    await Promise.all([r.sup.ensure('ws-a'), r.sup.ensure('ws-b'), r.advance(100)]);
    await r.advance(60_000);
    await r.sup.restart('ws-a', { source: 'programmatic' });
    await r.settle();
    expect((await r.sup.restart('ws-a', { source: 'programmatic' })).outcome).toBe('deferred');
    expect((await r.sup.restart('ws-b', { source: 'programmatic' })).outcome).toBe('started');
  });
});
