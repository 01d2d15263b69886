/**
 * The Supervisor owns one root XState actor per workspace and is the only way to reach them.
 *
 * Actors are root actors in a Map sharing one clock, not children of one parent machine: XState copies a
 * parent's children map on every spawn, which makes 100,000 children quadratic (docs/architecture.md, scale note).
 *
 * Every command is one event to one actor; the actor answers synchronously through `emit`, so a command's
 * outcome is known as soon as `send` returns. With a `persist` hook, the answer waits for the write of the
 * transition it caused (ack ⇒ durable).
 */
import { createActor, type Actor, type Snapshot } from 'xstate';
import { Subject, type Observable } from 'rxjs';
import { workspaceMachine } from '../../machines/workspace.machine.ts';
import { idleDeadline, nextAction } from '../../machines/workspace.policy.ts';
import type {
  Cycle,
  LifecycleState,
  RestartSource,
  WorkspaceConfig,
  WorkspaceContext,
  WorkspaceEmitted,
  WorkspaceEvent,
} from '../../machines/workspace.types.ts';
import {
  assertWorkspaceId,
  ShuttingDownError,
  WorkspaceDestroyedError,
  WorkspaceNotFoundError,
  WsupError,
  type WsupErrorCode,
} from '../errors.ts';
import type { Provider } from '../providers/types.ts';
import { systemClock, type Clock } from './clock.ts';
import { Deadlines, type DeadlineSlot } from './deadlines.ts';
import { checkSpecLayers, compactPolicy, effectivePolicy, mergePolicy, migrateTiming, OWN_POLICY_KEY, samePolicy, specLayers, validatePolicy } from './policy.ts';
import { providerActors, type ProviderActorOptions } from './provider-actors.ts';
import { holdsSlot, QuotaLedger, quotaKeys, validateQuota, type QuotaLimits, type QuotaUsage } from './quota.ts';
import { createSummary, type Summary } from './summary.ts';
import type {
  ActivityResult,
  CycleWhy,
  PolicyPatch,
  EnsureResult,
  RestartOptions,
  RestartResult,
  SupervisorEvent,
  UpdateOptions,
  SupervisorLifecycle,
  WorkspaceView,
} from './types.ts';

type WorkspaceActor = Actor<typeof workspaceMachine>;
type Settled = Extract<WorkspaceEmitted, { type: 'settled' }>;
type Answered = Extract<WorkspaceEmitted, { type: 'answered' }>;

export interface PersistWrite {
  id: string;
  state: LifecycleState;
  desired: WorkspaceContext['desired'];
  snapshot: Snapshot<unknown>;
  spec: Record<string, unknown>;
  events: SupervisorEvent[];
}

export interface SupervisorOptions {
  provider: Provider;
  clock?: Clock;
  config?: Partial<WorkspaceConfig>;
  /** Abort a provider call after this long. Default 10 minutes. */
  providerTimeoutMs?: number;
  /** Spec fields used when a workspace is first used without `create`. */
  defaultSpec?: Record<string, unknown>;
  /** Durability hook: resolves once the write is committed. Commands are answered after it. */
  persist?: (write: PersistWrite) => Promise<void>;
  prepareSpec?: ProviderActorOptions['prepareSpec'];
  onProviderCall?: ProviderActorOptions['onCall'];
  /** Called for errors nobody awaits (persist failures, actor crashes); never throws into the process. */
  onError?: (err: unknown, context: { id?: string; what: string }) => void;
  /** The server's default policy: the lowest layer, under a template's or pool's and the workspace's own. */
  policy?: PolicyPatch;
  /** Running limits per owner and per template or pool (a function is read at every check: limits can change). */
  quota?: QuotaLimits | (() => QuotaLimits);
  /** The owner a quota counts a workspace against when it is not `wsupOwner` in spec (a claimed prebuild's owner). */
  ownerOf?: (id: string) => string | null | undefined;
  /** One ledger for several supervisors (a cluster replica's shards); its limits replace `quota`. */
  ledger?: QuotaLedger;
}

interface Entry extends DeadlineSlot {
  actor: WorkspaceActor;
  state: LifecycleState;
  lastWrite: Promise<void> | null;
  buffered: SupervisorEvent[];
  /** The actor's `timing.dueAt` as the deadline queue last saw it. */
  dueAt: number | null;
}

