/**
 * Running quotas: how many workspaces one owner, and one template or pool, may have running at once.
 *
 * A workspace holds a slot while it is `starting`, `running`, or `stopping` on its way to running again (a
 * restart's stop half). The ledger is kept up to date from every snapshot the supervisor sees, so a check
 * is a map lookup, done in the same synchronous step as the send that starts the workspace: two
 * concurrent starts can never both pass the last slot.
 *
 * In a cluster one ledger serves every shard's supervisor on a replica (`track`), and also counts what the
 * other replicas run (`trackRemote`, fed by their transitions through the event fan-out). A check counts
 * both; what another replica started in the last few milliseconds (before its event arrived) is not
 * counted yet, so two starts on two replicas inside that window can both take the last slot.
 *
 * @example
 * const ledger = new QuotaLedger({ perOwner: 3 });
 * ledger.track('ws-a', { owner: 'alice', template: 'python', holding: true });
 * ledger.refusal('ws-b', { owner: 'alice', template: 'python' }); // null until alice holds 3
 */
import type { Desired, LifecycleState } from '../../machines/workspace.types.ts';
import { WsupError } from '../errors.ts';
import { SYSTEM_OWNER } from '../store/types.ts';

export interface QuotaLimits {
  /** Running workspaces per owner (`wsupOwner` in spec, or the prebuild's claim owner). Null: no limit. */
  perOwner?: number | null;
  /** Running workspaces per template or pool: one limit for all, or a limit by name. Null: no limit. */
  perTemplate?: Record<string, number> | number | null;
  /** With a `perTemplate` record: the limit of a template it does not name (the server default). */
  defaultPerTemplate?: number | null;
}

/** What a workspace counts against. */
export interface QuotaKeys {
  owner: string | null;
  template: string | null;
}

export interface QuotaCount {
  name: string;
  running: number;
  limit: number | null;
}

/** For `wsup status`: running counts per owner and per template, each with its limit. */
export interface QuotaUsage {
  perOwner: QuotaCount[];
  perTemplate: QuotaCount[];
}

/** Holds a slot: starting, running, or stopping with desired running (the stop half of a restart). */
export function holdsSlot(state: LifecycleState, desired: Desired): boolean {
  return state === 'starting' || state === 'running' || (state === 'stopping' && desired === 'running');
}

/**
 * Read the keys from a spec. `owner` (a prebuild's claim owner) wins over `wsupOwner`. Unclaimed prebuilds
 * belong to the system owner, which no per-owner quota counts: their number is a pool's `desired`.
 */
export function quotaKeys(spec: Record<string, unknown>, owner?: string | null): QuotaKeys {
  const who = owner ?? (typeof spec.wsupOwner === 'string' ? spec.wsupOwner : null);
  const template = spec.wsupTemplate;
  const name = typeof template === 'object' && template !== null && typeof (template as { name?: unknown }).name === 'string' ? (template as { name: string }).name : null;
  const pool = typeof spec.pool === 'string' ? spec.pool : null;
  return { owner: who === SYSTEM_OWNER ? null : who, template: name ?? pool };
}

/** Check limits where they are built (server flags, config): a clear error naming the bad field. */
export function validateQuota(limits: QuotaLimits): QuotaLimits {
  const check = (field: string, v: unknown) => {
    if (v === null || v === undefined) return;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) {
      throw new WsupError('WSUP_INVALID_ARGUMENT', `quota.${field}: ${JSON.stringify(v)} is not a limit: use a whole number of at least 1, or null for no limit`, { detail: { field: `quota.${field}` } });
    }
  };
  check('perOwner', limits.perOwner);
  check('defaultPerTemplate', limits.defaultPerTemplate);
  const t = limits.perTemplate;
  if (typeof t === 'object' && t !== null) for (const [name, v] of Object.entries(t)) check(`perTemplate.${name}`, v);
  else check('perTemplate', t);
  return limits;
}

/** Holders named in the message, and in the error's detail (a long list is cut). */
const SHOWN_HOLDERS = 10;
const DETAIL_HOLDERS = 100;

/** Holds no slot: what a workspace run elsewhere, or stopped, is tracked as (one object for every call). */
const NOT_HOLDING: QuotaKeys & { holding: boolean } = Object.freeze({ owner: null, template: null, holding: false });

/** Who holds slots, by owner and by template. */
class Holders {
  readonly owners = new Map<string, Set<string>>();
  readonly templates = new Map<string, Set<string>>();
  readonly tracked = new Map<string, QuotaKeys>();

