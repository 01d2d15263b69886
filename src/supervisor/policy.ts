/**
 * The effective lifecycle policy: layers merged field by field, and a patch checked before it is stored.
 *
 * Layers, lowest first: the server default (`SupervisorOptions.policy`), the template's or pool's default
 * (spec `wsupPolicyDefaults`, set by the server), the workspace's own (spec `wsupPolicy`). A field a layer
 * leaves out inherits from the layer below; `null` turns the rule off.
 *
 * @example
 * mergePolicy({ idleTimeoutMs: 1_800_000 }, { idleTimeoutMs: null }).idleTimeoutMs; // null: off
 * validatePolicy({ autostart: { cron: '0 9 * * *', tz: 'Mars/Olympus' } });        // throws, naming policy.autostart.tz
 */
import { scheduleError } from '../../machines/workspace.policy.ts';
import { FLAT_TIMING_KEYS, NO_POLICY, NO_TIMING, type Policy } from '../../machines/workspace.types.ts';
import { WsupError } from '../errors.ts';
import type { PolicyPatch } from './types.ts';

/** Where the layers live in a workspace's spec. */
export const OWN_POLICY_KEY = 'wsupPolicy';
export const DEFAULT_POLICY_KEY = 'wsupPolicyDefaults';
/**
 * Set on an unclaimed prebuild: no policy applies to it (its pool keeps it warm; an idle stop would only make
 * the pool start it again). Its layers take effect when it is claimed and the mark is removed.
 */
export const UNCLAIMED_KEY = 'wsupUnclaimed';

/** The effective policy of a spec: the server default under its layers, or none for an unclaimed prebuild. */
export function effectivePolicy(server: PolicyPatch, spec: Record<string, unknown>): Policy {
  return spec[UNCLAIMED_KEY] === true ? { ...NO_POLICY } : mergePolicy(server, ...specLayers(spec));
}

const FIELDS = Object.keys(NO_POLICY) as Array<keyof Policy>;
const DURATIONS = ['idleTimeoutMs', 'maxLifetimeMs', 'maxLifetimeWarnMs', 'dormantAfterMs', 'deleteDormantAfterMs'] as const;
const SCHEDULES = ['autostart', 'autostop'] as const;

/** Merge layers, lowest first, over "everything off". */
export function mergePolicy(...layers: Array<PolicyPatch | null | undefined>): Policy {
  const out: Policy = { ...NO_POLICY };
  for (const layer of layers) {
    if (!layer) continue;
    for (const f of FIELDS) if (layer[f] !== undefined) Object.assign(out, { [f]: layer[f] });
  }
  return out;
}

/** Field-by-field equality (schedules by value). */
export function samePolicy(a: Policy, b: Policy): boolean {
  return FIELDS.every((f) => JSON.stringify(a[f]) === JSON.stringify(b[f]));
}

/** The patch without its absent fields: what is stored in spec (JSON has no `undefined`). */
export function compactPolicy(patch: PolicyPatch): PolicyPatch {
  return Object.fromEntries(Object.entries(patch).filter(([, v]) => v !== undefined));
}

/**
 * Check a patch from a caller: known fields, durations, cron and time zone. With `base` (the layers below
 * it), also the rules between fields on the merged result. Throws `WSUP_INVALID_ARGUMENT` naming the field
 * and the fix; `where` prefixes the message (`workspace ws-1`).
 */