interface Waiter {
  resolve: (s: Settled) => void;
  reject: (e: Error) => void;
}

export class Supervisor {
  readonly summary: Summary;
  private readonly entries = new Map<string, Entry>();
  /**
   * Ids refused without an actor: stored state that could not be restored (reported, never silently
   * dropped), and workspaces destroyed in an earlier life (a destroyed id never comes back).
   */
  private readonly refused = new Map<string, WsupError>();
  private readonly waiters = new Map<string, Waiter>();
  private readonly answers = new Map<string, Extract<WorkspaceEmitted, { type: 'answered' | 'rejected' }>>();
  private readonly events$ = new Subject<SupervisorEvent>();
  private readonly lifecycle$ = new Subject<SupervisorLifecycle>();
  private readonly machine;
  private readonly clock: Clock;
  private readonly serverPolicy: PolicyPatch;
  private readonly ledger: QuotaLedger;
  /** Every actor's policy deadline (`timing.dueAt`), on one clock timeout: POLICY_DUE is sent from here. */
  private readonly deadlines: Deadlines<Entry>;
  private seq = 0;
  private life: SupervisorLifecycle = 'ready';
  private closing: Promise<void> | null = null;

  constructor(private readonly opts: SupervisorOptions) {
    this.clock = opts.clock ?? systemClock;
    this.serverPolicy = compactPolicy(validatePolicy(opts.policy ?? {}, { where: 'server default' }));
    const quota = opts.quota;
    if (typeof quota === 'object') validateQuota(quota);
    this.ledger = opts.ledger ?? new QuotaLedger(typeof quota === 'function' ? quota : () => quota ?? {});
    this.machine = workspaceMachine.provide({
      guards: {
        // A scheduled start obeys the same quota as a requested one.
        startAllowed: ({ context }) => this.quotaRefusal(context.id, context.spec) === null,
      },
      actors: providerActors({
        provider: opts.provider,
        clock: this.clock,
        timeoutMs: opts.providerTimeoutMs ?? 600_000,
        ...(opts.prepareSpec ? { prepareSpec: opts.prepareSpec } : {}),
        ...(opts.onProviderCall ? { onCall: opts.onProviderCall } : {}),
        ...(opts.persist ? { committed: (id: string) => this.entries.get(id)?.lastWrite } : {}),
      }),
    });
    this.summary = createSummary();
    this.deadlines = new Deadlines<Entry>(this.clock, (entry, at) => {
      entry.dueAt = null; // fired: whatever the actor arms next is queued again, even the same time
      entry.actor.send({ type: 'POLICY_DUE', at });
      this.syncDue(entry);
    });
  }

  /** Every transition, request answer and cycle, each carrying its why. Hot: never replays. */
  get events(): Observable<SupervisorEvent> {
    return this.events$.asObservable();
  }

  get lifecycle(): SupervisorLifecycle {
    return this.life;
  }

  get lifecycleChanges(): Observable<SupervisorLifecycle> {
    return this.lifecycle$.asObservable();
  }

  get size(): number {
    return this.entries.size;
  }

  /**
   * Create a workspace (or update the spec of an existing one, used from its next start). Policy layers in
   * spec (`wsupPolicyDefaults`, `wsupPolicy`) are checked first; a spec without `wsupPolicy` keeps the
   * workspace's own layer (it was set with `setPolicy`).
   */
  async create(id: string, spec: Record<string, unknown> = {}): Promise<WorkspaceView> {
    this.assertAccepting();
    assertWorkspaceId(id);
    const previous = this.entries.get(id)?.actor.getSnapshot().context.spec;
    const full: Record<string, unknown> = { ...this.opts.defaultSpec, ...spec, id };
    if (!Object.hasOwn(spec, OWN_POLICY_KEY) && previous && Object.hasOwn(previous, OWN_POLICY_KEY)) full[OWN_POLICY_KEY] = previous[OWN_POLICY_KEY];
    checkSpecLayers(id, full, this.serverPolicy);
    const entry = this.entry(id, full);
    if (entry.state === 'destroyed') throw new WorkspaceDestroyedError(id);
    entry.actor.send({ type: 'SET_SPEC', spec: { ...full, id }, at: this.clock.now() });
    this.syncPolicy(entry);
    await entry.lastWrite;
    return this.view(entry);
  }

