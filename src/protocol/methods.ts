/**
 * The /control methods: params schema (validated by the server at the edge), result type (for the typed
 * client) and the least role allowed to call each. One table drives dispatch, auth and the client's types.
 *
 * @example
 * const parsed = METHODS['workspace.restart'].params.safeParse({ id: 'ws-1', source: 'manual' });
 */
import { z } from 'zod';
import {
  LIFECYCLE_STATES,
  RESTART_SOURCES,
  workspaceIdSchema,
  type LifecycleState,
  type Outcome,
  type Role,
  type WorkspaceEvent,
  type PoolView,
  type QuotaUsage,
  type WorkspaceView,
} from './model.ts';

/**
 * A caller's id for one request, the same on every re-send of it: the workspace's owner runs the request
 * once and answers re-sends with that answer (for ten minutes). Letters, digits and `_.:-` (a UUID fits).
 */
export const requestIdSchema = z.string().regex(/^[A-Za-z0-9_.:-]{1,128}$/, 'a request id is 1-128 letters, digits or _.:-');
const requestId = requestIdSchema.optional();
const idParams = z.strictObject({ id: workspaceIdSchema });
/** A command about one workspace that changes it: it may carry a request id. */
const commandParams = z.strictObject({ id: workspaceIdSchema, requestId });
const poolSchema = z.string().min(1).max(128);
/** Durations in ms: whole, positive, at most a year. */
const durationSchema = z.number().int().min(1_000).max(366 * 24 * 3_600_000).nullable();
const scheduleSchema = z.strictObject({ cron: z.string().min(1).max(128), tz: z.string().min(1).max(64) }).nullable();

/**
 * A lifecycle policy as callers set it: every field optional (absent: keep/inherit), null = off. Cron
 * expressions and time zones are checked by the server (a clear error names the field).
 */
export const policySchema = z.strictObject({
  idleTimeoutMs: durationSchema.optional(),
  maxLifetimeMs: durationSchema.optional(),
  maxLifetimeWarnMs: durationSchema.optional(),
  autostart: scheduleSchema.optional(),
  autostop: scheduleSchema.optional(),
  dormantAfterMs: durationSchema.optional(),
  deleteDormantAfterMs: durationSchema.optional(),
  autoUpdate: z.enum(['on-start', 'never']).nullable().optional(),
});
export type PolicyPatch = z.input<typeof policySchema>;

