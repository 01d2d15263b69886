/**
 * Prebuild claims and what an agent should be told about them.
 *
 * A claim is one conditional UPDATE in the store (exactly one of two concurrent claimers wins), then a
 * restart of the workspace with source `claim`: that cycle is the claim build. The build is complete when
 * a cycle carrying the claim's request, or any later cycle, completes; both facts are written to the store
 * before anyone is told, so an agent that reconnects (or a supervisor that restarts) reads them back.
 * What the agent is told is `decide(view)`, a pure function of that durable state: nothing is
 * fire-and-forget, and an acknowledged claim is never delivered again.
 *
 * @example
 * const claims = new ClaimService({ store });
 * await claims.load();                                   // before the supervisor restores anything
 * const { supervisor } = await openDurableSupervisor({ store, provider, beforeRecovery: (s) => claims.attach(s) });
 * await claims.reconcile();                              // finish claims a crash interrupted
 * await claims.createPrebuild('pb-1', { image: 'x' }, 'python');
 * const { id, ownerId, claimBuildId } = await claims.claim({ pool: 'python', userId: 'alice' });
 */
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import type { Subscription } from 'rxjs';
import type { WorkspaceContext } from '../../machines/workspace.types.ts';
import { ClaimConflictError, errorMessage, WorkspaceDestroyedError, WorkspaceNotFoundError, WsupError } from '../errors.ts';
import type { AgentRefusalCode, AgentWaitReason, ReinitEvent } from '../protocol/agent.ts';
import type { AgentView, Claim } from '../store/claims.ts';
import type { WorkspaceStore } from '../store/store.ts';
import { SYSTEM_OWNER } from '../store/types.ts';
import { UNCLAIMED_KEY } from './policy.ts';
import type { Supervisor } from './supervisor.ts';
import type { SupervisorEvent, WorkspaceView } from './types.ts';

export type AgentDecision =
  | { kind: 'reinit'; event: ReinitEvent }
  | { kind: 'wait'; why: AgentWaitReason }
  | { kind: 'refuse'; code: AgentRefusalCode; message: string };

/** What to tell an agent, from the durable state alone. */
export function decide(view: AgentView): AgentDecision {
  const id = view.workspaceId;
  if (!view.exists) return { kind: 'refuse', code: 'WSUP_NOT_FOUND', message: `workspace ${id} does not exist: stop waiting` };
  if (view.destroyed) return { kind: 'refuse', code: 'WSUP_DESTROYED', message: `workspace ${id} is destroyed: stop waiting` };
  if (!view.prebuild) return { kind: 'refuse', code: 'WSUP_NOT_PREBUILD', message: `workspace ${id} is not a prebuild: no claim will ever reinitialize it, stop waiting` };
  const c = view.claim;
  if (c === null) return { kind: 'wait', why: 'unclaimed' };
  if (c.ackedAt !== null) return { kind: 'wait', why: 'acknowledged' };
  if (c.buildCompletedAt === null) return { kind: 'wait', why: 'claim_build_running' };
  return { kind: 'reinit', event: { workspaceId: id, ownerId: c.ownerId, claimBuildId: c.claimBuildId, reason: 'prebuild_claimed' } };
}

export interface ClaimResult {
  id: string;
  ownerId: string;
  claimBuildId: string;
}

/** A claim: one prebuild by `id`, or any unclaimed one of `pool`, for `userId`. */
export interface ClaimRequest {
  id?: string | undefined;
  pool?: string | undefined;
  userId: string;
  /** The claim build's id (a routed claim's, derived from its label); default: a new one. */
  buildId?: string;
  /** The caller's label and request id: a claim sent again under them is answered with the first one's result. */
  requester?: string | undefined;
  requestId?: string | undefined;
}

/** The claim build id of the claim labelled `label`: the same wherever, and however often, it runs. */
export function claimBuildIdFor(label: string): string {
  return `cb-${createHash('sha256').update(label).digest('hex').slice(0, 32)}`;
}

export interface ClaimServiceOptions {
  store: WorkspaceStore;
  newBuildId?: () => string;
  /** Errors nobody awaits (a claim build that could not be started or recorded); never thrown. */
  onError?: (err: unknown, context: { id?: string; what: string }) => void;
  /** Test seam: runs right after a claim committed, before anything else learns of it. */
  afterCommit?: (claim: Claim) => void | Promise<void>;
  /** The workspaces this service looks after (a cluster shard's); default: every one in the store. */
  select?: (id: string) => boolean;
  /** After every durable claim change of a workspace (claimed, build completed, acked): a cluster tells its other replicas. */
  onChange?: (id: string) => void;
}

