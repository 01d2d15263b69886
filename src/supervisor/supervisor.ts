/**
 * The Supervisor owns one root XState actor per workspace and is the only way to reach them.
 *
 * Actors are root actors in a Map sharing one clock, not children of one parent machine: XState copies a
 * parent's children map on every spawn, which makes 100,000 children quadratic (docs/architecture.md, scale note).
 *
 * Every command is one event to one actor; the actor answers synchronously through `emit`, so a command's
 * outcome is known as soon as `send` returns. With a `persist` hook, the answer waits for the write of the
 * transition it caused (ack ⇒ durable).
 *
 * With a `cold` store an actor lives in memory only while it matters: one with nothing to do (no provider
 * call, request, deferral or waiter, no deadline in the next `wakeAheadMs`) is dropped after
 * `deactivateAfterMs` of quiet — its state is already in the store — and activated again from the store by
 * the next command, provider event, bus delivery or due deadline, once however many arrive together. One
 * scheduler reads the store's index of due times and activates what comes due.
 */
import { createActor, type Actor, type Snapshot } from 'xstate';
import { Subject, type Observable } from 'rxjs';
import { workspaceMachine } from '../../machines/workspace.machine.ts';
import { idleDeadline, nextAction } from '../../machines/workspace.policy.ts';
import {
  LIFECYCLE_STATES,
  type Cycle,
  type LifecycleState,
  type RestartSource,
  type WorkspaceConfig,
  type WorkspaceContext,
  type WorkspaceEmitted,
  type WorkspaceEvent,
} from '../../machines/workspace.types.ts';
import {
  assertWorkspaceId,
  WORKSPACE_ID,
  ShuttingDownError,
  WorkspaceDestroyedError,
  WorkspaceNotFoundError,
  WsupError,
  type WsupErrorCode,
} from '../errors.ts';
import type { BusSink } from '../bus/types.ts';
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
  /** The earliest of the policy deadline, a deferred restart's time and a backoff's end (null: none). */
  nextDueAt: number | null;
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
  /** Where workspaces not in memory are read from: enables deactivation (needs `persist`, which writes there). */
  cold?: ColdStore;
  /** Quiet time after which an actor with nothing to do leaves memory. Default 5 minutes; 0 keeps every actor. */
  deactivateAfterMs?: number;
  /** Workspaces due within this long are activated ahead of their time, and are not deactivated. Default 60 s. */
  wakeAheadMs?: number;
}

/** A workspace's stored row, as activation reads it. */
export interface StoredWorkspace {
  id: string;
  state: LifecycleState;
  /** Destroyed, by its columns or its state. */
  destroyed: boolean;
  /** The persisted snapshot; null for a workspace whose actor never ran. */
  snapshot: Snapshot<unknown> | null;
  spec: Record<string, unknown>;
  /** The due time the store indexes (`PersistWrite.nextDueAt` as last written). */
  nextDueAt: number | null;
}

/** The store as the supervisor reads workspaces that are not in memory. */
export interface ColdStore {
  /** The row of `id`, or null when none was stored. Throws `WSUP_CORRUPT_STATE` for a row that cannot be read. */
  load(id: string): Promise<StoredWorkspace | null>;
  /** Live workspaces in id order after `cursor`, as stored. */
  page(filter: { state?: LifecycleState; limit: number; cursor?: string }): Promise<StoredWorkspace[]>;
  /** Live workspaces with a due time in (`after`, `before`] (ms) in (due, id) order, after the `from` key on the same page walk. */
  due(window: { after: number; before: number; from?: { at: number; id: string } }, limit: number): Promise<Array<{ id: string; at: number }>>;
}

export const DEFAULT_DEACTIVATE_AFTER_MS = 5 * 60_000;
export const DEFAULT_WAKE_AHEAD_MS = 60_000;
const WAKE_PAGE = 1000;
const WAKE_CONCURRENCY = 32;
/** Most actors one sweep drops before it yields (the rest go in the sweeps right after). */
const SWEEP_CHUNK = 2_000;

interface Entry extends DeadlineSlot {
  actor: WorkspaceActor;
  state: LifecycleState;
  lastWrite: Promise<void> | null;
  buffered: SupervisorEvent[];
  /** The actor's `timing.dueAt` as the deadline queue last saw it. */
  dueAt: number | null;
  /** When the actor last moved or was asked something (the supervisor's clock). */
  touchedAt: number;
  /** Writes of its transitions not yet committed, and whether the last one failed (then it stays in memory). */
  writes: number;
  writeFailed: boolean;
  /** Commands between their send and their answer. */
  waiting: number;
  /** Deactivated: dropped from memory; whoever still holds the entry must activate the workspace again. */
  dead: boolean;
  /** Inside `actor.start()` of a restored snapshot. */
  restoring: boolean;
}