  /** Ask for a restart; answered at once with its outcome, or after its cycle with `wait`. */
  async restart(id: string, opts: RestartOptions = {}): Promise<RestartResult> {
    return this.restartFor(id, opts.source ?? 'manual', opts);
  }

  /**
   * A restart with source `update`: the server re-rendered the spec from the template's current version
   * (`create`), and this cycle puts it to use.
   */
  async update(id: string, opts: UpdateOptions = {}): Promise<RestartResult> {
    return this.restartFor(id, 'update', { reason: 'update to the template\'s current version', ...opts });
  }

  /** Get-or-start: resolves once the workspace runs; exactly one caller of a start gets `started: true`. */
  async ensure(id: string, opts: { requester?: string } = {}): Promise<EnsureResult> {
    this.assertAccepting();
    const entry = this.entry(id);
    const requester = this.requesterId(opts.requester ?? 'ensure');
    const { settled } = await this.ask(entry, { type: 'ENSURE', requester, at: this.clock.now() }, { wait: true, activity: opts.requester ?? 'ensure' });
    return { id, started: settled!.starter === requester, endpoint: settled!.endpoint ?? '', state: entry.state };
  }

  /** Stop the workspace; resolves once the provider stop has finished. */
  async stop(id: string, opts: { requester?: string } = {}): Promise<WorkspaceView> {
    return this.finishing(id, 'STOP', opts.requester ?? 'stop');
  }

  /** Stop and forget the workspace for good; resolves once its resources are gone. */
  async destroy(id: string, opts: { requester?: string } = {}): Promise<WorkspaceView> {
    return this.finishing(id, 'DESTROY', opts.requester ?? 'destroy');
  }

  /**
   * Replace the workspace's own policy layer (absent fields inherit the defaults, null turns a rule off):
   * stored in spec as `wsupPolicy`, merged, and sent as SET_POLICY. Resolves once committed. Never starts
   * or stops anything by itself.
   */
  async setPolicy(id: string, policy: PolicyPatch): Promise<WorkspaceView> {
    this.assertAccepting();
    const entry = this.existing(id);
    const spec = entry.actor.getSnapshot().context.spec;
    const [defaults] = specLayers(spec);
    const own = compactPolicy(validatePolicy(policy, { where: `workspace ${id}`, base: mergePolicy(this.serverPolicy, defaults) }));
    entry.actor.send({ type: 'SET_SPEC', spec: { ...spec, [OWN_POLICY_KEY]: own }, at: this.clock.now() });
    this.syncPolicy(entry);
    await entry.lastWrite;
    return this.view(entry);
  }

  /**
   * Activity on the workspace: its idle deadline moves out, and it counts as use against dormancy.
   * Answers at once with the idle deadline (null when no idle rule applies or it is not running).
   */
  activity(id: string, source = 'workspace.activity'): ActivityResult {
    this.assertAccepting();
    if (typeof source !== 'string' || source.length === 0 || source.length > 128) {
      throw new WsupError('WSUP_INVALID_ARGUMENT', `workspace ${id}: activity source ${JSON.stringify(source)} must be a non-empty string of at most 128 characters (e.g. "agent heartbeat")`, { workspaceId: id, detail: { field: 'source' } });
    }
    const entry = this.existing(id);
    entry.actor.send({ type: 'ACTIVITY', source, at: this.clock.now() });
    return { id, idleDeadline: entry.state === 'running' ? idleDeadline(entry.actor.getSnapshot().context) : null };
  }

  /** Running counts per owner and per template or pool, each with its limit (for `wsup status`). */
  quotaUsage(): QuotaUsage {
    return this.ledger.usage();
  }

  /** A liveness signal from a provider or probe. "Died" while running restarts; otherwise ignored. */
  liveness(id: string, alive: boolean, detail: string): void {
    const entry = this.entries.get(id);
    if (!entry || this.life !== 'ready') return;
    entry.actor.send({ type: 'LIVENESS', alive, detail, requester: this.requesterId('liveness'), at: this.clock.now() });
  }

  /** True when the workspace exists and is not destroyed (the bus rejects writes for anything else). */
  accepts(id: string): boolean {
    const entry = this.entries.get(id);
    return entry !== undefined && entry.state !== 'destroyed';
  }

  has(id: string): boolean {
    return this.entries.has(id);
  }

  get(id: string): WorkspaceView {
    assertWorkspaceId(id);
    const bad = this.refused.get(id);
    if (bad) throw bad;
    const entry = this.entries.get(id);
    if (!entry) throw new WorkspaceNotFoundError(id);
    return this.view(entry);
  }

