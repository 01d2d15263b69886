/** The pure policy functions (machines/workspace.policy.ts) on hand-built contexts. */
import { initialTransition } from 'xstate';
import { describe, expect, it } from 'vitest';
import { workspaceMachine } from '../../machines/workspace.machine.ts';
import { earliestDue, formatDuration, idleDeadline, lifetimeDeadline, nextAction, warningAt } from '../../machines/workspace.policy.ts';
import { NO_TIMING, type PolicyTiming, type WorkspaceContext } from '../../machines/workspace.types.ts';
import { DAY, HOUR, MIN, policy } from './policy-rig.ts';

const T = Date.parse('2026-11-16T06:00:00Z');

type Over = Partial<Omit<WorkspaceContext, 'timing'>> & Partial<PolicyTiming>;
const isTiming = ([key]: [string, unknown]): boolean => key in NO_TIMING;

/** `c` with `over` applied, its policy fields (PolicyTiming's) going into `timing`. */
function retime(c: WorkspaceContext, over: Over): WorkspaceContext {
  const entries = Object.entries(over);
  const timing = Object.fromEntries(entries.filter(isTiming));
  return { ...c, ...Object.fromEntries(entries.filter((e) => !isTiming(e))), timing: { ...c.timing, ...timing } };
}

function ctx(over: Over): WorkspaceContext {
  const [s] = initialTransition(workspaceMachine, { id: 'ws-1', now: T });
  return retime(s.context, over);
}

describe('formatDuration', () => {
  it('writes durations compactly', () => {
    expect([45_000, 30 * MIN, 8 * HOUR, 14 * DAY, 90 * MIN, DAY + HOUR + MIN + 1_000, 250].map(formatDuration)).toEqual(['45s', '30m', '8h', '14d', '1h30m', '1d1h1m1s', '250ms']);
  });
});

describe('deadlines from context', () => {
  const running = (over: Over = {}) =>
    ctx({ runningSince: T, stoppedAt: null, lastActivity: { at: T + 8_531_000, source: 'agent heartbeat' }, now: T + 9 * MIN, ...over });

  it('idle and max-lifetime deadlines count from the last activity and the current start', () => {
    const c = running({ policy: policy({ idleTimeoutMs: 30 * MIN, maxLifetimeMs: 8 * HOUR }) });
    expect(idleDeadline(c)).toBe(T + 8_531_000 + 30 * MIN);
    expect(lifetimeDeadline(c)).toBe(T + 8 * HOUR);
    expect(nextAction(c)).toEqual({ action: 'stop', at: T + 8_531_000 + 30 * MIN, source: 'idle', reason: 'idle for 30m since agent heartbeat at 08:22:11Z' });
  });

  it('names the max-lifetime rule and the start it counts from', () => {
    const c = running({ policy: policy({ maxLifetimeMs: 8 * HOUR }) });
    expect(nextAction(c)).toMatchObject({ at: T + 8 * HOUR, source: 'max-lifetime', reason: 'max lifetime 8h reached (running since 06:00:00Z)' });
  });

  it('earliestDue includes the warning; once sent for this run it no longer does', () => {
    const c = running({ policy: policy({ maxLifetimeMs: 8 * HOUR, maxLifetimeWarnMs: 15 * MIN }) });
    expect(warningAt(c)).toBe(T + 8 * HOUR - 15 * MIN);
    expect(earliestDue(c)).toBe(T + 8 * HOUR - 15 * MIN);
    const warned = retime(c, { warnedFor: T });
    expect(warningAt(warned)).toBeNull();
    expect(earliestDue(warned)).toBe(T + 8 * HOUR);
  });

  it('stopped: dormancy counts from the later of the stop and the last activity; destroy only when opted in', () => {
    const stopped = ctx({ stoppedAt: Date.parse('2026-11-02T10:00:00Z'), lastActivity: { at: Date.parse('2026-11-01T10:00:00Z'), source: 'cli:alice' }, policy: policy({ dormantAfterMs: 14 * DAY }) });
    expect(nextAction(stopped)).toEqual({ action: 'dormant', at: Date.parse('2026-11-16T10:00:00Z'), source: 'dormancy', reason: 'unused for 14d since 2026-11-02T10:00:00Z' });
    const dormant = retime(stopped, { dormantSince: Date.parse('2026-11-16T10:00:00Z') });
    expect(nextAction(dormant)).toBeNull();
    expect(nextAction({ ...dormant, policy: policy({ dormantAfterMs: 14 * DAY, deleteDormantAfterMs: 30 * DAY }) })).toMatchObject({ action: 'destroy', at: Date.parse('2026-12-16T10:00:00Z') });
  });

  it('nothing is due while a call is in flight (neither running nor stopped)', () => {
    const busy = ctx({ runningSince: null, stoppedAt: null, policy: policy({ idleTimeoutMs: MIN, dormantAfterMs: MIN }), schedule: { nextStart: T, nextStop: T } });
    expect(nextAction(busy)).toBeNull();
    expect(earliestDue(busy)).toBeNull();
  });

  it('a new workspace is stopped since it was created; running rules do not apply to it', () => {
    const fresh = ctx({ policy: policy({ idleTimeoutMs: MIN, dormantAfterMs: DAY }) });
    expect(fresh.timing.stoppedAt).toBe(T);
    expect(idleDeadline(fresh)).toBeNull();
    expect(nextAction(fresh)).toMatchObject({ action: 'dormant', at: T + DAY });
  });
});