export const paramsSchemas = {
  'workspace.create': z.strictObject({
    id: workspaceIdSchema,
    /** A template the server's admin declared (`wsup serve --config`); default `default`. */
    template: z.string().min(1).max(63).optional(),
    /** The template's parameters; each is checked against the template's rules. */
    params: z.record(z.string(), z.unknown()).optional(),
    /** A raw provider spec, bypassing templates: admin-only (see PARAM_ROLE). */
    spec: z.record(z.string(), z.unknown()).optional(),
    /** A prebuild: owned by the system owner until claimed; `pool` groups prebuilds of one template. */
    prebuild: z.literal(true).optional(),
    pool: poolSchema.optional(),
    /** The workspace's own policy, over the template's and the server's defaults. */
    policy: policySchema.optional(),
    requestId,
  }),
  /** Replace the workspace's own policy (fields absent inherit the defaults). Never starts or stops anything by itself. */
  'workspace.setPolicy': z.strictObject({ id: workspaceIdSchema, policy: policySchema, requestId }),
  /** Activity on the workspace: pushes its idle deadline out. `source` names it in the idle stop's reason. */
  'workspace.activity': z.strictObject({ id: workspaceIdSchema, source: z.string().min(1).max(128).optional(), requestId }),
  /** Restart the workspace onto its template's current version: one more request through the statechart. */
  'workspace.update': commandParams,
  /** Create or change a prebuild pool that keeps `desired` prebuilds started and unclaimed. */
  'pool.set': z
    .strictObject({
      pool: poolSchema,
      desired: z.number().int().min(0).max(1_000),
      template: z.string().min(1).max(63).optional(),
      params: z.record(z.string(), z.unknown()).optional(),
      spec: z.record(z.string(), z.unknown()).optional(),
      policy: policySchema.optional(),
    })
    .refine((p) => p.template === undefined || p.spec === undefined, { message: 'pass at most one of template and spec' }),
  'pool.get': z.strictObject({ pool: poolSchema }),
  /** Running counts against each quota (per owner, per template/pool) with their limits. */
  'quota.usage': z.strictObject({}),
  'pool.list': z.strictObject({}),
  /** Stop keeping the pool: its unclaimed prebuilds are destroyed; claimed ones are never touched. */
  'pool.delete': z.strictObject({ pool: poolSchema }),
  'workspace.claim': z
    .strictObject({ id: workspaceIdSchema.optional(), pool: poolSchema.optional(), userId: z.string().min(1).max(256), requestId })
    .refine((p) => (p.id === undefined) !== (p.pool === undefined), { message: 'pass exactly one of id and pool' }),
  'workspace.ensure': commandParams,
  'workspace.restart': z.strictObject({
    id: workspaceIdSchema,
    source: z.enum(RESTART_SOURCES).optional(),
    reason: z.string().max(1024).optional(),
    wait: z.boolean().optional(),
    requestId,
  }),
  'workspace.stop': commandParams,
  'workspace.destroy': commandParams,
  'workspace.get': idParams,
  'workspace.list': z.strictObject({
    state: z.enum(LIFECYCLE_STATES).optional(),
    limit: z.number().int().min(1).max(10_000).optional(),
    cursor: z.string().max(64).optional(),
  }),
  'files.written': z.strictObject({ id: workspaceIdSchema, paths: z.array(z.string().min(1).max(4096)).min(1).max(10_000), requestId }),
  'events.subscribe': z.strictObject({
    ids: z.array(workspaceIdSchema).max(10_000).optional(),
    /** Receive this subscription's notifications as JSON-RPC batches (arrays), several per frame. Default: one object per frame. */
    batch: z.boolean().optional(),
  }),
  'events.unsubscribe': z.strictObject({ subscription: z.string().max(64) }),
  'events.history': z.strictObject({ id: workspaceIdSchema, limit: z.number().int().min(1).max(10_000).optional() }),
  'machine.definition': z.strictObject({}),
  /** Where each shard of a cluster lives, for clients that send each command to its owner. */
  'cluster.members': z.strictObject({}),
} as const;

export type MethodName = keyof typeof paramsSchemas;

/**
 * Methods about one workspace that its owner answers: a cluster replica forwards them to the owner of the
 * workspace's shard, and a routing client sends them there itself.
 */
export const OWNER_METHODS: ReadonlySet<MethodName> = new Set<MethodName>([
  'workspace.create',
  'workspace.claim',
  'workspace.ensure',
  'workspace.restart',
  'workspace.stop',
  'workspace.destroy',
  'workspace.get',
  'workspace.setPolicy',
  'workspace.activity',
  'workspace.update',
  'files.written',
]);

/**
 * A cluster's routing table: its replicas with the URL each serves clients on, and each shard's owner
 * (`owners[shard]`, null while a shard is between owners). `version` grows whenever a shard changes owner
 * (it is the sum of the shards' fencing epochs): a client that saw a smaller one routes from stale data.
 */
export interface ClusterMembers {
  /** The replica that answered. */
  replica: string;
  shards: number;
  version: number;
  members: Array<{ replica: string; url: string | null; leaving: boolean; shards: number }>;
  owners: Array<string | null>;
}
export type Params<M extends MethodName> = z.input<(typeof paramsSchemas)[M]>;

