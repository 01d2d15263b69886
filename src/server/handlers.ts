/**
 * Method implementations over the Supervisor. Params arrive validated (see connection.ts); results are
 * the shapes in `src/protocol/methods.ts`, so the typed client and the server cannot drift apart silently.
 */
import { workspaceMachine } from '../../machines/workspace.machine.ts';
import { PolicyError, WorkspaceNotFoundError, WsupError } from '../errors.ts';
import { isRecord, OWNER_METHODS, paramRoleDenied, type MethodName, type Params, type Results, type Role, type WorkspaceEvent, type WorkspaceView } from '../protocol/index.ts';
import type { ClaimService } from '../supervisor/claims.ts';
import type { PoolService } from '../supervisor/pools.ts';
import { providerDefaultTemplate, SPEC_PARAMS, TemplateSet, updateWorkspace } from '../templates/index.ts';
import type { ServerBackend } from './backend.ts';
import type { Clock } from '../supervisor/clock.ts';
import { ROUTED } from './dispatch.ts';
import { labelOf, RecentRequests, requestKey } from './requests.ts';
import type { EventSink, Hub } from './hub.ts';

/** What a handler needs of the connection that called it (kept narrow so handlers do not import the socket layer). */
export interface Caller extends EventSink {
  readonly id: string;
  /** Who opened the connection (a token's label, or `role:tokenId`): names the requester of its calls. */
  readonly principal: string;
  /** The role of the token the connection authenticated with: what it may pass, and what of a spec it sees. */
  readonly role: Role;
  readonly subscriptions: ReadonlySet<string>;
  notify(method: string, params: unknown): void;
  /** Throws SubscriptionLimitError when one more subscription of `ids` ids passes the connection's caps. */
  admit(ids: number): void;
  subscribed(sub: string, ids: number, batch: boolean): void;
  unsubscribed(sub: string): boolean;
}

/** Where `files.written` goes once the bus is wired; without it the server restarts with source `file-write`. */
export type FilesWrittenHook = (id: string, paths: string[]) => void | Promise<void>;
/** What `workspace.claim` and prebuild creates need: the ClaimService, or a cluster's claims across replicas. */
export type ClaimsApi = Pick<ClaimService, 'createPrebuild' | 'claim' | 'label'>;
/** What `pool.*` needs: the PoolService, or a cluster's pools (each reconciled by one replica). */
export type PoolsApi = Pick<PoolService, 'set' | 'get' | 'list' | 'delete' | 'gauges'>;
/** Store-backed history; without it the server answers from its in-memory ring. */
export type HistoryFn = (id: string, limit: number) => WorkspaceEvent[] | Promise<WorkspaceEvent[]>;

export interface HandlerDeps {
  supervisor: ServerBackend;
  hub: Hub;
  onFilesWritten?: FilesWrittenHook | undefined;
  history?: HistoryFn | undefined;
  claims?: ClaimsApi | undefined;
  /** What `workspace.create` may make; default: one `default` template, the provider's defaults. */
  templates?: TemplateSet | undefined;
  /** Prebuild pools that keep themselves full: enables `pool.*`. */
  pools?: PoolsApi | undefined;
  /** How long answers to request ids are kept (tests). Default: the system clock. */
  clock?: Clock | undefined;
}

type Impl = { [M in MethodName]: (p: Params<M>, conn: Caller) => Promise<Results[M]> };

const DEFAULT_LIST_LIMIT = 1000;
/** A `lagged` notice for an all-workspaces subscription carries at most this many views. */
const RESYNC_CAP = 10_000;

export class Handlers {
  private definition: unknown = null;
  private readonly recent: RecentRequests;
  /** The routing table version each connection last heard of, per shard (at most one entry per shard). */
  private readonly routesTold = new WeakMap<Caller, Map<number, number>>();
  private readonly impl: Impl;
  private readonly templates: TemplateSet;