  list(filter: { state?: LifecycleState; limit?: number; cursor?: string } = {}): WorkspaceView[] {
    const ids = [...this.entries.keys()].sort();
    const out: WorkspaceView[] = [];
    for (const id of ids) {
      if (filter.cursor !== undefined && id <= filter.cursor) continue;
      const entry = this.entries.get(id)!;
      if (filter.state !== undefined && entry.state !== filter.state) continue;
      out.push(this.view(entry));
      if (filter.limit !== undefined && out.length >= filter.limit) break;
    }
    return out;
  }

  /**
   * Keep a workspace whose stored state is unreadable out of service, by id: every command on it fails with
   * `error` (a `WSUP_CORRUPT_STATE` naming it) until an operator repairs or deletes the row.
   */
  quarantineWorkspace(id: string, error: WsupError): void {
    this.refused.set(id, error);
  }

  /** Quarantined workspaces and why. */
  quarantined(): Array<{ id: string; error: WsupError }> {
    return [...this.refused].flatMap(([id, error]) => (error.code === 'WSUP_DESTROYED' ? [] : [{ id, error }]));
  }

  /** A workspace destroyed before this supervisor started: every command on its id is refused. */
  rememberDestroyed(id: string): void {
    if (!this.entries.has(id)) this.refused.set(id, new WorkspaceDestroyedError(id));
  }

  /** The actor's persistable snapshot (for the store). */
  persistedSnapshot(id: string): Snapshot<unknown> {
    const entry = this.entries.get(id);
    if (!entry) throw new WorkspaceNotFoundError(id);
    return entry.actor.getPersistedSnapshot();
  }

  /**
   * Bring back a workspace from a persisted snapshot. Its policy deadline (`timing.dueAt`) goes straight into
   * the deadline queue; a deadline that passed while down fires once, at once. REARM is sent only where xstate
   * timers must be raised again (a deferral, the backoff in `failed`) or the snapshot is of an older shape
   * (policy fields at the top level, or none): the machine arms those from context. A provider call that was
   * in flight runs again (start and stop are idempotent).
   */
  restore(id: string, snapshot: Snapshot<unknown>): WorkspaceView {
    assertWorkspaceId(id);
    if (this.entries.has(id)) throw new WsupError('WSUP_INVALID_ARGUMENT', `workspace ${id} is already loaded`, { workspaceId: id });
    let entry: Entry;
    let migrated: boolean;
    try {
      migrated = migrateTiming(snapshot);
      entry = this.spawn(id, undefined, snapshot);
    } catch (err) {
      this.entries.delete(id);
      const message = err instanceof Error ? err.message : String(err);
      throw new WsupError('WSUP_CORRUPT_STATE', `workspace ${id}: stored snapshot cannot be restored by this version of the statechart (${message})`, { workspaceId: id, cause: err });
    }
    // A changed server default reaches the restored workspace before its deadlines are armed again.
    this.syncPolicy(entry);
    const ctx = entry.actor.getSnapshot().context;
    if (migrated || ctx.deferred !== null || entry.state === 'failed') entry.actor.send({ type: 'REARM', at: this.clock.now() });
    this.syncDue(entry);
    return this.view(entry);
  }

  /**
   * Graceful shutdown: refuse new commands, let provider calls in flight finish until `deadlineMs`, then
   * stop every actor (aborting what is still running). Idempotent.
   */
  shutdown(opts: { deadlineMs?: number } = {}): Promise<void> {
    this.closing ??= this.drain(opts.deadlineMs ?? 30_000);
    return this.closing;
  }

  private async drain(deadlineMs: number): Promise<void> {
    this.setLifecycle('draining');
    this.deadlines.close(); // no policy acts while draining
    const busy = [...this.entries.values()].filter((e) => e.state === 'starting' || e.state === 'stopping');
    await new Promise<void>((resolve) => {
      let left = busy.length;
      if (left === 0 || deadlineMs <= 0) return resolve(); // and no deadline timer to hold the process open
      const timer = this.clock.setTimeout(() => resolve(), deadlineMs);
      for (const entry of busy) {
        const from = entry.state;
        const sub = entry.actor.subscribe(() => {
          if (entry.state === from) return;
          sub.unsubscribe();
          if (--left === 0) {
            this.clock.clearTimeout(timer);
            resolve();
          }
        });
      }
    });
    for (const entry of this.entries.values()) entry.actor.stop();
    await Promise.allSettled([...this.entries.values()].flatMap((e) => (e.lastWrite ? [e.lastWrite] : [])));
    for (const [requester, waiter] of this.waiters) {
      this.waiters.delete(requester);
      waiter.reject(new ShuttingDownError());
    }
    this.setLifecycle('stopped');
    this.events$.complete();
    this.lifecycle$.complete();
  }

