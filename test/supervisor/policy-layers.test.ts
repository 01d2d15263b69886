/** The pure parts of policies and quotas: layer merging, patch checks, the quota ledger's bookkeeping. */
import { describe, expect, it } from 'vitest';
import { NO_POLICY } from '../../machines/workspace.types.ts';
import { SYSTEM_OWNER } from '../../src/store/types.ts';
import { compactPolicy, mergePolicy, samePolicy, specLayers, validatePolicy } from '../../src/supervisor/policy.ts';
import { holdsSlot, QuotaLedger, quotaKeys } from '../../src/supervisor/quota.ts';

describe('mergePolicy', () => {
  it('takes each field from the highest layer that sets it; null is a setting, undefined is not', () => {
    const merged = mergePolicy(
      { idleTimeoutMs: 1_800_000, maxLifetimeMs: 28_800_000, autoUpdate: 'on-start' },
      { idleTimeoutMs: 600_000, autostart: { cron: '0 9 * * 1-5', tz: 'Europe/Berlin' } },
      { idleTimeoutMs: null, maxLifetimeMs: undefined },
    );
    expect(merged).toEqual({ ...NO_POLICY, idleTimeoutMs: null, maxLifetimeMs: 28_800_000, autoUpdate: 'on-start', autostart: { cron: '0 9 * * 1-5', tz: 'Europe/Berlin' } });
    expect(mergePolicy()).toEqual(NO_POLICY);
    expect(samePolicy(merged, { ...merged, autostart: { cron: '0 9 * * 1-5', tz: 'Europe/Berlin' } })).toBe(true);
    expect(samePolicy(merged, { ...merged, autostart: { cron: '0 9 * * 1-5', tz: 'UTC' } })).toBe(false);
  });

  it('stores a patch without its absent fields, and reads the layers back from a spec', () => {
    expect(compactPolicy({ idleTimeoutMs: undefined, maxLifetimeMs: null })).toEqual({ maxLifetimeMs: null });
    expect(specLayers({ id: 'x', wsupPolicyDefaults: { idleTimeoutMs: 5_000 }, wsupPolicy: 'junk' })).toEqual([{ idleTimeoutMs: 5_000 }, undefined]);
  });
});

describe('validatePolicy', () => {
  it('accepts a full policy and checks cross-field rules on the merged result', () => {
    const full = {
      idleTimeoutMs: 1_800_000,
      maxLifetimeMs: 28_800_000,
      maxLifetimeWarnMs: 900_000,
      autostart: { cron: '0 9 * * 1-5', tz: 'Europe/Berlin' },
      autostop: { cron: '0 19 * * 1-5', tz: 'America/New_York' },
      dormantAfterMs: 1_209_600_000,
      deleteDormantAfterMs: 2_592_000_000,
      autoUpdate: 'never',
    };
    expect(validatePolicy(full)).toEqual(full);
    // The warning must come before the stop, whichever layer sets each.
    expect(() => validatePolicy({ maxLifetimeWarnMs: 3_600_000 }, { base: { ...NO_POLICY, maxLifetimeMs: 1_800_000 } })).toThrow(/policy\.maxLifetimeWarnMs/);
    expect(validatePolicy({ deleteDormantAfterMs: 1_000 }, { base: { ...NO_POLICY, dormantAfterMs: 1_000 } })).toEqual({ deleteDormantAfterMs: 1_000 });
  });

  it('names the field and the fix, with the error detail for the wire', () => {
    let caught: unknown;
    try {
      validatePolicy({ autostart: { cron: 'every day', tz: 'UTC' } }, { where: 'workspace ws-1' });
    } catch (err) {
      caught = err;
    }
    expect(caught).toMatchObject({ code: 'WSUP_INVALID_ARGUMENT', message: expect.stringMatching(/^workspace ws-1: policy\.autostart\.cron: /) as unknown, detail: { field: 'policy.autostart.cron' } });
    expect(() => validatePolicy(null)).toThrow(/must be an object of policy fields/);
    expect(() => validatePolicy({ autostop: { cron: '0 19 * * *', tz: 'UTC', when: 'now' } })).toThrow(/policy\.autostop\.when: unknown field/);
    expect(() => validatePolicy({ dormantAfterMs: 1.5 })).toThrow(/policy\.dormantAfterMs: 1\.5 is not a duration/);
  });
});

describe('QuotaLedger', () => {
  it('counts holders per owner and template, and forgets a workspace once it stops holding', () => {
    const ledger = new QuotaLedger(() => ({ perOwner: 2, perTemplate: 1 }));
    ledger.track('a', { owner: 'alice', template: 'py', holding: true });
    ledger.track('a', { owner: 'alice', template: 'py', holding: true }); // repeated snapshots change nothing
    ledger.track('b', { owner: 'alice', template: 'go', holding: true });
    expect(ledger.refusal('c', { owner: 'alice', template: null })).toMatchObject({ code: 'WSUP_QUOTA', detail: { quota: 'per-owner', holders: 'a,b' } });
    expect(ledger.refusal('c', { owner: 'bob', template: 'py' })).toMatchObject({ detail: { quota: 'per-template', limit: 1, holders: 'a' } });
    expect(ledger.refusal('a', { owner: 'alice', template: 'py' })).toBeNull(); // never counts itself: besides a, alice holds 1 of 2
    ledger.track('b', { owner: 'alice', template: 'go', holding: false });
    expect(ledger.refusal('c', { owner: 'alice', template: 'go' })).toBeNull();
    // A re-keyed workspace (a claim moved it to another owner) moves its slot.
    ledger.track('a', { owner: 'bob', template: 'py', holding: true });
    expect(ledger.usage()).toEqual({ perOwner: [{ name: 'bob', running: 1, limit: 2 }], perTemplate: [{ name: 'py', running: 1, limit: 1 }] });
  });

  it('reads keys from spec and knows which states hold a slot', () => {
    expect(quotaKeys({ wsupOwner: 'alice', wsupTemplate: { name: 'py', version: 'abc' } })).toEqual({ owner: 'alice', template: 'py' });
    expect(quotaKeys({ wsupOwner: 'alice', pool: 'gpu' }, 'bob')).toEqual({ owner: 'bob', template: 'gpu' });
    expect(quotaKeys({ pool: 'gpu' }, SYSTEM_OWNER)).toEqual({ owner: null, template: 'gpu' });
    expect([holdsSlot('starting', 'running'), holdsSlot('running', 'stopped'), holdsSlot('stopping', 'running')]).toEqual([true, true, true]);
    expect([holdsSlot('stopping', 'stopped'), holdsSlot('idle', 'running'), holdsSlot('failed', 'running')]).toEqual([false, false, false]);
  });
});