/**
 * A request waiting for its cycle or stop to settle. A settlement that comes before anyone awaits it (during
 * the send, or while the transition's write is awaited) is kept, so a request answered at once needs no promise.
 */
class Waiter {
  private outcome: { settled: Settled } | { error: Error } | null = null;
  private resolve: ((s: Settled) => void) | null = null;
  private reject: ((e: Error) => void) | null = null;

  settle(s: Settled): void {
    if (this.resolve) this.resolve(s);
    else this.outcome ??= { settled: s };
  }

  fail(e: Error): void {
    if (this.reject) this.reject(e);
    else this.outcome ??= { error: e };
  }

  /** The settlement if it came already (an error throws), else a promise of it. */
  result(): Settled | Promise<Settled> {
    const o = this.outcome;
    if (o === null) return new Promise<Settled>((resolve, reject) => ((this.resolve = resolve), (this.reject = reject)));
    if ('error' in o) throw o.error;
    return o.settled;
  }
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
  /** Activations from the store in flight: every caller for the same id awaits the same one. */
  private readonly activating = new Map<string, Promise<'loaded' | 'absent' | 'destroyed'>>();
  private readonly quietMs: number;
  private readonly wakeAheadMs: number;
  private sweepTimer: unknown = null;
  private wakeTimer: unknown = null;
  /** The scheduler has activated every workspace due up to here. */
  private wokenUpTo = -Infinity;
  private waking: Promise<void> | null = null;
  private deactivations = 0;
  private sink: BusSink | null = null;
  private activations = 0;

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
    if (opts.cold && !opts.persist) throw new WsupError('WSUP_INVALID_ARGUMENT', 'Supervisor: a cold store needs the persist hook that writes to it');
    this.quietMs = opts.cold ? nonNegative('deactivateAfterMs', opts.deactivateAfterMs ?? DEFAULT_DEACTIVATE_AFTER_MS) : 0;
    this.wakeAheadMs = nonNegative('wakeAheadMs', opts.wakeAheadMs ?? DEFAULT_WAKE_AHEAD_MS);
    this.deadlines = new Deadlines<Entry>(this.clock, (entry, at) => {
      entry.dueAt = null; // fired: whatever the actor arms next is queued again, even the same time
      entry.actor.send({ type: 'POLICY_DUE', at });
      this.syncDue(entry);
    });
    this.armWake();
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

  /** Workspaces in memory (all of them without a cold store). */
  get size(): number {
    return this.entries.size;
  }

  /** The server's default policy layer, as validated. */
  get defaultPolicy(): PolicyPatch {
    return this.serverPolicy;
  }

  /** Resolves once no activation from the store and no scheduler pass is in flight (a test on a simulated clock waits here). */
  async settled(): Promise<void> {
    while (this.waking !== null || this.activating.size > 0) await Promise.allSettled([...(this.waking ? [this.waking] : []), ...this.activating.values()]);
  }

  /** Resolves once every write made so far of the actors in memory has landed: true when every one committed. */
  async committed(): Promise<boolean> {
    const results = await Promise.allSettled([...this.entries.values()].flatMap((e) => (e.lastWrite ? [e.lastWrite] : [])));
    return results.every((r) => r.status === 'fulfilled') && [...this.entries.values()].every((e) => !e.writeFailed);
  }

  /** Actors in memory, and how many were activated from the store and deactivated so far. */
  residency(): { active: number; activating: number; activations: number; deactivations: number } {
    return { active: this.entries.size, activating: this.activating.size, activations: this.activations, deactivations: this.deactivations };
  }

  /**
   * Create a workspace (or update the spec of an existing one, used from its next start). Policy layers in
   * spec (`wsupPolicyDefaults`, `wsupPolicy`) are checked first; a spec without `wsupPolicy` keeps the
   * workspace's own layer (it was set with `setPolicy`).
   */
  async create(id: string, spec: Record<string, unknown> = {}): Promise<WorkspaceView> {
    this.assertAccepting();
    assertWorkspaceId(id);
    const h = this.hold(id, 'maybe');
    const known = h instanceof Promise ? await h : h;
    let entry = known;
    try {
      const previous = known?.actor.getSnapshot().context.spec;
      const full: Record<string, unknown> = { ...this.opts.defaultSpec, ...spec, id };
      if (!Object.hasOwn(spec, OWN_POLICY_KEY) && previous && Object.hasOwn(previous, OWN_POLICY_KEY)) full[OWN_POLICY_KEY] = previous[OWN_POLICY_KEY];
      checkSpecLayers(id, full, this.serverPolicy);
      if (!entry) (entry = this.entry(id, full)).waiting++;
      if (entry.state === 'destroyed') throw new WorkspaceDestroyedError(id);
      entry.actor.send({ type: 'SET_SPEC', spec: { ...full, id }, at: this.clock.now() });
      this.syncPolicy(entry);
      await entry.lastWrite;
      return this.view(entry);
    } finally {
      if (entry) this.release(entry);
    }
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
    const h = this.hold(id, 'create');
    const entry = h instanceof Promise ? await h : h;
    try {
      const requester = this.requesterId(opts.requester ?? 'ensure');
      const { settled } = await this.ask(entry, { type: 'ENSURE', requester, at: this.clock.now(), activity: opts.requester ?? 'ensure' }, { wait: true });
      return { id, started: settled!.starter === requester, endpoint: settled!.endpoint ?? '', state: entry.state };
    } finally {
      this.release(entry);
    }
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
    const h = this.hold(id, 'existing');
    const entry = this.alive(h instanceof Promise ? await h : h);
    try {
      const spec = entry.actor.getSnapshot().context.spec;
      const [defaults] = specLayers(spec);
      const own = compactPolicy(validatePolicy(policy, { where: `workspace ${id}`, base: mergePolicy(this.serverPolicy, defaults) }));
      entry.actor.send({ type: 'SET_SPEC', spec: { ...spec, [OWN_POLICY_KEY]: own }, at: this.clock.now() });
      this.syncPolicy(entry);
      await entry.lastWrite;
      return this.view(entry);
    } finally {
      this.release(entry);
    }
  }