const CLAIM_LABEL = 'claim:';
const claimRequester = (buildId: string) => `${CLAIM_LABEL}${buildId}`;
const isClaimRequest = (requester: string, buildId: string) => requester.startsWith(`${claimRequester(buildId)}#`);

/**
 * Callbacks per workspace, woken after each durable claim change of it (the `/agent` channel re-reads
 * its decision then). With `onError`, a throwing callback is reported and the others still run; without,
 * it throws to the waker.
 */
export class ClaimWatchers {
  private readonly byId = new Map<string, Set<() => void>>();

  constructor(private readonly onError?: (err: unknown, id: string) => void) {}

  /** Watch `id`; the returned function stops watching. */
  add(id: string, fn: () => void): () => void {
    let set = this.byId.get(id);
    if (!set) this.byId.set(id, (set = new Set()));
    set.add(fn);
    return () => {
      set.delete(fn);
      if (set.size === 0 && this.byId.get(id) === set) this.byId.delete(id);
    };
  }

  /** Workspaces someone watches. */
  ids(): string[] {
    return [...this.byId.keys()];
  }

  wake(id: string): void {
    for (const fn of [...(this.byId.get(id) ?? [])]) {
      if (!this.onError) fn();
      else {
        try {
          fn();
        } catch (err) {
          this.onError(err, id);
        }
      }
    }
  }

  clear(): void {
    this.byId.clear();
  }
}

export class ClaimService {
  /** Claims whose build has not completed, by workspace: at most one each (claims are keyed by workspace). */
  private readonly awaiting = new Map<string, { buildId: string; cycle: number | null }>();
  private readonly watchers = new ClaimWatchers();
  /** Owner and pool of every live prebuild, for labelling views (operators filter by them). */
  private readonly labels = new Map<string, { owner: string; pool: string | null }>();
  private supervisor: Supervisor | null = null;
  private subscription: Subscription | null = null;
  private readonly newBuildId: () => string;

  constructor(private readonly opts: ClaimServiceOptions) {
    this.newBuildId = opts.newBuildId ?? (() => `cb-${randomUUID()}`);
  }

  /** Read unfinished claims from the store. Call before `attach`, so recovery's completions are matched. */
  async load(): Promise<void> {
    const mine = this.opts.select ?? (() => true);
    for (const c of await this.opts.store.claims.unfinished()) if (mine(c.workspaceId)) this.awaiting.set(c.workspaceId, { buildId: c.claimBuildId, cycle: c.claimCycle });
    for (const l of await this.opts.store.claims.prebuildLabels()) if (mine(l.id)) this.labels.set(l.id, { owner: l.owner, pool: l.pool });
  }

  /** Follow the supervisor's cycles (synchronously: pass it as `beforeRecovery`). */
  attach(supervisor: Supervisor): void {
    this.supervisor = supervisor;
    this.subscription = supervisor.events.subscribe((ev) => this.onEvent(ev));
  }

  /**
   * After recovery: complete claims whose build finished while nobody listened, and start the claim build
   * of a claim that committed but whose restart a crash lost.
   */
  async reconcile(): Promise<void> {
    const sup = this.sup();
    for (const [id, a] of [...this.awaiting]) {
      if (!(await sup.has(id))) continue;
      const view = await sup.get(id);
      if (a.cycle !== null) {
        if (view.state === 'running' && view.cycle >= a.cycle) await this.complete(id, a.buildId);
        continue;
      }
      const inFlight = await this.requestCycle(id, a.buildId);
      if (inFlight !== null) {
        a.cycle = inFlight;
        await this.opts.store.claims.setClaimCycle(id, a.buildId, inFlight);
      } else if (await this.completedInLog(id, a.buildId)) await this.complete(id, a.buildId);
      else await this.startClaimBuild(id, a.buildId, 'claim build resumed after a supervisor restart');
    }
  }

  /** Create (or re-spec) a prebuild: system-owned until claimed, and under no lifecycle policy until then. */
  async createPrebuild(id: string, spec: Record<string, unknown>, pool: string | null): Promise<WorkspaceView> {
    const sup = this.sup();
    if (!(await this.opts.store.claims.registerPrebuild(id, spec, pool))) {
      const row = await this.opts.store.getWorkspace(id);
      if (row?.destroyedAt != null) throw new WorkspaceDestroyedError(id);
      throw new WsupError('WSUP_INVALID_ARGUMENT', `workspace ${id} exists and is not a prebuild: pick another id for the prebuild`, { workspaceId: id });
    }
    const claimed = (this.labels.get(id)?.owner ?? SYSTEM_OWNER) !== SYSTEM_OWNER;
    const view = await sup.create(id, claimed ? spec : { ...spec, [UNCLAIMED_KEY]: true });
    this.labels.set(id, { owner: this.labels.get(id)?.owner ?? SYSTEM_OWNER, pool });
    return this.label(view);
  }

