/**
 * Lifecycle policy deadlines as pure functions of context (docs/policies.md, "Deadlines and the one timer").
 *
 * The machine keeps one policy deadline, `timing.dueAt = earliestDue(ctx)`; when it comes it asks `nextAction(ctx)`
 * what is due. Whether the workspace is stopped or running is read from context: `timing.runningSince` is set
 * only while running and `timing.stoppedAt` only while idle (both kept by the machine's entry and exit actions).
 *
 * Schedules go through croner (pure calendar math, DST-correct in an IANA zone). Parsed crons are cached by
 * `cron|tz` at module level: context only ever holds the schedule's strings and the next occurrence.
 */
import { Cron } from 'croner';
import { NO_POLICY, type NextAction, type Policy, type PolicyTiming, type Schedule, type WorkspaceContext } from './workspace.types.ts';

/** A start missed while down still runs within this long after it, when no autostop ends its window first. */
export const MISSED_START_WINDOW_MS = 3_600_000;

const crons = new Map<string, Cron>();
const CRON_CACHE_MAX = 1_000;

function cronOf(schedule: Schedule): Cron {
  const key = `${schedule.cron}|${schedule.tz}`;
  let c = crons.get(key);
  if (!c) {
    c = new Cron(schedule.cron, { timezone: schedule.tz });
    if (crons.size >= CRON_CACHE_MAX) crons.delete(crons.keys().next().value!);
    crons.set(key, c);
  }
  return c;
}

/** What is wrong with a schedule, naming the field and the fix; null when it is usable. */
export function scheduleError(schedule: Schedule): string | null {
  if (typeof schedule.tz !== 'string' || schedule.tz === '') return 'tz: give an IANA time zone, e.g. "Europe/Berlin" or "UTC"';
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: schedule.tz });
  } catch {
    return `tz: ${JSON.stringify(schedule.tz)} is not an IANA time zone; use one like "Europe/Berlin" or "UTC"`;
  }
  if (typeof schedule.cron !== 'string' || schedule.cron.trim() === '') return 'cron: give a cron expression, e.g. "0 9 * * 1-5" (09:00 on weekdays)';
  let cron: Cron;
  try {
    cron = new Cron(schedule.cron, { timezone: schedule.tz });
  } catch (err) {
    const why = err instanceof Error ? err.message : String(err);
    return `cron: ${JSON.stringify(schedule.cron)} is not a cron expression (${why}); use five fields "minute hour day month weekday", e.g. "0 9 * * 1-5"`;
  }
  if (cron.nextRun() === null) return `cron: ${JSON.stringify(schedule.cron)} never occurs; pick a date that exists`;
  return null;
}

/**
 * The schedule's first occurrence strictly after `after` (ms), or null when it has none. A schedule that does
 * not parse has none: callers reject it with `scheduleError` first, and the actor must never throw on it.
 */
export function nextOccurrence(schedule: Schedule, after: number): number | null {
  let next: Date | null;
  try {
    next = cronOf(schedule).nextRun(new Date(after));
  } catch {
    return null;
  }
  if (next === null) return null;
  const t = next.getTime();
  return t > after ? t : nextOccurrence(schedule, t);
}

/** Durations, compactly: 45s, 30m, 8h, 14d, 1h30m (sub-second values in ms). */
export function formatDuration(ms: number): string {
  if (ms < 1_000) return `${Math.max(0, Math.round(ms))}ms`;
  let s = Math.round(ms / 1_000);
  const parts: string[] = [];
  for (const [unit, size] of [['d', 86_400], ['h', 3_600], ['m', 60], ['s', 1]] as const) {
    const n = Math.floor(s / size);
    s -= n * size;
    if (n > 0) parts.push(`${n}${unit}`);
  }
  return parts.join('');
}

/** `2026-11-02T10:00:00Z`: a UTC instant to the second. */
export const isoUtc = (at: number): string => new Date(at).toISOString().replace(/\.\d{3}Z$/, 'Z');
/** `14:02:11Z`: the UTC time of day. */
export const timeUtc = (at: number): string => isoUtc(at).slice(11);