  /**
   * Activity on the workspace: its idle deadline moves out, and it counts as use against dormancy.
   * Answers at once with the idle deadline (null when no idle rule applies or it is not running).
   */
  async activity(id: string, source = 'workspace.activity'): Promise<ActivityResult> {
    this.assertAccepting();
    if (!validSource(source)) {
      throw new WsupError('WSUP_INVALID_ARGUMENT', `workspace ${id}: activity source ${JSON.stringify(source)} must be a non-empty string of at most 128 characters (e.g. "agent heartbeat")`, { workspaceId: id, detail: { field: 'source' } });
    }
    const h = this.hold(id, 'existing');
    const entry = this.alive(h instanceof Promise ? await h : h);
    try {
      entry.actor.send({ type: 'ACTIVITY', source, at: this.clock.now() });
      return { id, idleDeadline: entry.state === 'running' ? idleDeadline(entry.actor.getSnapshot().context) : null };
    } finally {
      this.release(entry);
    }
  }

  /** Running counts per owner and per template or pool, each with its limit (for `wsup status`). */
  quotaUsage(): QuotaUsage {
    return this.ledger.usage();
  }

  /** A liveness signal from a provider or probe. "Died" while running restarts; otherwise ignored. */
  liveness(id: string, alive: boolean, detail: string): void {
    if (this.life !== 'ready') return;
    const send = (entry: Entry) => entry.actor.send({ type: 'LIVENESS', alive, detail, requester: this.requesterId('liveness'), at: this.clock.now() });
    const entry = this.entries.get(id);
    if (entry) return send(entry);
    if (!this.opts.cold || this.refused.has(id)) return;
    // A provider event for a workspace not in memory: activated from the store first (an unknown id is ignored).
    let held: Promise<Entry | null>;
    try {
      const h = this.hold(id, 'maybe');
      // Registered on the activation itself, so it reaches the actor in order with the commands made after it.
      held = h instanceof Promise ? h : Promise.resolve(h);
    } catch (err) {
      held = Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
    held.then(
      (held) => {
        if (!held) return;
        try {
          if (this.life === 'ready') send(held);
        } finally {
          this.release(held);
        }
      },
      (err: unknown) => {
        if (!(err instanceof WsupError && (err.code === 'WSUP_DESTROYED' || err.code === 'WSUP_SHUTTING_DOWN'))) this.report(err, { id, what: 'activating a workspace for a provider event failed' });
      },
    );
  }

  /**
   * True when the workspace exists and is not destroyed (the bus rejects writes for anything else). A
   * workspace not in memory is activated: what asks is about to send it something.
   */
  async accepts(id: string): Promise<boolean> {
    try {
      const h = this.hold(id, 'maybe');
      const entry = h instanceof Promise ? await h : h;
      if (!entry) return false;
      this.release(entry);
      return entry.state !== 'destroyed';
    } catch (err) {
      if (err instanceof WsupError && (err.code === 'WSUP_DESTROYED' || err.code === 'WSUP_INVALID_ID' || err.code === 'WSUP_CORRUPT_STATE')) return false;
      throw err;
    }
  }

  /** Whether the workspace exists (in memory, or stored and not destroyed). Reads the store without activating. */
  async has(id: string): Promise<boolean> {
    if (this.entries.has(id)) return true;
    if (!this.opts.cold || this.refused.has(id)) return false;
    const row = await this.loadRow(id);
    return this.entries.has(id) || (row !== null && !row.destroyed);
  }

  /** The view of a workspace whose actor is in memory now, else undefined (never reads the store). */
  peek(id: string): WorkspaceView | undefined {
    const entry = this.entries.get(id);
    return entry ? this.view(entry) : undefined;
  }

  /** The workspace's view: from its actor when in memory, else from its stored row (no activation). */
  async get(id: string): Promise<WorkspaceView> {
    assertWorkspaceId(id);
    const bad = this.refused.get(id);
    if (bad) throw bad;
    const entry = this.entries.get(id);
    if (entry) return this.view(entry);
    if (!this.opts.cold) throw new WorkspaceNotFoundError(id);
    const row = await this.loadRow(id);
    const now = this.entries.get(id); // activated meanwhile: its actor is newer than the row
    if (now) return this.view(now);
    if (row === null) throw new WorkspaceNotFoundError(id);
    if (row.destroyed) throw new WorkspaceDestroyedError(id);
    return this.storedView(row);
  }

  /**
   * Workspaces in id order after `cursor`. With a cold store the page is read from the store and what is in
   * memory replaces its rows (an actor's state may be a write ahead of the row).
   */
  async list(filter: { state?: LifecycleState; limit?: number; cursor?: string } = {}): Promise<WorkspaceView[]> {
    if (this.opts.cold) {
      const rows = await this.opts.cold.page({ ...filter, limit: filter.limit ?? 1000 });
      const out: WorkspaceView[] = [];
      // The page is the store's (so its length says whether more follow); an actor's view replaces its row.
      for (const row of rows) {
        const entry = this.entries.get(row.id);
        out.push(entry ? this.view(entry) : this.storedView(row));
      }
      return out;
    }
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

  /**
   * Drop every actor that has had nothing to do for the quiet time now, instead of at the next sweep (its state
   * is in the store). Answers how many left memory.
   */
  deactivateIdle(limit = Infinity): number {
    const now = this.clock.now();
    let n = 0;
    for (const [id, entry] of this.entries) {
      if (n >= limit) break;
      if (!this.idleFor(entry, now)) continue;
      this.deactivate(id, entry);
      n++;
    }
    return n;
  }

  /** The actor's persistable snapshot, activating the workspace from the store when it is not in memory. */
  async snapshotOf(id: string): Promise<Snapshot<unknown>> {
    const h = this.hold(id, 'existing');
    const entry = h instanceof Promise ? await h : h;
    try {
      return entry.actor.getPersistedSnapshot();
    } finally {
      this.release(entry);
    }
  }

  /** The actor's persistable snapshot (for the store); the workspace must be in memory. */
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
      // With a cold store the counts by state were read from it: a restored workspace is already counted.
      entry = this.spawn(id, undefined, snapshot, this.opts.cold === undefined);
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
    for (const timer of [this.sweepTimer, this.wakeTimer]) if (timer !== null) this.clock.clearTimeout(timer);
    this.sweepTimer = this.wakeTimer = null;
    // Activations already reading the store finish first, so that every actor they bring in is stopped below.
    await this.settled();
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
    await this.committed();
    for (const [requester, waiter] of this.waiters) {
      this.waiters.delete(requester);
      waiter.fail(new ShuttingDownError());
    }
    this.setLifecycle('stopped');
    this.events$.complete();
    this.lifecycle$.complete();
  }

  private async finishing(id: string, type: 'STOP' | 'DESTROY', label: string): Promise<WorkspaceView> {
    this.assertAccepting();
    const h = this.hold(id, 'existing');
    const entry = h instanceof Promise ? await h : h;
    try {
      await this.ask(entry, { type, requester: this.requesterId(label), at: this.clock.now() }, { wait: true });
      return this.view(entry);
    } finally {
      this.release(entry);
    }
  }

  private async restartFor(id: string, source: RestartSource | 'update', opts: Omit<RestartOptions, 'source'>, mode: 'create' | 'existing' = 'create'): Promise<RestartResult> {
    this.assertAccepting();
    const h = this.hold(id, mode);
    const entry = h instanceof Promise ? await h : h;
    try {
      const label = opts.requester ?? source;
      const requester = this.requesterId(label);
      // RESTART is typed with the callers' sources; `update` is the one the supervisor adds. The statechart
      // carries it into the cycle's why as given and treats it like `manual` in all but name: never deferred.
      const event = { type: 'RESTART', requester, source: source as RestartSource, reason: opts.reason ?? '', at: this.clock.now(), activity: label } as const;
      const { answer, settled } = await this.ask(entry, event, { wait: opts.wait === true, answered: true });
      return { id, outcome: answer!.outcome, cycle: settled ? settled.cycle : answer!.cycle, state: entry.state, requester };
    } finally {
      this.release(entry);
    }
  }

  /**
   * What the bus delivers to: restarts, liveness and activity for workspaces that exist (a burst never creates
   * one). A workspace not in memory is accepted, and activated from the store when the command reaches it.
   */
  busSink(): BusSink {
    return (this.sink ??= {
      accepts: (id) => {
        const entry = this.entries.get(id);
        if (entry) return entry.state !== 'destroyed';
        return this.opts.cold !== undefined && !this.refused.has(id) && WORKSPACE_ID.test(id);
      },
      restart: (id, req) => this.restartFor(id, req.source, { reason: req.reason, requester: req.requester }, 'existing'),
      liveness: (id, alive, detail) => this.liveness(id, alive, detail),
      activity: (id, source) => {
        const entry = this.entries.get(id);
        // In memory: sent at once, as a direct call would. Otherwise activated first; a failure is reported.
        if (entry && this.life === 'ready' && entry.state !== 'destroyed' && validSource(source)) {
          entry.actor.send({ type: 'ACTIVITY', source, at: this.clock.now() });
          return;
        }
        this.activity(id, source).catch((err: unknown) => this.report(err, { id, what: 'activity from the bus could not be delivered' }));
      },
    });
  }

  /**
   * One request to one actor, in the order every command needs: register the waiter (the answer may come
   * during `send`), send, take the synchronous answer or rejection, wait for the write of the transition it
   * caused, then (with `wait`) for the cycle or stop to settle and for the write of the state it settled in.
   * `answered`: the event always gets an immediate answer (a restart's outcome); none is an error.
   * A restart or ensure carries `activity` (a request to run counts as activity from it), recorded by the
   * actor in the same event. A start from not-running is checked against the quota first, in the same
   * synchronous step as the send: a refusal throws and nothing is sent. Nothing already done is awaited:
   * with no write in flight and the answer given during the send, the request resolves without a promise.
   */
  private async ask(
    entry: Entry,
    event: Extract<WorkspaceEvent, { requester: string }>,
    opts: { wait: boolean; answered?: boolean },
  ): Promise<{ answer: Answered | null; settled: Settled | null }> {
    const { answer, waiter } = this.send(entry, event, opts);
    const written = entry.lastWrite;
    if (written) await written;
    if (!waiter) return { answer, settled: null };
    const result = waiter.result();
    const settled = result instanceof Promise ? await result : result;
    const last = entry.lastWrite; // the state we report is committed too
    if (last) await last;
    return { answer, settled };
  }

  /**
   * The synchronous half of `ask`: the quota check, the send and its answer. Kept apart so that nothing it
   * reads (the context before the event) stays reachable while the request waits.
   */
  private send(
    entry: Entry,
    event: Extract<WorkspaceEvent, { requester: string }>,
    opts: { wait: boolean; answered?: boolean },
  ): { answer: Answered | null; waiter: Waiter | null } {
    const ctx = entry.actor.getSnapshot().context;
    const id = ctx.id;
    const { requester } = event;
    if ((event.type === 'ENSURE' || event.type === 'RESTART') && entry.state !== 'destroyed' && !holdsSlot(entry.state, ctx.desired)) {
      const refusal = this.quotaRefusal(id, ctx.spec);
      if (refusal) throw refusal;
    }
    const waiter = opts.wait ? new Waiter() : null;
    if (waiter) this.waiters.set(requester, waiter);
    entry.actor.send(event);
    const answer = this.answers.get(requester);
    this.answers.delete(requester);
    if (answer?.type === 'rejected' || (opts.answered && answer === undefined)) {
      this.waiters.delete(requester);
      if (answer?.type === 'rejected') throw toError(id, answer.error);
      throw new WsupError('WSUP_INVALID_ARGUMENT', `workspace ${id} did not accept the request`, { workspaceId: id });
    }
    return { answer: answer ?? null, waiter };
  }

  private track(id: string, state: LifecycleState, ctx: Pick<WorkspaceContext, 'spec' | 'desired'>): void {
    this.ledger.track(id, { ...quotaKeys(ctx.spec, this.opts.ownerOf?.(id)), holding: holdsSlot(state, ctx.desired) });
  }

  /**
   * Stored workspaces that hold a running slot, counted by the quota before (and whether or not) their
   * actors come into memory.
   */
  trackStored(rows: ReadonlyArray<{ id: string; state: LifecycleState; desired: WorkspaceContext['desired']; spec: Record<string, unknown> }>): void {
    for (const r of rows) if (!this.entries.has(r.id)) this.track(r.id, r.state, { spec: r.spec as WorkspaceContext['spec'], desired: r.desired });
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

  /** A workspace that exists and is not destroyed, held (release it), or the error saying why not. */
  private alive(entry: Entry): Entry {
    if (entry.state !== 'destroyed') return entry;
    this.release(entry);
    throw new WorkspaceDestroyedError(entry.actor.getSnapshot().context.id);
  }

  /**
   * The workspace's actor, activated from the store when it is not in memory, and held there until
   * `release`: a held actor is never deactivated. Where it exists nowhere, `create` makes it, `maybe` answers
   * null, `existing` throws WSUP_NOT_FOUND.
   */
  private hold(id: string, mode: 'create' | 'existing'): Entry | Promise<Entry>;
  private hold(id: string, mode: 'maybe'): Entry | null | Promise<Entry | null>;
  private hold(id: string, mode: 'create' | 'existing' | 'maybe'): Entry | null | Promise<Entry | null> {
    assertWorkspaceId(id);
    const bad = this.refused.get(id);
    if (bad) throw bad;
    // In memory: held in the caller's synchronous step, so a command is sent to the actor in the order it was made.
    const entry = this.entries.get(id) ?? (this.opts.cold ? undefined : this.absent(id, mode));
    if (entry === undefined) return this.holdCold(id, mode);
    if (entry !== null) entry.waiting++;
    return entry;
  }

  /** What `hold` gives for a workspace that exists nowhere. */
  private absent(id: string, mode: 'create' | 'existing' | 'maybe'): Entry | null {
    if (mode === 'maybe') return null;
    if (mode === 'existing') throw new WorkspaceNotFoundError(id);
    return this.entry(id);
  }

  private async holdCold(id: string, mode: 'create' | 'existing' | 'maybe'): Promise<Entry | null> {
    for (;;) {
      const found = await this.activate(id);
      this.assertAccepting();
      const bad = this.refused.get(id);
      if (bad) throw bad;
      if (found === 'destroyed') throw new WorkspaceDestroyedError(id);
      const entry = this.entries.get(id) ?? (found === 'loaded' ? undefined : this.absent(id, mode));
      if (entry === undefined) continue; // it left memory again before this caller ran: once more
      if (entry !== null) entry.waiting++;
      return entry;
    }
  }

  private release(entry: Entry): void {
    entry.waiting--;
    entry.touchedAt = this.clock.now();
  }

  /** Bring `id` into memory from the store, once however many callers ask at the same time. */
  private activate(id: string): Promise<'loaded' | 'absent' | 'destroyed'> {
    let p = this.activating.get(id);
    if (!p) {
      p = this.load(id).finally(() => this.activating.delete(id));
      this.activating.set(id, p);
    }
    return p;
  }

  private async load(id: string): Promise<'loaded' | 'absent' | 'destroyed'> {
    const row = await this.loadRow(id);
    if (this.entries.has(id)) return 'loaded'; // restored by recovery meanwhile
    if (row === null) return 'absent';
    if (row.destroyed) return 'destroyed';
    this.assertAccepting();
    if (row.snapshot === null) this.entry(id, row.spec); // registered without a snapshot (a prebuild's row): not in the counts read at start
    else {
      try {
        this.restore(id, row.snapshot);
      } catch (err) {
        if (err instanceof WsupError && err.code === 'WSUP_CORRUPT_STATE') this.quarantineWorkspace(id, err);
        throw err;
      }
    }
    this.activations++;
    const entry = this.entries.get(id)!;
    // The store's due time is what the scheduler reads: one that disagrees with the actor is written again.
    const ctx = entry.actor.getSnapshot().context;
    if (entry.writes === 0 && dueOf(ctx, entry.state) !== row.nextDueAt) this.write(id, entry, entry.state, ctx);
    return 'loaded';
  }

  /** The stored row of `id`; an unreadable one quarantines the workspace (and throws saying so). */
  private async loadRow(id: string): Promise<StoredWorkspace | null> {
    try {
      return await this.opts.cold!.load(id);
    } catch (err) {
      if (err instanceof WsupError && err.code === 'WSUP_CORRUPT_STATE') this.quarantineWorkspace(id, err);
      throw err;
    }
  }

  /** A workspace's view from its stored row, no actor involved; a snapshot it cannot read shows the columns. */
  private storedView(row: StoredWorkspace): WorkspaceView {
    const ctx = (row.snapshot as { context?: unknown } | null)?.context;
    if (row.snapshot !== null && typeof ctx === 'object' && ctx !== null && (ctx as { id?: unknown }).id === row.id) {
      try {
        migrateTiming(row.snapshot);
        return viewOf(ctx as WorkspaceContext, row.state);
      } catch {
        // falls through to the columns
      }
    }
    return viewOf(this.blankContext(row.id, row.spec), row.state);
  }

  /** The context a new actor starts with (never started: nothing runs). */
  private blankContext(id: string, spec: Record<string, unknown>): WorkspaceContext {
    return createActor(this.machine, { clock: this.clock, input: this.inputFor(id, spec) }).getSnapshot().context;
  }

  /** A workspace actor's input: the server's default spec under `spec`, with its id. */
  private inputFor(id: string, spec: Record<string, unknown> | undefined) {
    return { id, spec: { ...this.opts.defaultSpec, ...spec, id }, config: this.opts.config ?? {}, now: this.clock.now() };
  }

  /** Nothing to do, and quiet for `deactivateAfterMs`: its state is in the store, its actor may go. */
  private idleFor(entry: Entry, now: number): boolean {
    if (this.quietMs <= 0 || entry.dead || entry.waiting > 0 || entry.writes > 0 || entry.writeFailed || entry.buffered.length > 0) return false;
    if (now - entry.touchedAt < this.quietMs || entry.state === 'starting' || entry.state === 'stopping') return false;
    const ctx = entry.actor.getSnapshot().context;
    if (ctx.pending.length > 0 || ctx.deferred !== null || ctx.cycle !== null) return false;
    const due = dueOf(ctx, entry.state);
    return due === null || due > now + this.wakeAheadMs;
  }

  private deactivate(id: string, entry: Entry): void {
    entry.dead = true;
    this.deadlines.set(entry, null);
    this.entries.delete(id);
    entry.actor.stop();
    this.deactivations++;
    // The quota ledger keeps counting a running workspace that left memory: it still holds its slot.
  }

  /** The sweep that deactivates, while any actor is in memory. */
  private armSweep(delay?: number): void {
    if (this.quietMs <= 0 || this.sweepTimer !== null || this.life !== 'ready' || this.entries.size === 0) return;
    this.sweepTimer = unref(
      this.clock.setTimeout(() => {
        this.sweepTimer = null;
        // In chunks, so that dropping 100,000 actors after a full restore does not stall the event loop.
        const more = this.deactivateIdle(SWEEP_CHUNK) === SWEEP_CHUNK;
        this.armSweep(more ? 0 : undefined);
      }, delay ?? Math.max(1, this.quietMs / 2)),
    );
  }

  /** The scheduler: every half `wakeAheadMs`, activate the stored workspaces due within `wakeAheadMs`. */
  private armWake(): void {
    if (!this.opts.cold || this.wakeTimer !== null || this.life !== 'ready') return;
    this.wakeTimer = unref(
      this.clock.setTimeout(() => {
        this.wakeTimer = null;
        this.waking ??= this.wake()
          .catch((err: unknown) => this.report(err, { what: 'reading due workspaces from the store failed' }))
          .finally(() => {
            this.waking = null;
            this.armWake();
          });
      }, Math.max(1, this.wakeAheadMs / 2)),
    );
  }

  /**
   * Activate what comes due in (`wokenUpTo`, now + `wakeAheadMs`]. A workspace leaves memory only with its
   * due time past that window, so every due time is inside some window: none is missed, none read twice.
   */
  private async wake(): Promise<void> {
    const before = this.clock.now() + this.wakeAheadMs;
    const after = this.wokenUpTo === -Infinity ? Number.MIN_SAFE_INTEGER : this.wokenUpTo;
    let from: { at: number; id: string } | undefined;
    /** The earliest due time whose activation failed: the next pass reads from just before it again. */
    let failedAt = Infinity;
    for (;;) {
      const due = await this.opts.cold!.due({ after, before, ...(from ? { from } : {}) }, WAKE_PAGE);
      if (this.life !== 'ready') return;
      const todo = due.filter((d) => !this.entries.has(d.id) && !this.refused.has(d.id));
      // A bounded number of reads at a time: a schedule due for 100,000 workspaces does not open 100,000 reads.
      for (let i = 0; i < todo.length; i += WAKE_CONCURRENCY) {
        await Promise.all(
          todo.slice(i, i + WAKE_CONCURRENCY).map((d) =>
            this.activate(d.id).catch((err: unknown) => {
              if (err instanceof WsupError && err.code === 'WSUP_CORRUPT_STATE') return; // quarantined: nothing left to wake
              failedAt = Math.min(failedAt, d.at);
              this.report(err, { id: d.id, what: 'activating a due workspace failed (the next pass tries again)' });
            }),
          ),
        );
        if (this.life !== 'ready') return;
      }
      if (due.length < WAKE_PAGE) break;
      from = due[due.length - 1]!;
    }
    this.wokenUpTo = failedAt === Infinity ? before : Math.max(after, Math.min(before, failedAt - 1));
  }

  /**
   * Everything due up to `upTo` is in memory already (recovery restored it): the scheduler's first window
   * starts there instead of at the beginning of time.
   */
  markWoken(upTo: number): void {
    this.wokenUpTo = Math.max(this.wokenUpTo, upTo);
  }

  /** Counts by state of the workspaces in the store (cold ones included): set once, before any restore. */
  seedCounts(counts: Partial<Record<LifecycleState, number>>): void {
    this.summary.trigger.added({ counts });
  }

  private entry(id: string, spec?: Record<string, unknown>, counted = true): Entry {
    assertWorkspaceId(id);
    const bad = this.refused.get(id);
    if (bad) throw bad;
    const known = this.entries.get(id);
    if (known) return known;
    const entry = this.spawn(id, spec, undefined, counted);
    this.syncPolicy(entry); // a new workspace starts with the server default (and its spec's layers)
    return entry;
  }

  private spawn(id: string, spec: Record<string, unknown> | undefined, snapshot: Snapshot<unknown> | undefined, counted = true): Entry {
    const actor = createActor(this.machine, { clock: this.clock, input: this.inputFor(id, spec), ...(snapshot ? { snapshot } : {}) });
    // A restored actor starts in its stored state: its first snapshot is no transition (none is published or counted).
    const stored = (snapshot as { value?: unknown } | undefined)?.value;
    const entry: Entry = {
      actor,
      state: typeof stored === 'string' && (LIFECYCLE_STATES as readonly string[]).includes(stored) ? (stored as LifecycleState) : 'idle',
      lastWrite: null,
      buffered: [],
      dueAt: null,
      deadlineAt: 0,
      deadlineIndex: -1,
      touchedAt: this.clock.now(),
      writes: 0,
      writeFailed: false,
      waiting: 0,
      dead: false,
      restoring: false,
    };
    this.entries.set(id, entry);
    actor.on('*', (ev) => this.onEmitted(id, entry, ev));
    actor.subscribe({
      next: (snap) => this.onSnapshot(id, entry, snap.value, snap.context),
      error: (err) => this.report(err, { id, what: 'workspace actor crashed' }),
    });
    // A restored actor's first snapshot is its stored row: nothing to write (a new one's creates the row).
    entry.restoring = snapshot !== undefined;
    actor.start();
    entry.restoring = false;
    const snap = actor.getSnapshot();
    entry.state = snap.value;
    if (counted) this.summary.trigger.moved({ from: null, to: entry.state });
    this.track(id, entry.state, snap.context); // a restored running workspace holds its slot at once
    this.armSweep();
    this.armWake();
    return entry;
  }

  private onSnapshot(id: string, entry: Entry, state: LifecycleState, ctx: WorkspaceContext): void {
    if (entry.dead) return;
    entry.touchedAt = this.clock.now();
    this.track(id, state, ctx);
    if (ctx.timing.dueAt !== entry.dueAt) this.syncDue(entry);
    if (state !== entry.state) {
      const from = entry.state;
      entry.state = state;
      this.summary.trigger.moved({ from, to: state });
      this.publish(entry, { type: 'transition', id, from, to: state, at: ctx.now, cycle: ctx.cycle ? why(ctx.cycle) : null });
    }
    if (this.opts.persist && !entry.restoring) this.write(id, entry, state, ctx);
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
    entry.writes++;
    const done = this.opts.persist!({ id, state, desired: ctx.desired, snapshot: entry.actor.getPersistedSnapshot(), spec: ctx.spec, events, nextDueAt: dueOf(ctx, state) });
    const guarded = done.then(
      () => {
        entry.writes--;
        entry.writeFailed = false;
      },
      (err: unknown) => {
        entry.writes--;
        entry.writeFailed = true; // the store is behind this actor: it stays in memory
        this.report(err, { id, what: 'persisting a transition failed' });
        throw err;
      },
    );
    entry.lastWrite = guarded;
    guarded.catch(() => undefined);
  }

  private onEmitted(id: string, entry: Entry, ev: WorkspaceEmitted): void {
    if (entry.dead) return;
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
          waiter.fail(toError(id, ev.error));
        }
        return;
      }
      case 'settled':
        for (const requester of ev.requesters) {
          const waiter = this.waiters.get(requester);
          if (!waiter) continue;
          this.waiters.delete(requester);
          if (ev.ok) waiter.settle(ev);
          else waiter.fail(toError(id, ev.error!));
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
    return viewOf(entry.actor.getSnapshot().context, entry.state);
  }
}

function viewOf(ctx: WorkspaceContext, state: LifecycleState): WorkspaceView {
    return {
      id: ctx.id,
      state,
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

/** The earliest time the workspace has something to do: its policy deadline, a deferred restart, a backoff's end. */
function dueOf(ctx: WorkspaceContext, state: LifecycleState): number | null {
  let due: number | null = ctx.timing.dueAt;
  // A backoff's end matters only while failed: the context keeps the last one after a retry succeeded.
  for (const at of [ctx.deferred?.until ?? null, state === 'failed' ? ctx.backoffUntil : null]) if (at !== null && (due === null || at < due)) due = at;
  return due;
}

/** An activity's source: a non-empty string of at most 128 characters. */
function validSource(source: unknown): source is string {
  return typeof source === 'string' && source.length > 0 && source.length <= 128;
}

function nonNegative(name: string, v: number): number {
  if (!Number.isFinite(v) || v < 0) throw new WsupError('WSUP_INVALID_ARGUMENT', `Supervisor: ${name} must be a number of ms ≥ 0, got ${v}`);
  return v;
}

/** A Node timer must not keep the process alive for the supervisor's housekeeping alone. */
function unref(timer: unknown): unknown {
  (timer as { unref?: () => void } | null)?.unref?.();
  return timer;
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