  constructor(private readonly deps: HandlerDeps) {
    const sup = deps.supervisor;
    this.recent = new RecentRequests(deps.clock ? { clock: deps.clock } : {});
    // The label of a command in the workspace's log: the caller, and its request id when it gave one.
    const who = (conn: Caller, p?: { requestId?: string | undefined }) => labelOf(`rpc:${conn.principal}`, p?.requestId);
    const templates = deps.templates ?? new TemplateSet([providerDefaultTemplate(null)]);
    this.templates = templates;
    this.impl = {
      'workspace.create': async (p, conn) => {
        if (p.prebuild !== true && p.pool !== undefined) throw new WsupError('WSUP_INVALID_ARGUMENT', `workspace.create: pool ${p.pool} needs prebuild: true`, { workspaceId: p.id });
        // Decided before anything is stored or started: a refused request leaves no trace. The policy rides in
        // the spec (the supervisor checks it before it stores anything), so a bad one refuses the create whole.
        const spec = { ...templates.specFor(p, conn.role, p.id), ...(p.policy !== undefined ? { wsupPolicy: p.policy } : {}) };
        if (p.prebuild !== true) return this.label((await ROUTED['workspace.create'](sup, { id: p.id, spec: { ...spec, wsupOwner: conn.principal } }, who(conn))) as WorkspaceView);
        return claimsOf(deps).createPrebuild(p.id, spec, p.pool ?? null);
      },
      'workspace.claim': async (p, conn) =>
        claimsOf(deps).claim({ id: p.id, pool: p.pool, userId: p.userId, ...(p.requestId !== undefined ? { requester: who(conn, p), requestId: p.requestId } : {}) }),
      'workspace.setPolicy': async (p, conn) => this.label((await ROUTED['workspace.setPolicy'](sup, p, who(conn))) as WorkspaceView),
      'workspace.activity': async (p, conn) => (await ROUTED['workspace.activity'](sup, { id: p.id, activitySource: p.source ?? who(conn) }, who(conn))) as Results['workspace.activity'],
      'workspace.update': async (p, conn) => updateWorkspace(sup, templates, p.id, { requester: who(conn, p), role: conn.role, requestId: p.requestId }),
      // A template renders with the caller's role, as `workspace.create` does; a raw spec is the admin's (PARAM_ROLE).
      'pool.set': async (p, conn) => poolsOf(deps).set(p, (req) => templates.specFor(req, conn.role, p.pool)),
      'pool.get': async (p) => poolsOf(deps).get(p.pool),
      'pool.list': async () => ({ items: await poolsOf(deps).list() }),
      'quota.usage': async () => (sup.quotaUsage ? await sup.quotaUsage() : { perOwner: [], perTemplate: [] }),
      'pool.delete': async (p) => poolsOf(deps).delete(p.pool),
      // The id-routed methods: the one table (dispatch.ts) a cluster owner runs them through too.
      'workspace.ensure': async (p, conn) => (await ROUTED['workspace.ensure'](sup, p, who(conn, p))) as Results['workspace.ensure'],
      'workspace.restart': async (p, conn) => (await ROUTED['workspace.restart'](sup, p, who(conn, p))) as Results['workspace.restart'],
      'workspace.stop': async (p, conn) => this.label((await ROUTED['workspace.stop'](sup, p, who(conn, p))) as WorkspaceView),
      'workspace.destroy': async (p, conn) => this.label((await ROUTED['workspace.destroy'](sup, p, who(conn, p))) as WorkspaceView),
      'workspace.get': async (p, conn) => this.label((await ROUTED['workspace.get'](sup, p, who(conn))) as WorkspaceView),
      'workspace.list': async (p) => {
        const limit = p.limit ?? DEFAULT_LIST_LIMIT;
        const items = await sup.list({ ...p, limit: limit + 1 });
        const more = items.length > limit;
        if (more) items.pop();
        return { items: this.labelAll(items), nextCursor: more ? (items.at(-1)?.id ?? null) : null };
      },
      'files.written': async (p, conn) => {
        if (!(await sup.accepts(p.id))) throw new WorkspaceNotFoundError(p.id);
        if (deps.onFilesWritten) {
          // A restart sends its own activity; files handed to the bus count as activity here.
          await sup.activity(p.id, 'files.written');
          await deps.onFilesWritten(p.id, p.paths);
        } else await sup.restart(p.id, { source: 'file-write', reason: filesReason(p.paths), requester: labelOf(`files.written:${conn.principal}`, p.requestId) });
        return { id: p.id, accepted: p.paths.length };
      },
      'events.subscribe': async (p, conn) => {
        const ids = p.ids === undefined ? null : [...new Set(p.ids)];
        conn.admit(ids?.length ?? 0);
        const subscription = deps.hub.subscribe(conn, ids);
        conn.subscribed(subscription, ids?.length ?? 0, p.batch === true);
        return { subscription };
      },
      'events.unsubscribe': async (p, conn) => {
        if (!conn.unsubscribed(p.subscription)) return { ok: false };
        return { ok: deps.hub.unsubscribe(p.subscription) };
      },
      'events.history': async (p) => {
        const limit = p.limit ?? 100;
        const events = deps.history ? await deps.history(p.id, limit) : deps.hub.history(p.id, limit);
        if (events.length === 0 && !(await sup.has(p.id))) throw new WorkspaceNotFoundError(p.id);
        return { id: p.id, events };
      },
      'cluster.members': async () => {
        if (!sup.members) throw new WsupError('WSUP_INVALID_ARGUMENT', 'cluster.members: this server is a single node, not a cluster replica: send every command to it');
        return sup.members();
      },
      'machine.definition': async () => {
        // toJSON walks the whole machine; compute it once per server.
        this.definition ??= JSON.parse(JSON.stringify(workspaceMachine.toJSON())) as unknown;
        return { definition: this.definition };
      },
    };
  }