export function validatePolicy(patch: unknown, opts: { where?: string; base?: Policy } = {}): PolicyPatch {
  const where = opts.where ? `${opts.where}: ` : '';
  const bad = (field: string, rule: string): never => {
    throw new WsupError('WSUP_INVALID_ARGUMENT', `${where}policy.${field}: ${rule}`, { detail: { field: `policy.${field}` } });
  };
  if (typeof patch !== 'object' || patch === null || Array.isArray(patch)) bad('', 'must be an object of policy fields (e.g. {"idleTimeoutMs": 1800000})');
  const p = patch as Record<string, unknown>;
  for (const key of Object.keys(p)) {
    if (!(FIELDS as string[]).includes(key)) bad(key, `unknown field: use one of ${FIELDS.join(', ')}`);
  }
  for (const f of DURATIONS) {
    const v = p[f];
    if (v === undefined || v === null) continue;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) bad(f, `${JSON.stringify(v)} is not a duration: use whole milliseconds above 0, or null to turn the rule off`);
  }
  for (const f of SCHEDULES) {
    const v = p[f];
    if (v === undefined || v === null) continue;
    if (typeof v !== 'object' || Array.isArray(v)) bad(f, 'must be {"cron": "<5 fields>", "tz": "<IANA zone>"}, or null to turn it off');
    const s = v as Record<string, unknown>;
    if (typeof s.cron !== 'string' || s.cron.trim() === '') bad(`${f}.cron`, 'missing: give a cron expression such as "0 9 * * 1-5"');
    if (typeof s.tz !== 'string' || s.tz.trim() === '') bad(`${f}.tz`, 'missing: give an IANA time zone such as "Europe/Berlin" or "UTC"');
    const extra = Object.keys(s).find((k) => k !== 'cron' && k !== 'tz');
    if (extra !== undefined) bad(`${f}.${extra}`, 'unknown field: a schedule has only cron and tz');
    // The machine's check answers "tz: …" or "cron: …": the part of the schedule at fault, then the fix.
    const err = scheduleError({ cron: s.cron as string, tz: s.tz as string });
    if (err !== null) {
      const part = err.startsWith('tz:') ? 'tz' : 'cron';
      bad(`${f}.${part}`, err.replace(/^(tz|cron):\s*/, ''));
    }
  }
  const au = p.autoUpdate;
  if (au !== undefined && au !== null && au !== 'on-start' && au !== 'never') bad('autoUpdate', `${JSON.stringify(au)}: use "on-start", "never", or null`);
  const checked = p as PolicyPatch;
  const merged = mergePolicy(opts.base, checked);
  if (merged.deleteDormantAfterMs !== null && merged.dormantAfterMs === null) {
    bad('deleteDormantAfterMs', 'needs dormantAfterMs: a workspace is deleted only after it was marked dormant; set dormantAfterMs too, or deleteDormantAfterMs to null');
  }
  if (merged.maxLifetimeWarnMs !== null && merged.maxLifetimeMs !== null && merged.maxLifetimeWarnMs >= merged.maxLifetimeMs) {
    bad('maxLifetimeWarnMs', `${merged.maxLifetimeWarnMs} ms is not before the max-lifetime stop (maxLifetimeMs ${merged.maxLifetimeMs}): warn for less time than the lifetime`);
  }
  return checked;
}

/** The two layers a spec carries (unchecked: they were checked when stored). */
export function specLayers(spec: Record<string, unknown>): [PolicyPatch | undefined, PolicyPatch | undefined] {
  const layer = (v: unknown) => (typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as PolicyPatch) : undefined);
  return [layer(spec[DEFAULT_POLICY_KEY]), layer(spec[OWN_POLICY_KEY])];
}

/** Check the layers a new spec carries over the server default, before anything is stored. */
export function checkSpecLayers(id: string, spec: Record<string, unknown>, server: PolicyPatch): void {
  const defaults = spec[DEFAULT_POLICY_KEY];
  if (defaults !== undefined) validatePolicy(defaults, { where: `workspace ${id} (${DEFAULT_POLICY_KEY})`, base: mergePolicy(server) });
  const own = spec[OWN_POLICY_KEY];
  if (own !== undefined) validatePolicy(own, { where: `workspace ${id}`, base: mergePolicy(server, specLayers(spec)[0]) });
}

/**
 * Bring a stored snapshot to the current context shape, in place: policy fields stored at the top level (before
 * they were nested into `timing`) are folded in. Returns true when it had no `timing`: its deadline was never
 * stored (`dueAt`), so the actor must arm it again (REARM). A snapshot from before policies existed has none of
 * the fields and gets the defaults.
 */
export function migrateTiming(snapshot: unknown): boolean {
  const ctx = (snapshot as { context?: unknown } | null)?.context;
  if (typeof ctx !== 'object' || ctx === null || Array.isArray(ctx)) return false;
  const flat = ctx as Record<string, unknown>;
  if (typeof flat.timing === 'object' && flat.timing !== null) return false;
  const timing: Record<string, unknown> = { ...NO_TIMING };
  for (const key of FLAT_TIMING_KEYS) {
    if (flat[key] !== undefined) timing[key] = flat[key];
    delete flat[key];
  }
  flat.timing = timing;
  return true;
}
