/**
 * Lifecycle policy as a person reads it: each rule in words, the next policy action as a live countdown,
 * the short form the workspace list shows, and "last activity … ago". Pure (time is a parameter).
 *
 * @example
 * describePolicy(view.policy);         // ['idle timeout 30m', 'max lifetime 8h (warn 15m before)']
 * nextActionText(view.next, now);      // 'stops in 12:03 — idle for 30m since agent heartbeat at 14:02:11Z'
 * shortNext(view.next, now);           // 'stops 12m'
 */
import type { LifecycleState, NextAction, Policy } from '../../../src/client/index.ts';

const UNITS: Array<[string, number]> = [
  ['d', 86_400_000],
  ['h', 3_600_000],
  ['m', 60_000],
  ['s', 1_000],
];

/** A policy duration the way the rules are written: `30m`, `8h`, `14d`, `1h30m`, `45s`. */
export function formatSpan(ms: number): string {
  if (!Number.isFinite(ms) || ms <= 0) return '0s';
  if (ms < 1000) return `${Math.round(ms)}ms`;
  let rest = Math.round(ms / 1000) * 1000;
  let out = '';
  for (const [unit, size] of UNITS) {
    const n = Math.floor(rest / size);
    if (n > 0) out += `${n}${unit}`;
    rest -= n * size;
  }
  return out;
}

/** Every rule that is on, in words; `['no lifecycle policy']` when none is. */
export function describePolicy(policy: Policy | null | undefined): string[] {
  if (!policy) return ['no lifecycle policy'];
  const out: string[] = [];
  if (policy.idleTimeoutMs !== null) out.push(`idle timeout ${formatSpan(policy.idleTimeoutMs)}`);
  if (policy.maxLifetimeMs !== null) {
    const warn = policy.maxLifetimeWarnMs !== null ? ` (warn ${formatSpan(policy.maxLifetimeWarnMs)} before)` : '';
    out.push(`max lifetime ${formatSpan(policy.maxLifetimeMs)}${warn}`);
  }
  if (policy.autostart) out.push(`autostart ${policy.autostart.cron} ${policy.autostart.tz}`);
  if (policy.autostop) out.push(`autostop ${policy.autostop.cron} ${policy.autostop.tz}`);
  if (policy.dormantAfterMs !== null) out.push(`dormant after ${formatSpan(policy.dormantAfterMs)}`);
  if (policy.deleteDormantAfterMs !== null) out.push(`deleted ${formatSpan(policy.deleteDormantAfterMs)} after dormant`);
  if (policy.autoUpdate === 'on-start') out.push('updates to the new template version on start');
  return out.length > 0 ? out : ['no lifecycle policy'];
}

/** True when at least one rule that can act on its own is on. */
export function hasPolicy(policy: Policy | null | undefined): boolean {
  if (!policy) return false;
  return (
    policy.idleTimeoutMs !== null ||
    policy.maxLifetimeMs !== null ||
    policy.autostart !== null ||
    policy.autostop !== null ||
    policy.dormantAfterMs !== null ||
    policy.deleteDormantAfterMs !== null
  );
}

const VERB: Record<NextAction['action'], { future: string; short: string }> = {
  stop: { future: 'stops', short: 'stops' },
  start: { future: 'starts', short: 'starts' },
  dormant: { future: 'goes dormant', short: 'dormant' },
  destroy: { future: 'is destroyed', short: 'destroy' },
};

/** A policy action is only due in the state it acts from: a stop in `running`, the others in `idle`. */
export function nextAppliesTo(next: NextAction, state: LifecycleState): boolean {
  return next.action === 'stop' ? state === 'running' : state === 'idle';
}

/** Whole seconds left as a clock: `12:03`, `7:59:12`, `13d 23:59:12` (rounded up, so `0:00` only when due). */
export function formatClockCountdown(remainingMs: number): string {
  const total = Math.max(0, Math.ceil(remainingMs / 1000));
  const p = (n: number) => String(n).padStart(2, '0');
  const d = Math.floor(total / 86_400);
  const h = Math.floor((total % 86_400) / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  if (d > 0) return `${d}d ${p(h)}:${p(m)}:${p(s)}`;
  if (h > 0) return `${h}:${p(m)}:${p(s)}`;
  return `${m}:${p(s)}`;
}

/** The next action with its countdown and the rule's reason: `stops in 12:03 — idle for 30m since …`. */
export function nextActionText(next: NextAction | null, now: number): string {
  if (!next) return 'no policy action is scheduled';
  const verb = VERB[next.action].future;
  const remaining = next.at - now;
  const when = remaining > 0 ? `${verb} in ${formatClockCountdown(remaining)}` : `${verb} now`;
  return next.reason ? `${when} — ${next.reason}` : when;
}

/** The list's short form: `stops 12m`, `starts 3h`, `dormant 2d`, `stops 40s`, `stops now`. */
export function shortNext(next: NextAction | null, now: number): string {
  if (!next) return '';
  const verb = VERB[next.action].short;
  const remaining = next.at - now;
  if (remaining <= 0) return `${verb} now`;
  if (remaining < 60_000) return `${verb} ${Math.ceil(remaining / 1000)}s`;
  for (const [unit, size] of UNITS) if (remaining >= size) return `${verb} ${Math.floor(remaining / size)}${unit}`;
  return `${verb} now`;
}

/** `just now`, `45s ago`, `3m ago`, `2h ago`, `14d ago`. */
export function formatAgoShort(at: number, now: number): string {
  const d = now - at;
  if (d < 1000) return 'just now';
  for (const [unit, size] of UNITS) if (d >= size) return `${Math.floor(d / size)}${unit} ago`;
  return 'just now';
}

/** `14:02:11Z`: the UTC clock time the server's reasons use. */
export function formatUtcClock(at: number): string {
  return `${new Date(at).toISOString().slice(11, 19)}Z`;
}
