/** Durations, `wsup policy` flags → the workspace's own layer, serve defaults, and the printed lines. */
import { describe, expect, it } from 'vitest';
import { UsageError } from '../../src/cli/context.ts';
import { durationFlag, formatDuration, parseDuration } from '../../src/cli/duration.ts';
import { checkPolicyFlags, clockTime, describeIdleDeadline, describeNext, describePolicy, ownLayer, policyPatch, serveDefaults } from '../../src/cli/policy.ts';
import { NO_POLICY } from '../../machines/workspace.types.ts';

const T = Date.UTC(2026, 11, 2, 14, 2, 11);

describe('durations', () => {
  it('reads 45s, 30m, 8h, 14d, 1h30m, 500ms and plain ms', () => {
    expect(['45s', '30m', '8h', '14d', '1h30m', '500ms', '90000'].map(parseDuration)).toEqual([45_000, 1_800_000, 28_800_000, 1_209_600_000, 5_400_000, 500, 90_000]);
  });

  it('refuses anything else, naming the flag and the fix', () => {
    for (const bad of ['30x', '', 'm30', '1.5h', '-5m', '30 m', 'off']) expect(parseDuration(bad), bad).toBeNull();
    expect(() => durationFlag('--idle', '30x')).toThrow(new UsageError('--idle: "30x" is not a duration: use e.g. 45s, 30m, 8h, 14d'));
  });

  it('prints the two largest units, rounded to the second', () => {
    expect([1_800_000, 5_400_000, 1_209_600_000, 754_000, 45_400, 999].map(formatDuration)).toEqual(['30m', '1h30m', '14d', '12m34s', '45s', '999ms']);
    expect(formatDuration(1_799_700)).toBe('30m');
  });
});

describe('wsup policy flags', () => {
  it('sets the rules the flags name, keeps the others of the own layer, and `off` turns one off', () => {
    const own = { maxLifetimeMs: 28_800_000, autostop: { cron: '0 19 * * 1-5', tz: 'Europe/Berlin' } };
    expect(policyPatch({ idle: '30m', maxLifetime: 'off' }, own)).toEqual({ idleTimeoutMs: 1_800_000, maxLifetimeMs: null, autostop: own.autostop });
    expect(policyPatch({}, own)).toBeNull();
  });

  it('--clear turns every rule off before the other flags apply', () => {
    expect(policyPatch({ clear: true, idle: '45s' }, { maxLifetimeMs: 1000 })).toEqual({ ...NO_POLICY, idleTimeoutMs: 45_000 });
  });

  it('schedules take --tz, else their own zone, else UTC; --tz alone moves the existing schedules', () => {
    expect(policyPatch({ autostart: '0 9 * * 1-5', tz: 'Europe/Berlin' }, {})).toEqual({ autostart: { cron: '0 9 * * 1-5', tz: 'Europe/Berlin' } });
    expect(policyPatch({ autostop: '0 19 * * 1-5' }, {})).toEqual({ autostop: { cron: '0 19 * * 1-5', tz: 'UTC' } });
    const own = { autostart: { cron: '0 9 * * *', tz: 'UTC' } };
    expect(policyPatch({ autostart: '0 8 * * *' }, { autostart: { cron: '0 9 * * *', tz: 'Asia/Tokyo' } })).toEqual({ autostart: { cron: '0 8 * * *', tz: 'Asia/Tokyo' } });
    expect(policyPatch({ tz: 'America/New_York' }, own)).toEqual({ autostart: { cron: '0 9 * * *', tz: 'America/New_York' } });
    expect(() => policyPatch({ tz: 'Europe/Berlin' }, {})).toThrow(/--tz needs --autostart or --autostop/);
    expect(policyPatch({ autostart: 'off' }, own)).toEqual({ autostart: null });
  });

  it('checks each value before the server is asked', () => {
    expect(() => checkPolicyFlags({ warn: '15q' })).toThrow('--warn: "15q" is not a duration');
    expect(() => checkPolicyFlags({ autoUpdate: 'always' })).toThrow('--auto-update: "always" must be on-start, never or off');
    expect(() => checkPolicyFlags({ tz: 'Europe/Berlin' })).not.toThrow();
  });

  it('reads the own layer from the spec, ignoring what is not a policy', () => {
    expect(ownLayer({ wsupPolicy: { idleTimeoutMs: 60_000 } })).toEqual({ idleTimeoutMs: 60_000 });
    expect(ownLayer({ wsupPolicy: 'nonsense' })).toEqual({});
    expect(ownLayer({})).toEqual({});
  });
});