  set(id: string, keys: QuotaKeys & { holding: boolean }): void {
    const was = this.tracked.get(id);
    if (keys.holding && was && was.owner === keys.owner && was.template === keys.template) return;
    if (!keys.holding && !was) return;
    if (was) {
      remove(this.owners, was.owner, id);
      remove(this.templates, was.template, id);
      this.tracked.delete(id);
    }
    if (!keys.holding) return;
    add(this.owners, keys.owner, id);
    add(this.templates, keys.template, id);
    this.tracked.set(id, { owner: keys.owner, template: keys.template });
  }
}

export class QuotaLedger {
  private readonly local = new Holders();
  /** Workspaces another replica runs (a cluster): counted, never changed by this process's supervisors. */
  private readonly remote = new Holders();

  constructor(private readonly limits: () => QuotaLimits) {}

  /** Record what `id` holds now: call on every snapshot (cheap when nothing changed). */
  track(id: string, keys: QuotaKeys & { holding: boolean }): void {
    this.remote.set(id, NOT_HOLDING); // run here now: this process knows best
    this.local.set(id, keys);
  }

  /** What a workspace another replica runs holds now (its transition reached this replica). */
  trackRemote(id: string, keys: QuotaKeys & { holding: boolean }): void {
    this.local.set(id, NOT_HOLDING);
    this.remote.set(id, keys);
  }

  /** Workspaces of a shard that moved to another replica: still held, but no longer tracked from here. */
  handOver(select: (id: string) => boolean): void {
    for (const [id, keys] of [...this.local.tracked]) {
      if (!select(id)) continue;
      this.local.set(id, NOT_HOLDING);
      this.remote.set(id, { ...keys, holding: true });
    }
  }

  /** Forget every remote holder (before reading them again from the store). */
  clearRemote(): void {
    for (const id of [...this.remote.tracked.keys()]) this.remote.set(id, NOT_HOLDING);
  }

  /** Why `id` may not start now, or null. Never counts `id` itself. */
  refusal(id: string, keys: QuotaKeys): WsupError | null {
    const limits = this.limits();
    if (keys.owner !== null && limits.perOwner != null) {
      const err = this.over(id, 'per-owner', `owner ${keys.owner}`, this.holders('owners', keys.owner), limits.perOwner, '--max-running-per-owner');
      if (err) return err;
    }
    const limit = keys.template === null ? null : templateLimit(limits, keys.template);
    if (keys.template !== null && limit !== null) {
      return this.over(id, 'per-template', `template ${keys.template}`, this.holders('templates', keys.template), limit, "--max-running-per-template or the template's maxRunning");
    }
    return null;
  }

  usage(): QuotaUsage {
    const limits = this.limits();
    const counts = (kind: 'owners' | 'templates', limit: (name: string) => number | null): QuotaCount[] => {
      const names = new Set([...this.local[kind].keys(), ...this.remote[kind].keys()]);
      return [...names].map((name) => ({ name, running: this.holders(kind, name).size, limit: limit(name) })).sort((a, b) => a.name.localeCompare(b.name));
    };
    return {
      perOwner: counts('owners', () => limits.perOwner ?? null),
      perTemplate: counts('templates', (name) => templateLimit(limits, name)),
    };
  }

  private holders(kind: 'owners' | 'templates', name: string): Set<string> {
    const here = this.local[kind].get(name);
    const there = this.remote[kind].get(name);
    if (!there) return here ?? new Set();
    if (!here) return there;
    return new Set([...here, ...there]);
  }

  private over(id: string, quota: string, who: string, ids: Set<string> | undefined, limit: number, raise: string): WsupError | null {
    const holders = [...(ids ?? [])].filter((h) => h !== id).sort();
    if (holders.length < limit) return null;
    const shown = holders.slice(0, SHOWN_HOLDERS).join(', ') + (holders.length > SHOWN_HOLDERS ? `, and ${holders.length - SHOWN_HOLDERS} more` : '');
    return new WsupError('WSUP_QUOTA', `workspace ${id}: ${who} already runs ${holders.length} of ${limit} allowed (${shown}): stop one or raise ${raise}`, {
      workspaceId: id,
      detail: { quota, limit, holders: holders.slice(0, DETAIL_HOLDERS).join(',') },
    });
  }
}

function templateLimit(limits: QuotaLimits, name: string): number | null {
  const t = limits.perTemplate;
  if (typeof t === 'number') return t;
  if (typeof t === 'object' && t !== null && Object.hasOwn(t, name)) return t[name]!;
  return limits.defaultPerTemplate ?? null;
}

function add(m: Map<string, Set<string>>, key: string | null, id: string): void {
  if (key === null) return;
  let set = m.get(key);
  if (!set) m.set(key, (set = new Set()));
  set.add(id);
}

function remove(m: Map<string, Set<string>>, key: string | null, id: string): void {
  if (key === null) return;
  const set = m.get(key);
  if (!set) return;
  set.delete(id);
  if (set.size === 0) m.delete(key);
}
