/**
 * A workspace is never stuck in a transition: a provider call that hangs is bounded by the provider timeout,
 * and a stop or destroy asked meanwhile is taken at once (answered when the stop has really run), so the
 * workspace always reaches a state that accepts every command.
 */
import { describe, expect, it } from 'vitest';
import { capture, rig } from '../helpers/harness.ts';

const id = 'stuck-1';
const TIMEOUT = 5_000;

describe('no workspace is stuck in a transition', () => {
  it('a stop during a hanging start is answered once the start times out, and the workspace ends stopped', async () => {
    const r = rig({ fault: (c) => (c.op === 'start' ? 'hang' : undefined), sup: { providerTimeoutMs: TIMEOUT } });
    const ensured = capture(r.sup.ensure(id));
    await r.advance(10);
    expect((await r.sup.get(id)).state).toBe('starting');
    const stopped = capture(r.sup.stop(id));
    await r.advance(10);
    expect((await r.sup.get(id)).desired).toBe('stopped');
    await r.run(TIMEOUT + 1_000, 100);
    expect(await stopped).toMatchObject({ ok: true, value: { state: 'idle' } });
    expect((await ensured).ok).toBe(false);
    expect(r.provider.calls.filter((c) => c.op === 'start').map((c) => c.outcome)).toEqual(['aborted']);
  });

  it('a destroy during a hanging stop is answered once the stop times out and its retry finishes', async () => {
    let hangStop = false;
    const r = rig({ fault: (c) => (c.op === 'stop' && hangStop ? 'hang' : undefined), sup: { providerTimeoutMs: TIMEOUT } });
    const ensured = r.sup.ensure(id);
    await r.advance(200);
    await ensured;
    hangStop = true;
    const stopped = capture(r.sup.stop(id));
    await r.advance(10);
    expect((await r.sup.get(id)).state).toBe('stopping');
    hangStop = false; // the next stop attempt works
    const destroyed = capture(r.sup.destroy(id));
    await r.run(TIMEOUT + 2_000, 100);
    expect((await destroyed).ok).toBe(true);
    expect((await r.sup.get(id)).state).toBe('destroyed');
    // The stop that hung is retried, not abandoned: its caller is answered when a stop has really run.
    expect(await stopped).toMatchObject({ ok: true, value: { state: 'destroyed' } });
    expect(r.provider.calls.filter((c) => c.op === 'stop').map((c) => c.outcome)).toEqual(['aborted', 'ok']);
    expect((await r.sup.get(id)).lastError?.code).toBe('WSUP_PROVIDER_TIMEOUT');
  });

  it('a workspace in crash-loop backoff takes a stop at once and leaves backoff', async () => {
    const r = rig({ fault: (c) => (c.op === 'start' ? new Error('image missing') : undefined), sup: { config: { maxRestarts: 1, backoffBaseMs: 60_000 } } });
    void capture(r.sup.ensure(id));
    await r.run(2_000, 50);
    expect((await r.sup.get(id)).state).toBe('failed');
    const stopped = capture(r.sup.stop(id));
    await r.run(1_000, 50);
    expect(await stopped).toMatchObject({ ok: true, value: { state: 'idle', backoffUntil: null } });
  });
});
