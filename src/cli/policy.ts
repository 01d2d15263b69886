/**
 * Lifecycle policies on the command line: `wsup policy` flags → the workspace's own policy layer, the
 * server defaults of `wsup serve` (flags and the config file's `defaults.policy`), and the lines that show
 * a policy, its next action and an idle deadline. Pure: the commands that call the server are in commands.ts.
 */
import { isRecord, policySchema, type NextAction, type Policy, type PolicyPatch } from '../protocol/index.ts';
import { NO_POLICY } from '../../machines/workspace.types.ts';
import { WsupError } from '../errors.ts';
import { mergePolicy, validatePolicy } from '../supervisor/policy.ts';
import { UsageError } from './context.ts';
import { DURATION_HINT, formatDuration, parseDuration, policyDurationFlag } from './duration.ts';

export interface PolicyFlags {
  idle?: string;
  maxLifetime?: string;
  warn?: string;
  autostart?: string;
  autostop?: string;
  tz?: string;
  dormantAfter?: string;
  deleteDormantAfter?: string;
  autoUpdate?: string;
  clear?: boolean;
}

/** Every rule off: what `--clear` starts from. */
const ALL_OFF: Required<PolicyPatch> = NO_POLICY;

/** The workspace's own layer as the server stored it (`spec.wsupPolicy`); {} when it has none. */
export function ownLayer(spec: Record<string, unknown>): PolicyPatch {
  const parsed = policySchema.safeParse(spec.wsupPolicy ?? {});
  return parsed.success ? parsed.data : {};
}

/** Check every flag's value on its own (before anything is asked of the server): throws UsageError naming the flag. */
export function checkPolicyFlags(f: PolicyFlags): void {
  policyPatch({ ...f, tz: undefined }, {});
}

/**
 * The workspace's new own layer: `own` with the flags applied (`--clear` first turns every rule off).
 * Null when no flag asks for a change. `setPolicy` replaces the layer, so fields no flag names keep their value.
 */
export function policyPatch(f: PolicyFlags, own: PolicyPatch): PolicyPatch | null {
  const out: PolicyPatch = f.clear ? { ...ALL_OFF } : { ...own };
  let changed = f.clear === true;
  const duration = (flag: string, text: string | undefined, field: 'idleTimeoutMs' | 'maxLifetimeMs' | 'maxLifetimeWarnMs' | 'dormantAfterMs' | 'deleteDormantAfterMs') => {
    if (text === undefined) return;
    out[field] = policyDurationFlag(flag, text);
    changed = true;
  };
  duration('--idle', f.idle, 'idleTimeoutMs');
  duration('--max-lifetime', f.maxLifetime, 'maxLifetimeMs');
  duration('--warn', f.warn, 'maxLifetimeWarnMs');
  duration('--dormant-after', f.dormantAfter, 'dormantAfterMs');
  duration('--delete-dormant-after', f.deleteDormantAfter, 'deleteDormantAfterMs');
  const schedule = (text: string | undefined, field: 'autostart' | 'autostop') => {
    if (text === undefined) return;
    changed = true;
    out[field] = text.trim() === 'off' ? null : { cron: text.trim(), tz: f.tz ?? own[field]?.tz ?? 'UTC' };
  };
  schedule(f.autostart, 'autostart');
  schedule(f.autostop, 'autostop');
  if (f.tz !== undefined && f.autostart === undefined && f.autostop === undefined) {
    // --tz alone moves the schedules the workspace already has into that zone.
    if (!out.autostart && !out.autostop) throw new UsageError('--tz needs --autostart or --autostop (the workspace has no schedule of its own)');
    if (out.autostart) out.autostart = { ...out.autostart, tz: f.tz };
    if (out.autostop) out.autostop = { ...out.autostop, tz: f.tz };
    changed = true;
  }
  if (f.autoUpdate !== undefined) {
    const v = f.autoUpdate.trim();
    if (v !== 'on-start' && v !== 'never' && v !== 'off') throw new UsageError(`--auto-update: "${f.autoUpdate}" must be on-start, never or off`);
    out.autoUpdate = v === 'off' ? null : v;
    changed = true;
  }
  return changed ? out : null;
}

/** Server-wide defaults: durations only (`deleteDormantAfterMs` is opt-in per workspace, never a default). */
export interface ServeDefaultFlags {
  idleTimeout?: string;
  maxLifetime?: string;
  maxLifetimeWarn?: string;
  dormantAfter?: string;
}

const DEFAULT_KEYS = ['idleTimeoutMs', 'maxLifetimeMs', 'maxLifetimeWarnMs', 'dormantAfterMs', 'autostart', 'autostop', 'autoUpdate'] as const;

/**
 * The server's default policy layer: the config file's `defaults.policy` (wire field names; durations as
 * ms or as `30m`), then the serve flags over it. Throws UsageError naming the flag or the config path.
 */
