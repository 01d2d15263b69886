/**
 * The pure rules of prebuild pools: which names make valid prebuild ids, how a pool's unclaimed prebuilds
 * are counted from their views, and what a `pool.set` leaves the pool with. The reconciler (pools.ts) acts
 * on them; nothing here sends anything to an actor.
 */
import { WsupError } from '../errors.ts';
import type { PoolView } from '../protocol/model.ts';
import { RETIRED_OWNER, SYSTEM_OWNER, type PoolMember, type PoolRecord } from '../store/index.ts';
import type { PolicyPatch, WorkspaceView } from './types.ts';

/** Most prebuilds one pool may keep, and most pools: a flood of `pool.set` cannot make more than this. */
export const MAX_DESIRED = 1_000;
export const MAX_POOLS = 256;
/** Pool names become prebuild ids `<pool>-<8 hex>`, so they follow the workspace id rule with 9 chars to spare. */
const POOL_NAME = /^[a-z0-9][a-z0-9_.-]{0,53}$/;

/** What `set` asks for. Absent `template`/`spec`/`policy` keep the pool's current ones. */
export interface PoolSetRequest {
  pool: string;
  desired: number;
  template?: string | undefined;
  params?: Record<string, unknown> | undefined;
  spec?: Record<string, unknown> | undefined;
  policy?: PolicyPatch | undefined;
}

/** Turns a template (and its params) or a raw spec into the provider spec: the server's TemplateSet decides. */
export type RenderSpec = (req: { template?: string; params?: Record<string, unknown>; spec?: Record<string, unknown> }) => Record<string, unknown>;

/** How a pool's unclaimed prebuilds are doing, by view. */
export interface Counts {
  ready: WorkspaceView[];
  starting: WorkspaceView[];
  failing: WorkspaceView[];
  /** Idle and not asked to run (a start refused, or a crash between create and ensure): started before new ones are made. */
  stopped: WorkspaceView[];
  /** Taken back by the pool but not destroyed yet (a crash came between). */
  retired: WorkspaceView[];
}


/** Count `members` by their views (`views`: what was read of each; one without a view is left out, e.g. quarantined). */
export function classify(members: readonly PoolMember[], views: ReadonlyMap<string, WorkspaceView>): Counts {
  const c: Counts = { ready: [], starting: [], failing: [], stopped: [], retired: [] };
  for (const m of members) {
    if (m.claimed || (m.owner !== SYSTEM_OWNER && m.owner !== RETIRED_OWNER)) continue; // claimed: never counted, never touched
    const v = views.get(m.id);
    if (v === undefined) continue; // quarantined: reported by recovery
    if (v.state === 'destroyed') continue;
    if (m.owner === RETIRED_OWNER && v.desired !== 'destroyed') c.retired.push(v);
    if (failing(v)) c.failing.push(v);
    else if (m.owner === RETIRED_OWNER || v.desired === 'destroyed') continue; // on its way out
    else if (v.state === 'running') c.ready.push(v);
    else if (v.state === 'starting' || v.state === 'stopping' || v.desired === 'running') c.starting.push(v);
    else c.stopped.push(v);
  }
  return c;
}

export function poolView(row: PoolRecord, c: Counts): PoolView {
  return {
    pool: row.pool,
    desired: row.desired,
    ready: c.ready.length,
    starting: c.starting.length + c.stopped.length,
    failing: c.failing.length,
    lastError: row.lastError,
    backoffUntil: row.backoffUntil,
    template: row.template,
    policy: row.policy,
  };
}

/** A prebuild whose last start failed: in `failed`, or retrying the cycle that just failed. */
export function failing(v: WorkspaceView): boolean {
  return v.state === 'failed' || (v.state !== 'running' && v.lastError !== null && v.lastError.cycle >= v.cycle - 1);
}

export function checkPoolName(pool: string): void {
  if (!POOL_NAME.test(pool)) {
    throw new WsupError(
      'WSUP_INVALID_ARGUMENT',
      `pool ${JSON.stringify(pool)}: a pool name is 1-54 chars of a-z, 0-9, '_', '.', '-', starting with a letter or digit (its prebuilds are named <pool>-<8 hex>, a workspace id of at most 63 chars)`,
    );
  }
}

/** The template, params and spec a `set` leaves the pool with: what it passed, else what the pool had. */
export function definition(req: PoolSetRequest, current: PoolRecord | null, render: RenderSpec): Pick<PoolRecord, 'template' | 'params' | 'spec'> {
  if (req.spec !== undefined) return { template: null, params: null, spec: render({ spec: req.spec }) };
  if (req.template === undefined && req.params === undefined && current !== null && current.template === null) {
    return { template: null, params: null, spec: current.spec };
  }
  const template = req.template ?? current?.template ?? 'default';
  const params = req.params ?? (req.template === undefined ? (current?.params ?? undefined) : undefined);
  return { template, params: params ?? null, spec: render({ template, ...(params ? { params } : {}) }) };
}

export function notFound(pool: string): WsupError {
  return new WsupError('WSUP_NOT_FOUND', `pool ${pool} not found: create it with pool.set (wsup pool set ${pool} --desired N)`);
}