  /** A prebuild's owner (the system owner until claimed); undefined for a workspace that is not a prebuild. */
  ownerOf(id: string): string | undefined {
    return this.labels.get(id)?.owner;
  }

  /** `view` with its prebuild owner and pool, when it is a prebuild; other views unchanged. */
  label<V extends WorkspaceView>(view: V): V {
    const l = this.labels.get(view.id);
    return l ? { ...view, owner: l.owner, pool: l.pool } : view;
  }

  /** Claim one prebuild (by id, or the oldest unclaimed one of a pool) for `userId`, and start its claim build. */
  async claim(req: ClaimRequest): Promise<ClaimResult> {
    if ((req.id === undefined) === (req.pool === undefined)) throw new WsupError('WSUP_INVALID_ARGUMENT', 'claim: pass exactly one of id and pool');
    if (req.userId === SYSTEM_OWNER) throw new WsupError('WSUP_INVALID_ARGUMENT', `claim: ${SYSTEM_OWNER} owns unclaimed prebuilds and cannot claim one`);
    const claims = this.opts.store.claims;
    // A claim sent under a request id gets its build id from its label: sent again, it is found by it.
    const given = req.buildId ?? (req.requestId !== undefined && req.requester !== undefined ? claimBuildIdFor(req.requester) : undefined);
    if (given !== undefined) {
      // The same claim again (a re-send, or a routed command re-run by a new owner after the old one committed it): its answer.
      const done = req.id !== undefined ? await claims.get(req.id) : await claims.byBuildId(given);
      if (done?.claimBuildId === given) return { id: done.workspaceId, ownerId: done.ownerId, claimBuildId: done.claimBuildId };
    }
    const buildId = given ?? this.newBuildId();
    let claim: Claim & { already?: true };
    if (req.id !== undefined) {
      const r = await claims.claim({ workspaceId: req.id, ownerId: req.userId, claimBuildId: buildId });
      if (!r.won) throw await this.whyNot(req.id, r.currentOwner);
      claim = r.claim;
    } else {
      const c = await claims.claimFromPool({ pool: req.pool!, ownerId: req.userId, claimBuildId: buildId });
      if (c === null) throw new ClaimConflictError(`pool ${req.pool} has no unclaimed prebuild: create more prebuilds or retry later`);
      claim = c;
    }
    const id = claim.workspaceId;
    // Made already, under this build id, by the same request's first attempt (perhaps on another replica).
    if (claim.already) return { id, ownerId: claim.ownerId, claimBuildId: claim.claimBuildId };
    this.awaiting.set(id, { buildId, cycle: null });
    this.labels.set(id, { owner: claim.ownerId, pool: this.labels.get(id)?.pool ?? req.pool ?? null });
    await this.opts.afterCommit?.(claim);
    this.notify(id);
    await this.startClaimBuild(id, buildId, `claimed by ${req.userId}`);
    return { id, ownerId: claim.ownerId, claimBuildId: buildId };
  }

  /** What the agent of `id` should be told now. */
  async decision(id: string): Promise<AgentDecision> {
    return decide(await this.opts.store.claims.agentView(id));
  }

  /** The agent's durable ack: false when `claimBuildId` is not this workspace's current claim build. */
  async ack(id: string, claimBuildId: string): Promise<boolean> {
    const ok = await this.opts.store.claims.ack(id, claimBuildId);
    if (ok) this.notify(id);
    return ok;
  }

  /** Be called after every durable claim change of `id` (claimed, build completed, acked). */
  watch(id: string, fn: () => void): () => void {
    return this.watchers.add(id, fn);
  }


  /** The workspace an agent token belongs to, or null. */
  agentWorkspace(token: string): Promise<string | null> {
    return this.opts.store.tokens.agentTokenWorkspace(token);
  }

  /**
   * A `prepareSpec` hook: a fresh agent token for every provider start, its hash committed before the
   * provider sees it (a spec that brings its own token gets that one registered instead).
   */
  readonly prepareSpec = async (input: { id: string; spec: { id: string; [k: string]: unknown } }) => {
    const given = input.spec.agentToken;
    const token = typeof given === 'string' && given !== '' ? given : `wsa_${randomBytes(24).toString('base64url')}`;
    await this.opts.store.tokens.setAgentToken(input.id, token);
    return { ...input.spec, agentToken: token };
  };