  private async finishing(id: string, type: 'STOP' | 'DESTROY', label: string): Promise<WorkspaceView> {
    this.assertAccepting();
    assertWorkspaceId(id);
    const entry = this.entries.get(id);
    if (!entry) throw new WorkspaceNotFoundError(id);
    await this.ask(entry, { type, requester: this.requesterId(label), at: this.clock.now() }, { wait: true });
    return this.view(entry);
  }

  private async restartFor(id: string, source: RestartSource | 'update', opts: Omit<RestartOptions, 'source'>): Promise<RestartResult> {
    this.assertAccepting();
    const entry = this.entry(id);
    const label = opts.requester ?? source;
    const requester = this.requesterId(label);
    // RESTART is typed with the callers' sources; `update` is the one the supervisor adds. The statechart
    // carries it into the cycle's why as given and treats it like `manual` in all but name: never deferred.
    const event = { type: 'RESTART', requester, source: source as RestartSource, reason: opts.reason ?? '', at: this.clock.now() } as const;
    const { answer, settled } = await this.ask(entry, event, { wait: opts.wait === true, answered: true, activity: label });
    return { id, outcome: answer!.outcome, cycle: settled ? settled.cycle : answer!.cycle, state: entry.state, requester };
  }

  /**
   * One request to one actor, in the order every command needs: register the waiter (the answer may come
   * during `send`), send, take the synchronous answer or rejection, wait for the write of the transition it
   * caused, then (with `wait`) for the cycle or stop to settle and for the write of the state it settled in.
   * `answered`: the event always gets an immediate answer (a restart's outcome); none is an error.
   * `activity`: a request to run counts as activity from `activity`. A start from not-running is checked
   * against the quota first, in the same synchronous step as the send: a refusal throws and nothing is sent.
   */
  private async ask(
    entry: Entry,
    event: Extract<WorkspaceEvent, { requester: string }>,
    opts: { wait: boolean; answered?: boolean; activity?: string },
  ): Promise<{ answer: Answered | null; settled: Settled | null }> {
    const ctx = entry.actor.getSnapshot().context;
    const id = ctx.id;
    const { requester } = event;
    if ((event.type === 'ENSURE' || event.type === 'RESTART') && entry.state !== 'destroyed' && !holdsSlot(entry.state, ctx.desired)) {
      const refusal = this.quotaRefusal(id, ctx.spec);
      if (refusal) throw refusal;
    }
    if (opts.activity !== undefined && entry.state !== 'destroyed') entry.actor.send({ type: 'ACTIVITY', source: opts.activity, at: this.clock.now() });
    const waiting = opts.wait ? this.waitFor(requester) : null;
    entry.actor.send(event);
    const answer = this.answers.get(requester);
    this.answers.delete(requester);
    if (answer?.type === 'rejected' || (opts.answered && answer === undefined)) {
      this.waiters.delete(requester);
      if (answer?.type === 'rejected') throw toError(id, answer.error);
      throw new WsupError('WSUP_INVALID_ARGUMENT', `workspace ${id} did not accept the request`, { workspaceId: id });
    }
    await entry.lastWrite;
    if (!waiting) return { answer: answer ?? null, settled: null };
    const settled = await waiting;
    await entry.lastWrite; // the state we report is committed too
    return { answer: answer ?? null, settled };
  }

  private track(id: string, state: LifecycleState, ctx: WorkspaceContext): void {
    this.ledger.track(id, { ...quotaKeys(ctx.spec, this.opts.ownerOf?.(id)), holding: holdsSlot(state, ctx.desired) });
  }

  private quotaRefusal(id: string, spec: Record<string, unknown>): WsupError | null {
    return this.ledger.refusal(id, quotaKeys(spec, this.opts.ownerOf?.(id)));
  }