const describe = (s: Schedule): string => `${JSON.stringify(s.cron)} ${s.tz}`;
export const scheduledStartLabel = (s: Schedule): string => `scheduled start ${describe(s)}`;

const policyOf = (ctx: WorkspaceContext): Policy => ctx.policy ?? NO_POLICY;
const isRunning = (ctx: WorkspaceContext): boolean => ctx.timing.runningSince != null;
const isStopped = (ctx: WorkspaceContext): boolean => ctx.timing.stoppedAt != null && !isRunning(ctx);

/** When a running workspace stops for idleness if nothing else happens; null when no idle rule applies. */
export function idleDeadline(ctx: WorkspaceContext): number | null {
  const ms = policyOf(ctx).idleTimeoutMs;
  const since = ctx.timing.runningSince;
  if (ms == null || since == null) return null;
  // A snapshot stored before the grace existed has no such config field: no grace.
  return Math.max(since, ctx.timing.lastActivity?.at ?? since) + ms + (ctx.config.activityGraceMs ?? 0);
}

/** When a running workspace reaches its max lifetime; null when none applies. */
export function lifetimeDeadline(ctx: WorkspaceContext): number | null {
  const ms = policyOf(ctx).maxLifetimeMs;
  const since = ctx.timing.runningSince;
  if (ms == null || since == null) return null;
  return since + ms;
}

/** When this run's max-lifetime warning is due; null when there is none or it was already sent. */
export function warningAt(ctx: WorkspaceContext): number | null {
  const warn = policyOf(ctx).maxLifetimeWarnMs;
  const stop = lifetimeDeadline(ctx);
  if (warn == null || stop === null || ctx.timing.warnedFor === ctx.timing.runningSince) return null;
  return Math.max(ctx.timing.runningSince ?? stop, stop - warn);
}

export function warningReason(ctx: WorkspaceContext): string {
  const p = policyOf(ctx);
  return `max lifetime ${formatDuration(p.maxLifetimeMs ?? 0)} ends at ${timeUtc(lifetimeDeadline(ctx) ?? ctx.now)} (running since ${timeUtc(ctx.timing.runningSince ?? ctx.now)})`;
}

/** Every policy action that applies in the current state, each with its time and reason. */
export function candidates(ctx: WorkspaceContext): NextAction[] {
  const p = policyOf(ctx);
  const t = ctx.timing;
  const out: NextAction[] = [];
  if (t.runningSince != null) {
    const idle = idleDeadline(ctx);
    if (idle !== null) {
      const last = t.lastActivity ?? { at: t.runningSince, source: 'start' };
      out.push({ action: 'stop', at: idle, source: 'idle', reason: `idle for ${formatDuration(p.idleTimeoutMs ?? 0)} since ${last.source} at ${timeUtc(last.at)}` });
    }
    const life = lifetimeDeadline(ctx);
    if (life !== null) {
      out.push({ action: 'stop', at: life, source: 'max-lifetime', reason: `max lifetime ${formatDuration(p.maxLifetimeMs ?? 0)} reached (running since ${timeUtc(t.runningSince)})` });
    }
    const stop = t.schedule?.nextStop ?? null;
    if (p.autostop && stop !== null) out.push({ action: 'stop', at: stop, source: 'schedule', reason: `scheduled stop ${describe(p.autostop)} at ${timeUtc(stop)}` });
  } else if (t.stoppedAt != null) {
    const start = t.schedule?.nextStart ?? null;
    if (p.autostart && start !== null) out.push({ action: 'start', at: start, source: 'schedule', reason: `${scheduledStartLabel(p.autostart)} at ${timeUtc(start)}` });
    if (t.dormantSince == null && p.dormantAfterMs != null) {
      const since = Math.max(t.stoppedAt, t.lastActivity?.at ?? t.stoppedAt);
      out.push({ action: 'dormant', at: since + p.dormantAfterMs, source: 'dormancy', reason: `unused for ${formatDuration(p.dormantAfterMs)} since ${isoUtc(since)}` });
    }
    if (t.dormantSince != null && p.deleteDormantAfterMs != null) {
      out.push({
        action: 'destroy',
        at: t.dormantSince + p.deleteDormantAfterMs,
        source: 'dormancy',
        reason: `dormant for ${formatDuration(p.deleteDormantAfterMs)} since ${isoUtc(t.dormantSince)}`,
      });
    }
  }
  return out;
}

