/**
 * Request ids: a command sent again under the same request id (its answer was lost) runs once and gets the
 * first one's answer; callers' ids never mix; a flood of distinct ids costs a bounded amount of memory.
 */
import { SimulatedClock } from 'xstate';
import { afterEach, describe, expect, it } from 'vitest';
import { WsupError } from '../../src/errors.ts';
import { MAX_RECENT_REQUESTS, RecentRequests, REQUEST_TTL_MS } from '../../src/server/requests.ts';
import { capture } from '../helpers/harness.ts';
import { startRig, type ServerRig } from './rig.ts';

describe('RecentRequests', () => {
  it('a re-send joins the first while it runs and gets its answer after; another key runs', async () => {
    const recent = new RecentRequests({ clock: new SimulatedClock() });
    let runs = 0;
    let release!: (v: string) => void;
    const first = recent.run('k', () => (runs++, new Promise<string>((r) => (release = r))));
    const again = recent.run('k', async () => (runs++, 'second'));
    release('first');
    expect(await Promise.all([first, again])).toEqual(['first', 'first']);
    expect(await recent.run('k', async () => (runs++, 'third'))).toBe('first');
    expect(await recent.run('other', async () => (runs++, 'other'))).toBe('other');
    expect(runs).toBe(2);
  });

  it('keeps a conclusive refusal, but not an answer that says nothing of the outcome', async () => {
    const recent = new RecentRequests({ clock: new SimulatedClock() });
    const refused = new WsupError('WSUP_QUOTA', 'over quota');
    expect(await capture(recent.run('q', () => Promise.reject(refused)))).toMatchObject({ ok: false, error: { code: 'WSUP_QUOTA' } });
    expect(await capture(recent.run('q', async () => 'ran'))).toMatchObject({ ok: false, error: { code: 'WSUP_QUOTA' } });
    for (const code of ['WSUP_OUTCOME_UNKNOWN', 'WSUP_SHUTTING_DOWN', 'WSUP_FENCED'] as const) {
      await capture(recent.run(code, () => Promise.reject(new WsupError(code, 'unknown'))));
      expect(await recent.run(code, async () => 'ran')).toBe('ran');
    }
    await capture(recent.run('crash', () => Promise.reject(new Error('internal'))));
    expect(await recent.run('crash', async () => 'ran')).toBe('ran');
  });

  it('forgets an answer after the ttl, on the injected clock', async () => {
    const clock = new SimulatedClock();
    const recent = new RecentRequests({ clock });
    expect(await recent.run('k', async () => 1)).toBe(1);
    clock.increment(REQUEST_TTL_MS - 1);
    expect(await recent.run('k', async () => 2)).toBe(1);
    clock.increment(1);
    expect(await recent.run('k', async () => 3)).toBe(3);
  });

  it('a flood of distinct ids keeps at most the cap, the newest', async () => {
    const recent = new RecentRequests({ clock: new SimulatedClock() });
    for (let i = 0; i < MAX_RECENT_REQUESTS * 3; i++) void recent.run(`k${i}`, async () => i);
    expect(recent.size).toBe(MAX_RECENT_REQUESTS);
    expect(await recent.run(`k${MAX_RECENT_REQUESTS * 3 - 1}`, async () => -1)).toBe(MAX_RECENT_REQUESTS * 3 - 1);
    expect(await recent.run('k0', async () => -1)).toBe(-1);
  });
});

describe('request ids through the control server', () => {
  let rig: ServerRig | null = null;
  afterEach(async () => {
    await rig?.close();
    rig = null;
  });

  it('a restart sent twice under one id runs one cycle; another caller with the same id gets its own', async () => {
    rig = await startRig();
    const admin = rig.client('admin');
    const op = rig.client('operator');
    await admin.call('workspace.create', { id: 'rq-1' });
    await admin.call('workspace.ensure', { id: 'rq-1' });
    const first = await op.call('workspace.restart', { id: 'rq-1', reason: 'deploy', wait: true, requestId: 'req-1' });
    const again = await op.call('workspace.restart', { id: 'rq-1', reason: 'deploy', wait: true, requestId: 'req-1' });
    expect(again).toEqual(first);
    const other = await admin.call('workspace.restart', { id: 'rq-1', reason: 'deploy', wait: true, requestId: 'req-1' });
    expect(other.cycle).toBeGreaterThan(first.cycle!);
    const { events } = await admin.call('events.history', { id: 'rq-1', limit: 1000 });
    // One request in the log per caller: the re-send added none.
    const labels = events.flatMap((e) => (e.type === 'request' && e.requester.includes('~req:req-1') ? [e.requester.split('#')[0]] : []));
    expect(labels).toHaveLength(2);
    expect(new Set(labels).size).toBe(2);
  });

  it('refuses a malformed request id, and a viewer cannot send commands under any', async () => {
    rig = await startRig();
    const admin = rig.client('admin');
    await admin.call('workspace.create', { id: 'rq-2' });
    for (const requestId of ['', 'has space', 'a~b', 'x'.repeat(129)]) {
      const r = await capture(admin.call('workspace.ensure', { id: 'rq-2', requestId }));
      expect(r.ok, requestId).toBe(false);
    }
    const viewer = rig.client('viewer');
    const r = await capture(viewer.call('workspace.restart', { id: 'rq-2', requestId: 'v-1' }));
    expect(r).toMatchObject({ ok: false });
    expect((await rig.supervisor.get('rq-2')).state).not.toBe('starting');
    expect(rig.provider.starts.get('rq-2') ?? 0).toBe(0);
  });
});