  /** Send SET_POLICY when the merged layers differ from what the actor has. */
  private syncPolicy(entry: Entry): void {
    const ctx = entry.actor.getSnapshot().context;
    if (entry.state === 'destroyed') return;
    const policy = effectivePolicy(this.serverPolicy, ctx.spec);
    if (!samePolicy(policy, ctx.policy)) entry.actor.send({ type: 'SET_POLICY', policy, at: this.clock.now() });
  }

  /** A workspace that exists and is not destroyed, or the error saying why not. */
  private existing(id: string): Entry {
    assertWorkspaceId(id);
    const bad = this.refused.get(id);
    if (bad) throw bad;
    const entry = this.entries.get(id);
    if (!entry) throw new WorkspaceNotFoundError(id);
    if (entry.state === 'destroyed') throw new WorkspaceDestroyedError(id);
    return entry;
  }

  private entry(id: string, spec?: Record<string, unknown>): Entry {
    assertWorkspaceId(id);
    const bad = this.refused.get(id);
    if (bad) throw bad;
    const known = this.entries.get(id);
    if (known) return known;
    const entry = this.spawn(id, spec, undefined);
    this.syncPolicy(entry); // a new workspace starts with the server default (and its spec's layers)
    return entry;
  }

  private spawn(id: string, spec: Record<string, unknown> | undefined, snapshot: Snapshot<unknown> | undefined): Entry {
    const actor = createActor(this.machine, {
      clock: this.clock,
      input: { id, spec: { ...this.opts.defaultSpec, ...spec, id }, config: this.opts.config ?? {}, now: this.clock.now() },
      ...(snapshot ? { snapshot } : {}),
    });
    const entry: Entry = { actor, state: 'idle', lastWrite: null, buffered: [], dueAt: null, deadlineAt: 0, deadlineIndex: -1 };
    this.entries.set(id, entry);
    actor.on('*', (ev) => this.onEmitted(id, entry, ev));
    actor.subscribe({
      next: (snap) => this.onSnapshot(id, entry, snap.value, snap.context),
      error: (err) => this.report(err, { id, what: 'workspace actor crashed' }),
    });
    actor.start();
    const snap = actor.getSnapshot();
    entry.state = snap.value;
    this.summary.trigger.moved({ from: null, to: entry.state });
    this.track(id, entry.state, snap.context); // a restored running workspace holds its slot at once
    return entry;
  }

  private onSnapshot(id: string, entry: Entry, state: LifecycleState, ctx: WorkspaceContext): void {
    this.track(id, state, ctx);
    if (ctx.timing.dueAt !== entry.dueAt) this.syncDue(entry);
    if (state !== entry.state) {
      const from = entry.state;
      entry.state = state;
      this.summary.trigger.moved({ from, to: state });
      this.publish(entry, { type: 'transition', id, from, to: state, at: ctx.now, cycle: ctx.cycle ? why(ctx.cycle) : null });
    }
    if (this.opts.persist) this.write(id, entry, state, ctx);
  }

  /**
   * Queue the actor's policy deadline when it changed. It fires at `dueAt`, or at once when that has passed
   * (POLICY_DUE then carries the time it was queued: a deadline found late acts at the time it was found).
   */
  private syncDue(entry: Entry): void {
    const due = entry.actor.getSnapshot().context.timing.dueAt;
    if (due === entry.dueAt) return;
    entry.dueAt = due;
    this.deadlines.set(entry, due === null ? null : Math.max(due, this.clock.now()));
  }

  private write(id: string, entry: Entry, state: LifecycleState, ctx: WorkspaceContext): void {
    const events = entry.buffered;
    entry.buffered = [];
    const done = this.opts.persist!({ id, state, desired: ctx.desired, snapshot: entry.actor.getPersistedSnapshot(), spec: ctx.spec, events });
    const guarded = done.catch((err: unknown) => {
      this.report(err, { id, what: 'persisting a transition failed' });
      throw err;
    });
    entry.lastWrite = guarded;
    guarded.catch(() => undefined);
  }