/** The earliest policy action (ties: in the order the rules are listed); null when nothing is scheduled. */
export function nextAction(ctx: WorkspaceContext): NextAction | null {
  let best: NextAction | null = null;
  for (const c of candidates(ctx)) if (best === null || c.at < best.at) best = c;
  return best;
}

/**
 * A schedule occurrence that passes in the state it does not act in (an autostop while stopped, an autostart
 * while running) is passed over: the timer wakes for it too, so the next occurrence is computed from then.
 */
export function passOverAt(ctx: WorkspaceContext): number | null {
  if (isRunning(ctx)) return ctx.timing.schedule?.nextStart ?? null;
  if (isStopped(ctx)) return ctx.timing.schedule?.nextStop ?? null;
  return null;
}

/** When the one policy timer must fire: the next action, the warning, or a pass-over; null when never. */
export function earliestDue(ctx: WorkspaceContext): number | null {
  if (!isRunning(ctx) && !isStopped(ctx)) return null;
  const times = [nextAction(ctx)?.at, warningAt(ctx), passOverAt(ctx)].filter((t): t is number => typeof t === 'number');
  return times.length === 0 ? null : Math.min(...times);
}

/**
 * The end of a scheduled start's window: the first autostop after it, or an hour after it without one. A start
 * found due later than that (it was missed while the server was down) is passed over, not run.
 */
export function startWindowEnd(ctx: WorkspaceContext, startAt: number): number {
  const stop = policyOf(ctx).autostop;
  return (stop ? nextOccurrence(stop, startAt) : null) ?? startAt + MISSED_START_WINDOW_MS;
}

/** The schedules' next occurrences after `at`, keeping an occurrence whose schedule did not change. */
export function nextSchedule(
  prev: Policy,
  next: Policy,
  current: PolicyTiming['schedule'],
  at: number,
): PolicyTiming['schedule'] {
  const same = (a: Schedule | null, b: Schedule | null) => a !== null && b !== null && a.cron === b.cron && a.tz === b.tz;
  const occ = (s: Schedule | null) => (s ? nextOccurrence(s, at) : null);
  return {
    nextStart: same(prev.autostart, next.autostart) && current.nextStart !== null ? current.nextStart : occ(next.autostart),
    nextStop: same(prev.autostop, next.autostop) && current.nextStop !== null ? current.nextStop : occ(next.autostop),
  };
}

/** The next action when it is due at `at` (the timer's time); null when nothing is due yet. */
export function dueAction(ctx: WorkspaceContext, at: number): NextAction | null {
  const a = nextAction(ctx);
  return a !== null && a.at <= at ? a : null;
}

/** A due scheduled start that is still inside its window (a start missed while down may not be). */
export function startInWindow(ctx: WorkspaceContext, at: number): boolean {
  const a = dueAction(ctx, at);
  return a !== null && a.action === 'start' && at < startWindowEnd(ctx, a.at);
}

/**
 * The schedules at `at`, after the occurrences that are due are used up: `fired` (the rule that just acted)
 * and the pass-overs of the state (see passOverAt). Each moves to its next occurrence strictly after `at`.
 */
export function advanceSchedule(ctx: WorkspaceContext, at: number, fired: 'start' | 'stop' | null): PolicyTiming['schedule'] {
  const p = policyOf(ctx);
  const { nextStart, nextStop } = ctx.timing.schedule ?? { nextStart: null, nextStop: null };
  const used = (which: 'start' | 'stop', t: number | null) =>
    t !== null && t <= at && (fired === which || (which === 'start' ? isRunning(ctx) : isStopped(ctx)));
  return {
    nextStart: used('start', nextStart) && p.autostart ? nextOccurrence(p.autostart, at) : nextStart,
    nextStop: used('stop', nextStop) && p.autostop ? nextOccurrence(p.autostop, at) : nextStop,
  };
}