export function serveDefaults(f: ServeDefaultFlags, config?: { file: string; defaults: unknown }): PolicyPatch {
  const layer: Record<string, unknown> = {};
  if (config && config.defaults !== undefined) {
    const where = `config ${config.file}: defaults`;
    if (!isRecord(config.defaults)) throw new UsageError(`${where}: must be an object like {"policy": {"idleTimeoutMs": "30m"}}`);
    const extra = Object.keys(config.defaults).filter((k) => k !== 'policy');
    if (extra.length > 0) throw new UsageError(`${where}.${extra[0]}: unknown key: defaults holds only "policy"`);
    const policy = config.defaults.policy ?? {};
    if (!isRecord(policy)) throw new UsageError(`${where}.policy: must be an object of policy fields`);
    for (const [key, value] of Object.entries(policy)) {
      if (key === 'deleteDormantAfterMs') throw new UsageError(`${where}.policy.deleteDormantAfterMs: deleting dormant workspaces is opt-in per workspace, never a server default`);
      if (!(DEFAULT_KEYS as readonly string[]).includes(key)) throw new UsageError(`${where}.policy.${key}: unknown field: use ${DEFAULT_KEYS.join(', ')}`);
      if (key.endsWith('Ms') && typeof value === 'string') {
        const ms = parseDuration(value);
        if (ms === null) throw new UsageError(`${where}.policy.${key}: "${value}" is not a duration: ${DURATION_HINT}`);
        layer[key] = ms;
      } else layer[key] = value;
    }
  }
  const flag = (name: string, text: string | undefined, field: string) => {
    if (text !== undefined) layer[field] = policyDurationFlag(`--${name}`, text);
  };
  flag('idle-timeout', f.idleTimeout, 'idleTimeoutMs');
  flag('max-lifetime', f.maxLifetime, 'maxLifetimeMs');
  flag('max-lifetime-warn', f.maxLifetimeWarn, 'maxLifetimeWarnMs');
  flag('dormant-after', f.dormantAfter, 'dormantAfterMs');
  const checked = policySchema.safeParse(layer);
  if (!checked.success) {
    const issue = checked.error.issues[0]!;
    const field = String(issue.path[0] ?? '');
    throw new UsageError(`default policy ${field}: ${issue.message}${field.endsWith('Ms') ? ' (durations from 1s to 366d)' : ''}`);
  }
  try {
    // Cron, time zone and the rules between fields, as the supervisor checks them.
    validatePolicy(checked.data, { where: 'default', base: mergePolicy() });
  } catch (err) {
    if (err instanceof WsupError) throw new UsageError(err.message);
    throw err;
  }
  return checked.data;
}

/** `14:32:11Z` within a day of `now`, else `2026-12-02T14:32:11Z`. */
export function clockTime(at: number, now: number): string {
  const iso = new Date(at).toISOString().replace(/\.\d{3}Z$/, 'Z');
  return Math.abs(at - now) < 86_400_000 ? iso.slice(11) : iso;
}

const VERB: Record<NextAction['action'], string> = { stop: 'stops', start: 'starts', dormant: 'goes dormant', destroy: 'is destroyed' };

/** `stops in 12m: idle for 30m since agent heartbeat at 14:02:11Z`, or that nothing is scheduled. */
export function describeNext(next: NextAction | null, now: number): string {
  if (next === null) return 'no policy action scheduled';
  const when = next.at <= now ? 'now' : `in ${formatDuration(next.at - now)}`;
  return `${VERB[next.action]} ${when}: ${next.reason}`;
}

/** `idle deadline in 30m (14:32:11Z)`, or `no idle timeout`. */
export function describeIdleDeadline(deadline: number | null, now: number): string {
  if (deadline === null) return 'no idle timeout';
  return `idle deadline in ${formatDuration(Math.max(0, deadline - now))} (${clockTime(deadline, now)})`;
}

const off = (ms: number | null) => (ms === null ? 'off' : formatDuration(ms));
const sched = (s: Policy['autostart']) => (s === null ? 'off' : `"${s.cron}" ${s.tz}`);

/** One line per rule of an effective policy. */
export function describePolicy(p: Policy): string[] {
  return [
    `idle timeout:          ${off(p.idleTimeoutMs)}`,
    `max lifetime:          ${off(p.maxLifetimeMs)}${p.maxLifetimeMs !== null && p.maxLifetimeWarnMs !== null ? ` (warning ${formatDuration(p.maxLifetimeWarnMs)} before)` : ''}`,
    `autostart:             ${sched(p.autostart)}`,
    `autostop:              ${sched(p.autostop)}`,
    `dormant after:         ${off(p.dormantAfterMs)}`,
    `delete dormant after:  ${off(p.deleteDormantAfterMs)}`,
    `auto-update:           ${p.autoUpdate ?? 'off'}`,
  ];
}