  private onEmitted(id: string, entry: Entry, ev: WorkspaceEmitted): void {
    switch (ev.type) {
      case 'answered':
        this.answers.set(ev.requester, ev);
        this.publish(entry, { type: 'request', id, requester: ev.requester, outcome: ev.outcome, cycle: ev.cycle, at: ev.at });
        return;
      case 'rejected': {
        this.answers.set(ev.requester, ev);
        const waiter = this.waiters.get(ev.requester);
        if (waiter) {
          this.waiters.delete(ev.requester);
          waiter.reject(toError(id, ev.error));
        }
        return;
      }
      case 'settled':
        for (const requester of ev.requesters) {
          const waiter = this.waiters.get(requester);
          if (!waiter) continue;
          this.waiters.delete(requester);
          if (ev.ok) waiter.resolve(ev);
          else waiter.reject(toError(id, ev.error!));
        }
        return;
      case 'cycle.started':
        this.publish(entry, { type: 'cycle.started', id, cycle: why(ev.cycle), at: ev.at });
        return;
      case 'cycle.provisioning':
        this.publish(entry, { type: 'cycle.provisioning', id, cycle: ev.cycle, at: ev.at });
        return;
      case 'cycle.completed': {
        const c = ev.cycle;
        const durations = {
          stopMs: c.provisionAt === null || c.provisionAt === c.startedAt ? null : c.provisionAt - c.startedAt,
          startMs: c.provisionAt === null ? null : ev.at - c.provisionAt,
          totalMs: ev.at - c.startedAt,
        };
        this.publish(entry, { type: 'cycle.completed', id, cycle: why(c), endpoint: ev.endpoint, at: ev.at, durations });
        return;
      }
      case 'cycle.failed':
        this.publish(entry, { type: 'cycle.failed', id, cycle: why(ev.cycle), error: ev.error, at: ev.at });
        return;
      case 'policy': {
        if (ev.action === 'warning') {
          this.publish(entry, { type: 'policy.warning', id, source: ev.source, reason: ev.reason, stopAt: ev.stopAt ?? ev.at, at: ev.at });
          return;
        }
        // A start the quota refused says which quota and who holds it (the check ran in this same step).
        const refusal = ev.action === 'skipped' ? this.quotaRefusal(id, entry.actor.getSnapshot().context.spec) : null;
        const reason = refusal ? `${ev.reason}: ${refusal.message}` : ev.reason;
        this.publish(entry, { type: 'policy', id, action: ev.action, source: ev.source, reason, at: ev.at });
        return;
      }
    }
  }

  private publish(entry: Entry, ev: SupervisorEvent): void {
    if (this.opts.persist) entry.buffered.push(ev);
    this.events$.next(ev);
  }

  private waitFor(requester: string): Promise<Settled> {
    const p = new Promise<Settled>((resolve, reject) => this.waiters.set(requester, { resolve, reject }));
    // The caller awaits it; this keeps an early rejection from counting as unhandled meanwhile.
    p.catch(() => undefined);
    return p;
  }

  private requesterId(label: string): string {
    return `${label}#${++this.seq}`;
  }

  private assertAccepting(): void {
    if (this.life !== 'ready') throw new ShuttingDownError();
  }

  private setLifecycle(next: SupervisorLifecycle): void {
    this.life = next;
    this.lifecycle$.next(next);
  }

  private report(err: unknown, context: { id?: string; what: string }): void {
    try {
      this.opts.onError?.(err, context);
    } catch {
      // An error reporter that throws must not take the supervisor down with it.
    }
  }

  private view(entry: Entry): WorkspaceView {
    const ctx = entry.actor.getSnapshot().context;
    return {
      id: ctx.id,
      state: entry.state,
      desired: ctx.desired,
      endpoint: ctx.endpoint,
      cycle: ctx.cycleCount,
      pending: ctx.pending.length,
      deferredUntil: ctx.deferred?.until ?? null,
      backoffUntil: ctx.backoffUntil,
      lastError: ctx.lastError,
      spec: ctx.spec,
      policy: ctx.policy,
      lastActivityAt: ctx.timing.lastActivity?.at ?? null,
      dormant: ctx.timing.dormantSince !== null,
      next: nextAction(ctx),
    };
  }
}

function why(c: Cycle): CycleWhy {
  return {
    n: c.n,
    source: c.source,
    reason: c.reason,
    retry: c.retry,
    requesters: c.requests.map(({ requester, source, reason, outcome, at }) => ({ requester, source, reason, outcome, at })),
    startedAt: c.startedAt,
    provisionAt: c.provisionAt,
  };
}

function toError(id: string, e: { code: string; message: string }): WsupError {
  return new WsupError(e.code as WsupErrorCode, e.message, id ? { workspaceId: id } : {});
}