describe('serve defaults', () => {
  it('flags over the config file, durations as strings or ms', () => {
    const config = { file: 'w.json', defaults: { policy: { idleTimeoutMs: '1h', maxLifetimeMs: 3_600_000, autoUpdate: 'on-start' } } };
    expect(serveDefaults({ idleTimeout: '30m', maxLifetimeWarn: '15m' }, config)).toEqual({
      idleTimeoutMs: 1_800_000,
      maxLifetimeMs: 3_600_000,
      maxLifetimeWarnMs: 900_000,
      autoUpdate: 'on-start',
    });
    expect(serveDefaults({})).toEqual({});
  });

  it('refuses bad values with the flag or the config path', () => {
    expect(() => serveDefaults({ idleTimeout: '30x' })).toThrow('--idle-timeout: "30x" is not a duration');
    expect(() => serveDefaults({ dormantAfter: '500ms' })).toThrow(/default policy dormantAfterMs: .*1s to 366d/);
    expect(() => serveDefaults({ maxLifetime: '400d' })).toThrow(/maxLifetimeMs/);
    expect(() => serveDefaults({}, { file: 'w.json', defaults: { policy: { idle: '30m' } } })).toThrow('config w.json: defaults.policy.idle: unknown field');
    expect(() => serveDefaults({}, { file: 'w.json', defaults: { policy: { deleteDormantAfterMs: '30d' } } })).toThrow(/opt-in per workspace/);
    expect(() => serveDefaults({}, { file: 'w.json', defaults: { policy: { idleTimeoutMs: '3 days' } } })).toThrow('defaults.policy.idleTimeoutMs: "3 days" is not a duration');
    expect(() => serveDefaults({}, { file: 'w.json', defaults: { quota: 1 } })).toThrow('defaults.quota: unknown key');
    expect(() => serveDefaults({}, { file: 'w.json', defaults: { policy: { autostop: { cron: 'at seven', tz: 'UTC' } } } })).toThrow(/policy\.autostop/);
    expect(() => serveDefaults({ maxLifetime: '1h', maxLifetimeWarn: '2h' })).toThrow(/maxLifetimeWarnMs/);
  });
});

describe('printed lines', () => {
  it('the next action: what, in how long, and the reason', () => {
    const next = { action: 'stop' as const, at: T + 12 * 60_000, source: 'idle' as const, reason: 'idle for 30m since agent heartbeat at 13:44:11Z' };
    expect(describeNext(next, T)).toBe('stops in 12m: idle for 30m since agent heartbeat at 13:44:11Z');
    expect(describeNext({ ...next, action: 'dormant', at: T - 1 }, T)).toBe('goes dormant now: idle for 30m since agent heartbeat at 13:44:11Z');
    expect(describeNext(null, T)).toBe('no policy action scheduled');
  });

  it('the idle deadline with its UTC time, the date when it is not within a day', () => {
    expect(describeIdleDeadline(T + 30 * 60_000, T)).toBe('idle deadline in 30m (14:32:11Z)');
    expect(describeIdleDeadline(null, T)).toBe('no idle timeout');
    expect(clockTime(T + 3 * 86_400_000, T)).toBe('2026-12-05T14:02:11Z');
  });

  it('one line per rule, off where null', () => {
    const lines = describePolicy({ ...NO_POLICY, idleTimeoutMs: 1_800_000, maxLifetimeMs: 28_800_000, maxLifetimeWarnMs: 900_000, autostart: { cron: '0 9 * * 1-5', tz: 'Europe/Berlin' } });
    expect(lines).toEqual([
      'idle timeout:          30m',
      'max lifetime:          8h (warning 15m before)',
      'autostart:             "0 9 * * 1-5" Europe/Berlin',
      'autostop:              off',
      'dormant after:         off',
      'delete dormant after:  off',
      'auto-update:           off',
    ]);
  });
});