  call<M extends MethodName>(method: M, params: unknown, conn: Caller): Promise<Results[M]> {
    // The one check of PARAM_ROLE: params that need more than the method's role.
    const denied = paramRoleDenied(conn.role, method, params as object);
    if (denied !== null) {
      const id = (params as { id?: unknown }).id;
      return Promise.reject(new PolicyError(denied.param, `needs role ${denied.needs} (caller is ${conn.role}): operators create from a template`, typeof id === 'string' ? id : undefined));
    }
    const fn = this.impl[method] as (p: unknown, c: Caller) => Promise<Results[M]>;
    const { requestId, id, pool } = params as { requestId?: unknown; id?: unknown; pool?: unknown };
    // A re-send of a request this server has answered (or is running) gets that answer, not a second run.
    const run = typeof requestId === 'string' ? this.recent.run(requestKey(`rpc:${conn.principal}`, method, String(id ?? pool), requestId), () => fn(params, conn)) : fn(params, conn);
    if (typeof id === 'string' && this.deps.supervisor.routeOf && OWNER_METHODS.has(method)) void run.finally(() => this.hintRoute(conn, id)).catch(() => undefined);
    return run.then((r) => redactResult(r, conn.role));
  }

  /** This replica forwarded `id`'s command: tell the connection where its shard lives (once per shard and table version). */
  private hintRoute(conn: Caller, id: string): void {
    const route = this.deps.supervisor.routeOf?.(id);
    if (!route) return;
    let told = this.routesTold.get(conn);
    if (!told) this.routesTold.set(conn, (told = new Map<number, number>()));
    if ((told.get(route.shard) ?? -1) >= route.version) return;
    told.set(route.shard, route.version);
    conn.notify('cluster.route', route);
  }

  /**
   * A prebuild's view with its owner and pool (when claims are wired), and a template-made workspace's with
   * `outdated` (its template has changed since); other views as they are.
   */
  private label<V extends WorkspaceView>(v: V): V {
    const labelled = this.deps.claims ? this.deps.claims.label(v) : v;
    const outdated = this.templates.outdated(labelled.spec);
    return outdated === undefined ? labelled : { ...labelled, outdated };
  }