  close(): void {
    this.subscription?.unsubscribe();
    this.subscription = null;
    this.watchers.clear();
  }

  private onEvent(ev: SupervisorEvent): void {
    if (ev.type !== 'cycle.completed') return;
    const a = this.awaiting.get(ev.id);
    if (!a) return;
    const carried = ev.cycle.requesters.some((r) => isClaimRequest(r.requester, a.buildId));
    if (carried || (a.cycle !== null && ev.cycle.n >= a.cycle)) {
      this.complete(ev.id, a.buildId).catch((err: unknown) => this.report(err, ev.id, 'recording a completed claim build failed'));
    }
  }

  private async complete(id: string, buildId: string): Promise<void> {
    await this.opts.store.claims.markBuildCompleted(id, buildId);
    if (this.awaiting.get(id)?.buildId === buildId) this.awaiting.delete(id);
    this.notify(id);
  }

  private async startClaimBuild(id: string, buildId: string, reason: string): Promise<void> {
    try {
      await this.releasePolicy(id);
      const r = await this.sup().restart(id, { source: 'claim', reason: `${reason} (claim build ${buildId})`, requester: claimRequester(buildId) });
      const a = this.awaiting.get(id);
      if (r.cycle === null || a?.buildId !== buildId) return;
      a.cycle = r.cycle;
      await this.opts.store.claims.setClaimCycle(id, buildId, r.cycle);
    } catch (err) {
      // The claim itself is committed: a restarted supervisor resumes its build (reconcile).
      this.report(err, id, `starting the claim build ${buildId} failed`);
    }
  }

  /** A claimed prebuild comes under its policy layers (pool, template, server): the unclaimed mark goes. */
  private async releasePolicy(id: string): Promise<void> {
    const sup = this.sup();
    const spec = (await sup.get(id)).spec;
    if (spec[UNCLAIMED_KEY] !== true) return;
    const { [UNCLAIMED_KEY]: _unclaimed, ...rest } = spec;
    await sup.create(id, rest);
  }

  /** The cycle number the claim's request will be satisfied by, if the actor holds it now. */
  /** The cycle that carries (or will carry) the claim build's request, read from the actor (brought into memory if need be). */
  private async requestCycle(id: string, buildId: string): Promise<number | null> {
    const ctx = ((await this.sup().snapshotOf(id)) as unknown as { context: WorkspaceContext }).context;
    if (ctx.cycle?.requests.some((r) => isClaimRequest(r.requester, buildId))) return ctx.cycle.n;
    const waiting = [...ctx.pending, ...(ctx.deferred?.requests ?? [])];
    return waiting.some((r) => isClaimRequest(r.requester, buildId)) ? ctx.cycleCount + 1 : null;
  }

  private async completedInLog(id: string, buildId: string): Promise<boolean> {
    const events = await this.opts.store.events(id, { limit: 500 });
    return events.some((e) => {
      const data = e.data as SupervisorEvent | null;
      return data?.type === 'cycle.completed' && data.cycle.requesters.some((r) => isClaimRequest(r.requester, buildId));
    });
  }

  private async whyNot(id: string, currentOwner: string | null): Promise<WsupError> {
    if (currentOwner !== null) return new ClaimConflictError(`workspace ${id} is already claimed by ${currentOwner}: claim another prebuild or claim from its pool`, id);
    const row = await this.opts.store.getWorkspace(id);
    if (row === null) return new WorkspaceNotFoundError(id);
    if (row.destroyedAt !== null) return new WorkspaceDestroyedError(id);
    return new ClaimConflictError(`workspace ${id} is not a prebuild: only prebuilds (workspace.create with prebuild: true) can be claimed`, id);
  }

  private notify(id: string): void {
    this.watchers.wake(id);
    try {
      this.opts.onChange?.(id);
    } catch (err) {
      this.report(err, id, 'telling others of a claim change failed');
    }
  }

  private sup(): Supervisor {
    if (this.supervisor === null) throw new WsupError('WSUP_INVALID_ARGUMENT', 'claim service is not attached to a supervisor: call attach() first');
    return this.supervisor;
  }

  private report(err: unknown, id: string, what: string): void {
    try {
      this.opts.onError?.(err, { id, what: `${what}: ${errorMessage(err)}` });
    } catch {
      // a throwing reporter must not break claims
    }
  }
}
