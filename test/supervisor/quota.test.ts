/**
 * Running quotas through the supervisor: a start from not-running over a limit is refused at once (never
 * queued), names the workspaces that hold the quota, and the check is one synchronous step with the send,
 * so concurrent starts can't both take the last slot. Scheduled starts obey the same check.
 */
import { describe, expect, it } from 'vitest';
import { SYSTEM_OWNER } from '../../src/store/types.ts';
import { capture, flush, rig, startCalls } from '../helpers/harness.ts';

const owned = (owner: string, template = 'python') => ({ wsupOwner: owner, wsupTemplate: { name: template, version: 'v1' } });

describe('quotas', () => {
  it('refuses a start over the per-owner limit at once, naming the holders, and starts nothing', async () => {
    const r = rig({ sup: { quota: { perOwner: 2 } } });
    for (const id of ['ws-a', 'ws-b', 'ws-c']) await r.sup.create(id, owned('alice'));
    await Promise.all([r.sup.ensure('ws-a'), r.sup.ensure('ws-b'), r.advance(100)]);
    const refused = capture(r.sup.ensure('ws-c'));
    await flush(); // no clock movement: the answer does not wait for anything
    expect(await refused).toMatchObject({
      ok: false,
      error: {
        code: 'WSUP_QUOTA',
        message: 'workspace ws-c: owner alice already runs 2 of 2 allowed (ws-a, ws-b): stop one or raise --max-running-per-owner',
        detail: { quota: 'per-owner', limit: 2, holders: 'ws-a,ws-b' },
      },
    });
    expect(await r.sup.get('ws-c')).toMatchObject({ state: 'idle', desired: 'stopped', pending: 0 });
    expect(startCalls(r, 'ws-c')).toBe(0);
    await expect(r.sup.restart('ws-c', { source: 'manual' })).rejects.toMatchObject({ code: 'WSUP_QUOTA' });
    // Another owner is not affected, and a restart of a workspace that holds its slot is not a new start.
    await r.sup.create('ws-d', owned('bob'));
    await Promise.all([r.sup.ensure('ws-d'), r.advance(100)]);
    expect((await r.sup.restart('ws-a', { source: 'manual' })).outcome).toBe('started');
  });

  it('two concurrent ensures for the last slot: exactly one passes', async () => {
    const r = rig({ sup: { quota: { perTemplate: { python: 2 } } } });
    for (const id of ['ws-a', 'ws-b', 'ws-c']) await r.sup.create(id, owned(id));
    await Promise.all([r.sup.ensure('ws-a'), r.advance(100)]);
    const b = capture(r.sup.ensure('ws-b'));
    const c = capture(r.sup.ensure('ws-c'));
    await r.advance(100);
    const outcomes = await Promise.all([b, c]);
    expect(outcomes.filter((o) => o.ok)).toHaveLength(1);
    expect(outcomes.filter((o) => !o.ok).map((o) => !o.ok && o.error.code)).toEqual(['WSUP_QUOTA']);
    expect(startCalls(r, 'ws-b') + startCalls(r, 'ws-c')).toBe(1);
  });

  it('a stop frees the slot; a restart’s stop half keeps it', async () => {
    const r = rig({ sup: { quota: { perOwner: 1 } } });
    await r.sup.create('ws-a', owned('alice'));
    await r.sup.create('ws-b', owned('alice'));
    await Promise.all([r.sup.ensure('ws-a'), r.advance(100)]);
    const restarted = await r.sup.restart('ws-a', { source: 'manual' });
    expect(restarted.state).toBe('stopping');
    await expect(r.sup.ensure('ws-b')).rejects.toMatchObject({ code: 'WSUP_QUOTA', detail: { holders: 'ws-a' } });
    await r.run(200, 100); // the restart's stop, then its start
    expect((await r.sup.get('ws-a')).state).toBe('running');
    const stopped = r.sup.stop('ws-a');
    await r.advance(100);
    await stopped;
    const ensured = r.sup.ensure('ws-b');
    await r.advance(100);
    expect(await ensured).toMatchObject({ started: true, state: 'running' });
  });

  it('counts templates and pools, and exempts unclaimed prebuilds from the per-owner limit', async () => {
    const owners = new Map<string, string>([['pb-1', SYSTEM_OWNER], ['pb-2', SYSTEM_OWNER]]);
    const r = rig({ sup: { quota: { perOwner: 1, perTemplate: { py: 2 }, defaultPerTemplate: 5 }, ownerOf: (id) => owners.get(id) } });
    await r.sup.create('pb-1', { pool: 'py' });
    await r.sup.create('pb-2', { pool: 'py' });
    await r.sup.create('ws-x', owned('carol', 'go'));
    await Promise.all([r.sup.ensure('pb-1'), r.sup.ensure('pb-2'), r.sup.ensure('ws-x'), r.advance(100)]);
    expect(r.sup.quotaUsage()).toEqual({
      perOwner: [{ name: 'carol', running: 1, limit: 1 }],
      perTemplate: [
        { name: 'go', running: 1, limit: 5 },
        { name: 'py', running: 2, limit: 2 },
      ],
    });
    // A claim hands pb-1 to carol: her per-owner slot is taken by ws-x, so pb-1's claim build is refused.
    const stopped = r.sup.stop('pb-1');
    await r.advance(100);
    await stopped;
    owners.set('pb-1', 'carol');
    const claimed = await capture(r.sup.restart('pb-1', { source: 'claim' }));
    expect(claimed).toMatchObject({ ok: false, error: { code: 'WSUP_QUOTA' } });
    expect(!claimed.ok && claimed.error.message).toContain('owner carol already runs 1 of 1 allowed (ws-x)');
  });

  it('a workspace restored running holds its slot from the moment it is restored', async () => {
    const a = rig();
    await a.sup.create('ws-a', owned('alice'));
    await Promise.all([a.sup.ensure('ws-a'), a.advance(100)]);
    const snapshot = JSON.parse(JSON.stringify(a.sup.persistedSnapshot('ws-a'))) as ReturnType<typeof a.sup.persistedSnapshot>;
    await a.sup.shutdown({ deadlineMs: 0 });
    const b = rig({ sup: { quota: { perOwner: 1 } } });
    expect(b.sup.restore('ws-a', snapshot).state).toBe('running');
    await b.sup.create('ws-b', owned('alice'));
    await expect(b.sup.ensure('ws-b')).rejects.toMatchObject({ code: 'WSUP_QUOTA', detail: { holders: 'ws-a' } });
  });

  it('limits may change between checks (a function is read at every check)', async () => {
    let limit = 1;
    const r = rig({ sup: { quota: () => ({ perOwner: limit }) } });
    await r.sup.create('ws-a', owned('alice'));
    await r.sup.create('ws-b', owned('alice'));
    await Promise.all([r.sup.ensure('ws-a'), r.advance(100)]);
    await expect(r.sup.ensure('ws-b')).rejects.toMatchObject({ code: 'WSUP_QUOTA' });
    limit = 2;
    const ensured = r.sup.ensure('ws-b');
    await r.advance(100);
    expect((await ensured).started).toBe(true);
  });

  it('rejects a malformed limit with the field and the fix', () => {
    expect(() => rig({ sup: { quota: { perOwner: 0 } } })).toThrow(/quota\.perOwner: 0 is not a limit: use a whole number of at least 1, or null for no limit/);
    expect(() => rig({ sup: { quota: { perTemplate: { py: 1.5 } } } })).toThrow(/quota\.perTemplate\.py/);
  });
});