export interface Results {
  'workspace.create': WorkspaceView;
  'workspace.claim': { id: string; ownerId: string; claimBuildId: string };
  'workspace.setPolicy': WorkspaceView;
  'workspace.activity': { id: string; idleDeadline: number | null };
  'workspace.update': { id: string; outcome: Outcome; cycle: number | null; state: LifecycleState };
  'pool.set': PoolView;
  'pool.get': PoolView;
  'pool.list': { items: PoolView[] };
  'quota.usage': QuotaUsage;
  'pool.delete': { pool: string; destroyed: number };
  'workspace.ensure': { id: string; started: boolean; endpoint: string; state: LifecycleState };
  'workspace.restart': { id: string; outcome: Outcome; cycle: number | null; state: LifecycleState };
  'workspace.stop': WorkspaceView;
  'workspace.destroy': WorkspaceView;
  'workspace.get': WorkspaceView;
  'workspace.list': { items: WorkspaceView[]; nextCursor: string | null };
  'files.written': { id: string; accepted: number };
  'events.subscribe': { subscription: string };
  'events.unsubscribe': { ok: boolean };
  /** `truncated`: older events were left out so the reply fits one frame; ask with a smaller `limit` for fewer. */
  'events.history': { id: string; events: WorkspaceEvent[]; truncated?: boolean };
  'machine.definition': { definition: unknown };
  'cluster.members': ClusterMembers;
}
export type Result<M extends MethodName> = Results[M];

/** Least role for each method. Viewers read and watch; operators also command; admins do everything. */
export const METHOD_ROLE: Record<MethodName, Role> = {
  'workspace.create': 'operator',
  'workspace.claim': 'operator',
  'workspace.setPolicy': 'operator',
  'workspace.activity': 'operator',
  'workspace.update': 'operator',
  'pool.set': 'operator',
  'pool.delete': 'operator',
  'pool.get': 'viewer',
  'pool.list': 'viewer',
  'quota.usage': 'viewer',
  'workspace.ensure': 'operator',
  'workspace.restart': 'operator',
  'workspace.stop': 'operator',
  'workspace.destroy': 'operator',
  'files.written': 'operator',
  'workspace.get': 'viewer',
  'workspace.list': 'viewer',
  'events.subscribe': 'viewer',
  'events.unsubscribe': 'viewer',
  'events.history': 'viewer',
  'machine.definition': 'viewer',
  'cluster.members': 'viewer',
};

/**
 * Params that need more than their method's role. A raw spec runs whatever it names as the server's user,
 * so it is the admin's alone; operators pick a template instead.
 */
export const PARAM_ROLE: { [M in MethodName]?: Partial<Record<keyof Params<M>, Role>> } = {
  'workspace.create': { spec: 'admin' },
  'pool.set': { spec: 'admin' },
};

const RANK: Record<Role, number> = { viewer: 0, operator: 1, admin: 2 };
export const roleAtLeast = (role: Role, least: Role): boolean => RANK[role] >= RANK[least];
export const roleAllows = (role: Role, method: MethodName): boolean => roleAtLeast(role, METHOD_ROLE[method]);

/** The first param of `params` that `role` may not pass to `method`, with the role it needs; null when none. */
export function paramRoleDenied(role: Role, method: MethodName, params: object): { param: string; needs: Role } | null {
  const table = (PARAM_ROLE[method] ?? {}) as Record<string, Role | undefined>;
  for (const [param, needs] of Object.entries(table)) {
    if (needs !== undefined && (params as Record<string, unknown>)[param] !== undefined && !roleAtLeast(role, needs)) return { param, needs };
  }
  return null;
}

export const METHOD_NAMES = Object.keys(paramsSchemas) as MethodName[];
export const isMethodName = (m: string): m is MethodName => Object.hasOwn(paramsSchemas, m);

/** Server → client notifications. */
export interface Notifications {
  /** One supervisor event for a subscription. */
  event: { subscription: string; event: WorkspaceEvent };
  /**
   * Events were dropped because the subscriber read too slowly (or one was bigger than a frame); `workspaces`
   * is the state to resync from. `complete: false`: the views were cut to fit one frame, list the rest.
   */
  lagged: { subscription: string; dropped: number; workspaces: WorkspaceView[]; complete?: false };
  /**
   * A cluster replica forwarded a command of this connection to the shard's owner: where the shard lives
   * (as of routing table `version`), so a routing client sends the next one there. Once per shard and version.
   */
  'cluster.route': ClusterRoute;
}

/** Where one shard lives: its owner and the URL clients reach it on (null: not advertised). */
export interface ClusterRoute {
  shard: number;
  replica: string;
  url: string | null;
  version: number;
}