  private labelAll(views: WorkspaceView[]): WorkspaceView[] {
    return views.map((v) => this.label(v));
  }

  /** Tell a subscriber it missed `dropped` events and give it the current state to start again from. */
  async resync(conn: Caller, sub: string, dropped: number): Promise<void> {
    const ids = this.deps.hub.idsOf(sub);
    const sup = this.deps.supervisor;
    const workspaces: WorkspaceView[] = [];
    if (ids === null) workspaces.push(...(await sup.list({ limit: RESYNC_CAP })));
    else {
      // One read each (a workspace not in memory is read from the store); one that is gone is left out.
      for (const id of ids) {
        try {
          workspaces.push(await sup.get(id));
        } catch (err) {
          if (!(err instanceof WsupError) || (err.code !== 'WSUP_NOT_FOUND' && err.code !== 'WSUP_DESTROYED' && err.code !== 'WSUP_CORRUPT_STATE')) throw err;
        }
      }
    }
    conn.notify('lagged', { subscription: sub, dropped, workspaces: this.labelAll(workspaces).map((v) => redactView(v, conn.role)) });
  }
}

function claimsOf(deps: HandlerDeps): ClaimsApi {
  if (!deps.claims) throw new WsupError('WSUP_INVALID_ARGUMENT', 'prebuilds and claims need the store: run wsup serve without --memory');
  return deps.claims;
}

function poolsOf(deps: HandlerDeps): PoolsApi {
  if (!deps.pools) throw new WsupError('WSUP_INVALID_ARGUMENT', 'prebuild pools need the store: run wsup serve without --memory');
  return deps.pools;
}

function filesReason(paths: string[]): string {
  const shown = paths.slice(0, 3).join(', ');
  return paths.length > 3 ? `files written: ${shown} (+${paths.length - 3} more)` : `files written: ${shown}`;
}

export const REDACTED = '[redacted]';

/**
 * What of a spec a role may see. `agentToken` is never sent: it authenticates an agent on `/agent`, and no
 * /control client needs it back. `env` keeps its names but hides its values below admin: they routinely hold
 * credentials, operators act on workspaces without needing them, and admins are the ones who set them.
 */
export function redactSpec(spec: Record<string, unknown>, role: Role): Record<string, unknown> {
  const params = spec[SPEC_PARAMS];
  const paramsEnv = isRecord(params) && isRecord(params.env);
  if (!('agentToken' in spec) && (role === 'admin' || (!isRecord(spec.env) && !paramsEnv))) return spec;
  const { agentToken: _hidden, ...rest } = spec;
  if (role !== 'admin' && isRecord(rest.env)) rest.env = hideValues(rest.env);
  // The params a template workspace was created with (replayed on update) carry the same env values.
  if (role !== 'admin' && isRecord(params) && isRecord(params.env)) rest[SPEC_PARAMS] = { ...params, env: hideValues(params.env) };
  return rest;
}

const hideValues = (env: Record<string, unknown>) => Object.fromEntries(Object.keys(env).map((k) => [k, REDACTED]));

function redactView<V extends WorkspaceView>(v: V, role: Role): V {
  const spec = redactSpec(v.spec, role);
  return spec === v.spec ? v : { ...v, spec };
}

const isView = (v: unknown): v is WorkspaceView => isRecord(v) && isRecord(v.spec) && typeof v.state === 'string';

/** Every view a result carries (itself, or a list's items) with its spec redacted for the caller's role. */
function redactResult<R>(r: R, role: Role): R {
  const out: unknown = isView(r)
    ? redactView(r, role)
    : isRecord(r) && Array.isArray(r.items)
      ? { ...r, items: r.items.map((v: unknown) => (isView(v) ? redactView(v, role) : v)) }
      : r;
  return out as R;
}

