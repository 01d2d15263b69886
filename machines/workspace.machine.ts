/**
 * The workspace statechart: the only path from a request to a provider call.
 *
 * States: idle → starting → running, stopping, failed (backoff), destroyed. `starting` and `stopping`
 * each invoke exactly one provider call and are left only when it settles, so two provider calls can never
 * be in flight for one workspace, whatever asked for them. Deferred requests wait on one cancellable
 * delayed event (`deferredDue`) armed from the deadline in context. Lifecycle policies raise no timer: the
 * machine keeps the earliest deadline `machines/workspace.policy.ts` computes in `timing.dueAt`, and whoever
 * runs the actor sends POLICY_DUE then (the supervisor's one deadline queue).
 *
 * Pure: provider calls are the invoked actors `provision` and `deprovision`, supplied with `.provide()`;
 * time arrives on events (`at`) and deadlines live in context, so a restored actor re-arms them (REARM).
 */
import { and, assign, emit, enqueueActions, fromPromise, setup, type DoneActorEvent, type ErrorActorEvent } from 'xstate';
import {
  backoffMs,
  crashLoop,
  destroyedError,
  errorInfo,
  joinable,
  nextCycle,
  outstanding,
  recentFailures,
  requesters,
  shouldDefer,
  superseded,
} from './workspace.rules.ts';
import {
  advanceSchedule,
  dueAction,
  earliestDue,
  nextSchedule,
  scheduledStartLabel,
  startInWindow,
  startWindowEnd,
  timeUtc,
  warningAt,
  warningReason,
} from './workspace.policy.ts';
import {
  DEFAULT_CONFIG,
  NO_POLICY,
  NO_TIMING,
  type DeprovisionInput,
  type DeprovisionOutput,
  type Outcome,
  type PolicyTiming,
  type ProvisionInput,
  type ProvisionOutput,
  type Request,
  type WorkspaceContext,
  type WorkspaceEmitted,
  type WorkspaceEvent,
  type WorkspaceInput,
} from './workspace.types.ts';

type Ev = WorkspaceEvent;
const at = (ctx: WorkspaceContext, e: Ev): number => ('at' in e ? Math.max(ctx.now, e.at) : ctx.now);

/** The request an event carries (restart, ensure or liveness-died), stamped with its arrival. */
function requestOf(ctx: WorkspaceContext, e: Ev, outcome: Outcome): Request {
  const t = at(ctx, e);
  switch (e.type) {
    case 'RESTART':
      return { requester: e.requester, kind: 'restart', source: e.source, reason: e.reason, at: t, outcome };
    case 'ENSURE':
      return { requester: e.requester, kind: 'ensure', source: 'manual', reason: 'ensure', at: t, outcome };
    case 'LIVENESS':
      return { requester: e.requester, kind: 'restart', source: 'liveness', reason: `provider reports it died: ${e.detail}`, at: t, outcome };
    default:
      throw new Error(`event ${e.type} carries no request`);
  }
}

const DEFERRED_TIMER = 'deferredDue';
const NO_SCHEDULE: PolicyTiming['schedule'] = { nextStart: null, nextStop: null };

/** The provider calls' results reach their actions as params, typed by the invoked actor. */
const completed = { type: 'completeCycle', params: ({ event }: { event: DoneActorEvent<ProvisionOutput> }) => ({ output: event.output }) } as const;
const stopped = { type: 'settleStopWaiters', params: ({ event }: { event: DoneActorEvent<DeprovisionOutput> }) => ({ output: event.output }) } as const;

const requesterOf = (e: Ev): string => ('requester' in e ? e.requester : 'system');

/** Where the activity an event carries comes from: ACTIVITY's source, a request's `activity`; null when none. */
function activityOf(e: Ev): string | null {
  if (e.type === 'ACTIVITY') return e.source;
  if ((e.type === 'RESTART' || e.type === 'ENSURE') && e.activity !== undefined) return e.activity;
  return null;
}

/** `timing` with the activity the event carries recorded at `t` (it ends dormancy); unchanged when it carries none. */
function timingWithActivity(ctx: WorkspaceContext, e: Ev, t: number): PolicyTiming {
  const source = activityOf(e);
  return source === null ? ctx.timing : { ...ctx.timing, lastActivity: { at: t, source }, dormantSince: null };
}

/**
 * A provider call failed. Under the crash-loop limit the workspace converges again at once (a retry cycle
 * when it should run, another stop attempt when it should not); past the limit it waits in `failed` with
 * exponential backoff. Either way the failed cycle's requesters are rejected with the cause. Callers waiting for
 * a stop keep waiting through the next stop attempt and are answered when a stop has really run; only a crash
 * loop (the workspace gives up and waits in `failed`) rejects them with the cause.
 */
const failureTransitions = () => {
  const failed = { type: 'failCycle', params: ({ event }: { event: ErrorActorEvent }) => ({ error: event.error }) } as const;
  return [
    { guard: { type: 'crashLoop', params: ({ event }: { event: ErrorActorEvent }) => ({ error: event.error }) }, target: 'failed', actions: failed },
    { guard: 'wantsRunning', target: 'stopping', reenter: true, actions: [failed, { type: 'beginOutstanding', params: { retry: true } }] },
    { target: 'stopping', reenter: true, actions: failed },
  ] as const;
};

/** While a provider call is in flight (`starting`, `stopping`): change what is desired and wait for the call. */
const STOP_AFTER_CALL = {
  STOP: { actions: ['supersede', 'wantStopped', 'addStopWaiter'] },
  DESTROY: { actions: ['supersede', 'wantDestroyed', 'addStopWaiter'] },
} as const;

/** With no call in flight and something up (`running`, `failed`): the provider stop begins at once. */
const STOP_NOW = {
  STOP: { target: 'stopping', actions: ['observe', 'supersede', 'wantStopped', 'addStopWaiter'] },
  DESTROY: { target: 'stopping', actions: ['observe', 'supersede', 'wantDestroyed', 'addStopWaiter'] },
} as const;

export const workspaceMachine = setup({
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-type-assertion -- xstate's documented typing idiom
  types: {} as {
    context: WorkspaceContext;
    events: WorkspaceEvent;
    input: WorkspaceInput;
    emitted: WorkspaceEmitted;
  },
  actors: {
    provision: fromPromise<ProvisionOutput, ProvisionInput>(() => {
      throw new Error('workspace machine: no `provision` actor provided; supply one with .provide({ actors })');
    }),
    deprovision: fromPromise<DeprovisionOutput, DeprovisionInput>(() => {
      throw new Error('workspace machine: no `deprovision` actor provided; supply one with .provide({ actors })');
    }),
  },
  delays: {
    backoffDue: ({ context }) => Math.max(0, (context.backoffUntil ?? context.now) - context.now),
  },
  guards: {
    joinable: ({ context }) => joinable(context),
    hasPending: ({ context }) => context.pending.length > 0,
    hasOutstanding: ({ context }) => outstanding(context).length > 0,
    hasDeferred: ({ context }) => context.deferred !== null,
    hasBackoff: ({ context }) => context.backoffUntil !== null,
    hasCycle: ({ context }) => context.cycle !== null,
    deferrable: ({ context, event }) => event.type === 'RESTART' && shouldDefer(context, event.source, at(context, event)),
    isManual: ({ event }) => event.type === 'RESTART' && event.source === 'manual',
    died: ({ event }) => event.type === 'LIVENESS' && !event.alive,
    wantsRunning: ({ context }) => context.desired === 'running',
    wantsDestroyed: ({ context }) => context.desired === 'destroyed',
    crashLoop: ({ context }, params: { error: unknown }) => crashLoop(context, errorInfo(params.error, context.now).at),
    /** The quota's say on a scheduled start; the supervisor replaces it with `.provide({ guards })`. */
    startAllowed: (_args) => true,
    isDormant: ({ context }) => context.timing.dormantSince != null,
    /** The event carries a later time than the actor has observed (`observe` would change `now`). */
    timeMoved: ({ context, event }) => 'at' in event && event.at > context.now,
    /**
     * The event carries activity the context does not hold yet: a later time than the actor has observed, or
     * another source than the latest activity's (activity at the same time from the same source changes nothing).
     */
    newActivity: ({ context, event }) => {
      const source = activityOf(event);
      if (source === null || !('at' in event)) return false;
      const last = context.timing.lastActivity;
      return event.at > context.now || last === null || last.at !== context.now || last.source !== source;
    },
    carriesActivity: ({ event }) => activityOf(event) !== null,
    policyStopDue: ({ context, event }) => dueAction(context, at(context, event))?.action === 'stop',
    policyDestroyDue: ({ context, event }) => dueAction(context, at(context, event))?.action === 'destroy',
    scheduledStartDue: ({ context, event }) => startInWindow(context, at(context, event)),
  },
  actions: {
    observe: assign({ now: ({ context, event }) => at(context, event) }),
    /**
     * The request joins the cycle whose provider start has not begun yet. Recording a request and answering it
     * are two static actions (`join` then `answerJoined`, and `queue` then `answerQueued`): the answer reads the
     * context the record left, so both see one request, and no action objects are built per event.
     */
    join: assign(({ context, event }) => {
      const req = requestOf(context, event, 'joined');
      const cycle = context.cycle!;
      return { now: req.at, cycle: { ...cycle, requests: [...cycle.requests, req] }, timing: timingWithActivity(context, event, req.at) };
    }),
    answerJoined: emit(({ context, event }) => ({ type: 'answered', requester: requesterOf(event), outcome: 'joined', cycle: context.cycle!.n, at: context.now }) as const),
    /** The request sets (or merges into) the one pending flag: it runs right after the current cycle. */
    queue: assign(({ context, event }) => {
      const req = requestOf(context, event, 'queued');
      return { now: req.at, pending: [...context.pending, req], timing: timingWithActivity(context, event, req.at) };
    }),
    answerQueued: emit(({ context, event }) => ({ type: 'answered', requester: requesterOf(event), outcome: 'queued', cycle: context.cycleCount + 1, at: context.now }) as const),
    /** An automatic request inside the self-fire window waits for the window's end: deferred, never dropped. */
    defer: enqueueActions(({ context, event, enqueue }) => {
      const req = requestOf(context, event, 'deferred');
      const until = (context.lastCycleStartAt ?? req.at) + context.config.selfFireWindowMs;
      const requests = [...(context.deferred?.requests ?? []), req];
      enqueue.assign({ now: req.at, deferred: { until, requests }, timing: timingWithActivity(context, event, req.at) });
      enqueue.emit({ type: 'answered', requester: req.requester, outcome: 'deferred', cycle: null, at: req.at });
      if (context.deferred === null) enqueue.raise({ type: 'DEFERRED_DUE' }, { id: DEFERRED_TIMER, delay: until - req.at });
    }),
    /** Begin a cycle for this request; it absorbs every outstanding request (they arrived before its start). */
    begin: enqueueActions(({ context, event, enqueue }) => {
      const req = requestOf(context, event, 'started');
      const manual = req.source === 'manual' && req.kind === 'restart';
      const starter = req.kind === 'ensure' ? req.requester : null;
      const cycle = nextCycle(context, [req], req.at, { starter });
      enqueue.assign({
        now: req.at,
        cycle,
        cycleCount: cycle.n,
        lastCycleStartAt: req.at,
        pending: [],
        deferred: null,
        desired: 'running',
        backoffUntil: null,
        failures: manual ? [] : context.failures,
        timing: { ...timingWithActivity(context, event, req.at), dormantSince: null, retryOf: null },
      });
      enqueue.emit({ type: 'answered', requester: req.requester, outcome: 'started', cycle: cycle.n, at: req.at });
      enqueue.emit({ type: 'cycle.started', cycle, at: req.at });
      if (context.deferred !== null) enqueue.cancel(DEFERRED_TIMER);
    }),
    /** Begin a cycle for requests already answered: the pending flag, a due deferral, or a retry. */
    beginOutstanding: enqueueActions(({ context, enqueue }, params: { retry: boolean }) => {
      const t = context.now;
      const retryOf = params.retry ? (context.timing.retryOf ?? null) : null;
      const why = retryOf !== null ? `retry of ${retryOf} after failure` : 'retry after failure';
      const cycle = nextCycle(context, [], t, {
        retry: params.retry,
        ...(params.retry && context.lastError ? { source: retryOf !== null ? 'schedule' : 'programmatic', reason: `${why}: ${context.lastError.message}` } : {}),
      });
      enqueue.assign({
        cycle,
        cycleCount: cycle.n,
        lastCycleStartAt: t,
        pending: [],
        deferred: null,
        backoffUntil: null,
        desired: 'running',
        timing: { ...context.timing, dormantSince: null, retryOf },
      });
      enqueue.emit({ type: 'cycle.started', cycle, at: t });
      if (context.deferred !== null) enqueue.cancel(DEFERRED_TIMER);
    }),
    /** Due deferred requests wait for the cycle in flight, as the pending flag. */
    deferredToPending: assign({
      pending: ({ context }) => [...context.pending, ...(context.deferred?.requests ?? [])],
      deferred: null,
    }),
    deferredJoin: assign({
      cycle: ({ context }) => ({ ...context.cycle!, requests: [...context.cycle!.requests, ...(context.deferred?.requests ?? [])] }),
      deferred: null,
    }),
    markProvisioning: enqueueActions(({ context, enqueue }) => {
      if (context.cycle === null) return;
      enqueue.assign({ cycle: { ...context.cycle, provisionAt: context.now } });
      enqueue.emit({ type: 'cycle.provisioning', cycle: context.cycle.n, at: context.now });
    }),
    /** The provider start succeeded: every request of the cycle is satisfied. */
    completeCycle: enqueueActions(({ context, enqueue }, { output }: { output: ProvisionOutput }) => {
      const t = Math.max(context.now, output.at);
      const cycle = context.cycle;
      // A completed cycle counts as activity, so a scheduled start with old activity is not idle-stopped at once.
      enqueue.assign({ now: t, endpoint: output.endpoint, cycle: null, timing: { ...context.timing, lastActivity: { at: t, source: 'start' }, retryOf: null } });
      if (cycle === null) return;
      enqueue.emit({ type: 'cycle.completed', cycle, endpoint: output.endpoint, at: t });
      // A stop arrived during the start: restart requesters got their cycle, ensure requesters did not.
      const keep = context.desired === 'running' ? cycle.requests : cycle.requests.filter((r) => r.kind === 'restart');
      const dropped = cycle.requests.filter((r) => !keep.includes(r));
      enqueue.emit({ type: 'settled', requesters: requesters(keep), ok: true, cycle: cycle.n, endpoint: output.endpoint, starter: cycle.starter, error: null, at: t });
      if (dropped.length > 0) {
        enqueue.emit({ type: 'settled', requesters: requesters(dropped), ok: false, cycle: cycle.n, endpoint: null, starter: null, error: superseded(context.id, context.desired === 'destroyed' ? 'destroy' : 'stop'), at: t });
      }
    }),
    /** A provider call failed: reject the cycle's requesters (and, in a crash loop, the stop waiters) with the cause. */
    failCycle: enqueueActions(({ context, enqueue }, params: { error: unknown }) => {
      const info = errorInfo(params.error, context.now);
      const t = Math.max(context.now, info.at);
      const failures = recentFailures(context, t, true);
      const looping = failures.length > context.config.maxRestarts;
      const cycle = context.cycle;
      const error = { code: 'WSUP_CYCLE_FAILED', message: `workspace ${context.id} cycle ${cycle?.n ?? context.cycleCount} failed: ${info.message}` };
      enqueue.assign({
        now: t,
        failures,
        cycle: null,
        endpoint: null,
        stopWaiters: looping ? [] : context.stopWaiters,
        lastError: { message: info.message, code: info.code, at: t, cycle: cycle?.n ?? context.cycleCount },
        backoffUntil: looping ? t + backoffMs(context, failures.length) : null,
      });
      if (cycle !== null) enqueue.emit({ type: 'cycle.failed', cycle, error, at: t });
      const waiting = [...(cycle ? requesters(cycle.requests) : []), ...(looping ? context.stopWaiters : [])];
      if (waiting.length > 0) {
        enqueue.emit({ type: 'settled', requesters: waiting, ok: false, cycle: cycle?.n ?? null, endpoint: null, starter: null, error, at: t });
      }
    }),
    addStopWaiter: assign({
      now: ({ context, event }) => at(context, event),
      stopWaiters: ({ context, event }) => [...context.stopWaiters, requesterOf(event)],
    }),
    /** Wanting it stopped ends any crash-loop backoff: the stop runs now, and a later start begins afresh. */
    wantStopped: assign({ desired: ({ context }) => (context.desired === 'destroyed' ? 'destroyed' : 'stopped'), backoffUntil: null }),
    wantDestroyed: assign({ desired: 'destroyed', backoffUntil: null }),
    /** A stop or destroy cancels everything not yet started: requests are told they were superseded. */
    supersede: enqueueActions(({ context, event, enqueue }) => {
      const by = event.type === 'DESTROY' ? 'destroy' : 'stop';
      const t = at(context, event);
      const startHalf = joinable(context) ? context.cycle!.requests : [];
      const cancelled = [...startHalf, ...outstanding(context)];
      enqueue.assign({ pending: [], deferred: null, cycle: joinable(context) ? null : context.cycle });
      if (context.deferred !== null) enqueue.cancel(DEFERRED_TIMER);
      if (cancelled.length > 0) {
        const error = event.type === 'DESTROY' ? destroyedError(context.id) : superseded(context.id, by);
        enqueue.emit({ type: 'settled', requesters: requesters(cancelled), ok: false, cycle: null, endpoint: null, starter: null, error, at: t });
      }
    }),
    settleStopWaiters: enqueueActions(({ context, enqueue }, { output }: { output: DeprovisionOutput }) => {
      const t = Math.max(context.now, output.at);
      enqueue.assign({ now: t, stopWaiters: [], endpoint: null });
      if (context.stopWaiters.length > 0) {
        enqueue.emit({ type: 'settled', requesters: context.stopWaiters, ok: true, cycle: null, endpoint: null, starter: null, error: null, at: t });
      }
    }),
    /** Running: the request is satisfied as it stands. Its time and activity are recorded before it only when new. */
    answerRunning: emit(({ context, event }) => ({
      type: 'settled',
      requesters: [requesterOf(event)],
      ok: true,
      cycle: context.cycleCount,
      endpoint: context.endpoint,
      starter: null,
      error: null,
      at: at(context, event),
    }) as const),
    answerStopped: enqueueActions(({ context, event, enqueue }) => {
      const t = at(context, event);
      enqueue.emit({ type: 'settled', requesters: [requesterOf(event)], ok: true, cycle: null, endpoint: null, starter: null, error: null, at: t });
    }),
    /** A request refused while a destroy runs still counts as activity (when it carries some). */
    noteRequestActivity: assign(({ context, event }) => (activityOf(event) === null ? {} : { now: at(context, event), timing: timingWithActivity(context, event, at(context, event)) })),
    rejectDestroyed: enqueueActions(({ context, event, enqueue }) => {
      enqueue.emit({ type: 'rejected', requester: requesterOf(event), error: destroyedError(context.id), at: at(context, event) });
    }),
    setSpec: assign({ spec: ({ context, event }) => (event.type === 'SET_SPEC' ? event.spec : context.spec) }),
    dueNow: assign({ now: ({ context }) => Math.max(context.now, context.deferred?.until ?? context.now) }),
    backoffNow: assign({ now: ({ context }) => Math.max(context.now, context.backoffUntil ?? context.now) }),
    /** After a restore: XState does not persist delayed events, so arm the deferral again from context. */
    rearmDeferred: enqueueActions(({ context, enqueue }) => {
      if (context.deferred === null) return;
      enqueue.cancel(DEFERRED_TIMER);
      enqueue.raise({ type: 'DEFERRED_DUE' }, { id: DEFERRED_TIMER, delay: Math.max(0, context.deferred.until - context.now) });
    }),
    /**
     * The one policy deadline: `timing.dueAt` set to the earliest deadline in context (null when none). The
     * supervisor's deadline queue watches it and sends POLICY_DUE then; the machine raises no timer for it.
     */
    armPolicy: assign(({ context }) => ({ timing: { ...context.timing, dueAt: earliestDue(context) } })),
    disarmPolicy: assign(({ context }) => (context.timing.dueAt === null ? {} : { timing: { ...context.timing, dueAt: null } })),
    markRunning: assign(({ context }) => ({ timing: { ...context.timing, runningSince: context.now, stoppedAt: null } })),
    markStopped: assign(({ context }) => ({ timing: { ...context.timing, stoppedAt: context.now, runningSince: null } })),
    /** Entry to a state with a call in flight: neither running nor stopped (after the transition's actions ran). */
    markBusy: assign(({ context }) => ({ timing: { ...context.timing, runningSince: null, stoppedAt: null } })),
    /** A snapshot stored before policies existed knows no run or stop time: count it from the restore. */
    adoptRestored: assign(({ context }, params: { state: 'running' | 'idle' }) => {
      const t = context.timing;
      return { timing: params.state === 'running' ? { ...t, runningSince: t.runningSince ?? context.now } : { ...t, stoppedAt: t.stoppedAt ?? context.now } };
    }),
    /** Activity (ACTIVITY, or a request that carries it): the latest activity, which ends dormancy. */
    noteActivity: assign(({ context, event }) => {
      const t = at(context, event);
      return { now: t, timing: { ...context.timing, lastActivity: { at: t, source: activityOf(event) ?? 'activity' }, dormantSince: null } };
    }),
    setPolicy: assign(({ context, event }) => {
      if (event.type !== 'SET_POLICY') return {};
      const t = at(context, event);
      // A snapshot stored before policies existed has neither field: read it as no policy, nothing scheduled.
      const schedule = nextSchedule(context.policy ?? NO_POLICY, event.policy, context.timing.schedule ?? NO_SCHEDULE, t);
      return { now: t, policy: event.policy, timing: { ...context.timing, schedule } };
    }),
    /** A policy stop or destroy: say which rule fired; the transition's own actions do the rest. */
    policyActs: enqueueActions(({ context, event, enqueue }) => {
      const t = at(context, event);
      const due = dueAction(context, t);
      if (due === null) return;
      const fired = due.source === 'schedule' ? due.action === 'start' ? 'start' : 'stop' : null;
      enqueue.assign({ now: t, timing: { ...context.timing, schedule: advanceSchedule(context, t, fired) } });
      enqueue.emit({ type: 'policy', action: due.action, source: due.source, reason: due.reason, at: t });
    }),
    /** A scheduled start: one more request to the actor, a cycle from idle with the schedule as its why. */
    beginScheduled: enqueueActions(({ context, event, enqueue }) => {
      const t = at(context, event);
      const due = dueAction(context, t);
      const schedule = context.policy.autostart;
      if (due === null || schedule === null) return;
      const req: Request = { requester: `policy:schedule#${context.cycleCount + 1}`, kind: 'ensure', source: 'schedule', reason: due.reason, at: t, outcome: 'started' };
      const cycle = nextCycle(context, [req], t, { starter: req.requester });
      enqueue.assign({
        now: t,
        cycle,
        cycleCount: cycle.n,
        lastCycleStartAt: t,
        pending: [],
        deferred: null,
        desired: 'running',
        backoffUntil: null,
        timing: { ...context.timing, dormantSince: null, retryOf: scheduledStartLabel(schedule), schedule: advanceSchedule(context, t, 'start') },
      });
      enqueue.emit({ type: 'policy', action: 'start', source: 'schedule', reason: due.reason, at: t });
      enqueue.emit({ type: 'cycle.started', cycle, at: t });
      if (context.deferred !== null) enqueue.cancel(DEFERRED_TIMER);
    }),
    /**
     * The timer fired and no transition acts: send the warning, mark dormancy, skip a start the quota refused
     * or whose window has passed, pass over occurrences of the other state's schedule. The caller re-arms.
     */
    policyTick: enqueueActions(({ context, event, enqueue }) => {
      const t = at(context, event);
      const timing = { ...context.timing };
      const warnAt = warningAt(context);
      if (warnAt !== null && warnAt <= t) {
        const stopAt = timing.runningSince! + context.policy.maxLifetimeMs!;
        timing.warnedFor = timing.runningSince;
        enqueue.emit({ type: 'policy', action: 'warning', source: 'max-lifetime', reason: warningReason(context), stopAt, at: t });
      }
      const due = dueAction(context, t);
      let fired: 'start' | null = null;
      if (due?.action === 'dormant') {
        timing.dormantSince = t;
        enqueue.emit({ type: 'policy', action: 'dormant', source: 'dormancy', reason: due.reason, at: t });
      } else if (due?.action === 'start') {
        fired = 'start';
        const why = startInWindow(context, t)
          ? `${due.reason}: refused by the quota`
          : `${due.reason}: missed, its window ended at ${timeUtc(startWindowEnd(context, due.at))}`;
        enqueue.emit({ type: 'policy', action: 'skipped', source: 'schedule', reason: why, at: t });
      }
      timing.schedule = advanceSchedule(context, t, fired);
      enqueue.assign({ now: t, timing });
    }),
  },
}).createMachine({
  id: 'workspace',
  initial: 'idle',
  context: ({ input }) => ({
    id: input.id,
    spec: input.spec ?? { id: input.id },
    config: { ...DEFAULT_CONFIG, ...input.config },
    now: input.now,
    desired: 'stopped',
    cycleCount: 0,
    cycle: null,
    lastCycleStartAt: null,
    pending: [],
    deferred: null,
    failures: [],
    backoffUntil: null,
    endpoint: null,
    lastError: null,
    stopWaiters: [],
    policy: NO_POLICY,
    timing: NO_TIMING,
  }),
  on: {
    SET_SPEC: { actions: ['observe', 'setSpec'] },
    // Activity never re-arms the timer (the deadline is recomputed when it fires), except to end dormancy.
    // Activity already on record (same time, same source) changes nothing and takes no transition.
    ACTIVITY: [{ guard: 'isDormant', actions: ['noteActivity', 'armPolicy'] }, { guard: 'newActivity', actions: 'noteActivity' }],
    SET_POLICY: { actions: ['setPolicy', 'armPolicy'] },
    REARM: { actions: ['observe', 'rearmDeferred', 'armPolicy'] },
  },
  states: {
    idle: {
      entry: ['markStopped', 'armPolicy'],
      exit: 'disarmPolicy',
      on: {
        REARM: { actions: ['observe', 'rearmDeferred', { type: 'adoptRestored', params: { state: 'idle' } }, 'armPolicy'] },
        RESTART: [
          // A deferred request stays idle: the activity it carries ends dormancy, and the deadline moves with it.
          { guard: and(['deferrable', 'isDormant', 'carriesActivity']), actions: ['defer', 'armPolicy'] },
          { guard: 'deferrable', actions: 'defer' },
          { target: 'starting', actions: 'begin' },
        ],
        ENSURE: { target: 'starting', actions: 'begin' },
        STOP: { actions: ['observe', 'supersede', 'answerStopped'] },
        DESTROY: { target: 'stopping', actions: ['supersede', 'wantDestroyed', 'addStopWaiter'] },
        DEFERRED_DUE: { guard: 'hasDeferred', target: 'starting', actions: ['dueNow', { type: 'beginOutstanding', params: { retry: false } }] },
        POLICY_DUE: [
          { guard: and(['scheduledStartDue', 'startAllowed']), target: 'starting', actions: 'beginScheduled' },
          // Dormancy's destroy is DESTROY from idle, with nobody waiting for it.
          { guard: 'policyDestroyDue', target: 'stopping', actions: ['policyActs', 'supersede', 'wantDestroyed'] },
          { actions: ['policyTick', 'armPolicy'] },
        ],
      },
    },
    starting: {
      entry: ['markBusy', 'markProvisioning'],
      invoke: {
        src: 'provision',
        input: ({ context }) => ({ id: context.id, spec: context.spec, cycle: context.cycle?.n ?? context.cycleCount }),
        onDone: [
          // The pending flag drains into exactly one more cycle: stop what just started, start again.
          { guard: and(['wantsRunning', 'hasPending']), target: 'stopping', actions: [completed, { type: 'beginOutstanding', params: { retry: false } }] },
          { guard: 'wantsRunning', target: 'running', actions: completed },
          { target: 'stopping', actions: completed },
        ],
        onError: failureTransitions(),
      },
      on: {
        RESTART: [
          { guard: 'wantsDestroyed', actions: ['noteRequestActivity', 'rejectDestroyed'] },
          { guard: 'hasPending', actions: ['queue', 'answerQueued'] },
          { guard: 'deferrable', actions: 'defer' },
          { actions: ['queue', 'answerQueued'] },
        ],
        // After a stop arrived, a new ensure waits for the stop to finish and the next start.
        ENSURE: [
          { guard: 'wantsDestroyed', actions: ['noteRequestActivity', 'rejectDestroyed'] },
          { guard: 'wantsRunning', actions: ['join', 'answerJoined'] },
          { actions: ['queue', 'answerQueued'] },
        ],
        ...STOP_AFTER_CALL,
        DEFERRED_DUE: { guard: 'hasDeferred', actions: ['dueNow', 'deferredToPending'] },
      },
    },
    running: {
      entry: ['markRunning', 'armPolicy'],
      exit: 'disarmPolicy',
      on: {
        REARM: { actions: ['observe', 'rearmDeferred', { type: 'adoptRestored', params: { state: 'running' } }, 'armPolicy'] },
        RESTART: [{ guard: 'deferrable', actions: 'defer' }, { target: 'stopping', actions: 'begin' }],
        LIVENESS: { guard: 'died', target: 'stopping', actions: 'begin' },
        // Answered as it stands; the context changes only when the request brings news (activity, a later time).
        ENSURE: [
          { guard: 'newActivity', actions: ['noteActivity', 'answerRunning'] },
          { guard: 'timeMoved', actions: ['observe', 'answerRunning'] },
          { actions: 'answerRunning' },
        ],
        ...STOP_NOW,
        DEFERRED_DUE: { guard: 'hasDeferred', target: 'stopping', actions: ['dueNow', { type: 'beginOutstanding', params: { retry: false } }] },
        // A policy stop is STOP from running, with nobody waiting for it.
        POLICY_DUE: [
          { guard: 'policyStopDue', target: 'stopping', actions: ['policyActs', 'supersede', 'wantStopped'] },
          { actions: ['policyTick', 'armPolicy'] },
        ],
      },
    },
    stopping: {
      entry: 'markBusy',
      invoke: {
        src: 'deprovision',
        input: ({ context }) => ({ id: context.id, cycle: context.cycle?.n ?? context.cycleCount }),
        onDone: [
          { guard: 'wantsDestroyed', target: 'destroyed', actions: stopped },
          { guard: 'hasCycle', target: 'starting', actions: stopped },
          // Requests that arrived after a stop: the stop is done, now their cycle starts.
          { guard: 'hasPending', target: 'starting', actions: [stopped, { type: 'beginOutstanding', params: { retry: false } }] },
          { target: 'idle', actions: stopped },
        ],
        onError: failureTransitions(),
      },
      on: {
        RESTART: [
          { guard: 'joinable', actions: ['join', 'answerJoined'] },
          { guard: 'wantsDestroyed', actions: ['noteRequestActivity', 'rejectDestroyed'] },
          { guard: 'deferrable', actions: 'defer' },
          { actions: 'begin' },
        ],
        ENSURE: [
          { guard: 'joinable', actions: ['join', 'answerJoined'] },
          { guard: 'wantsDestroyed', actions: ['noteRequestActivity', 'rejectDestroyed'] },
          { actions: 'begin' },
        ],
        ...STOP_AFTER_CALL,
        DEFERRED_DUE: [{ guard: 'joinable', actions: ['dueNow', 'deferredJoin'] }, { guard: 'hasDeferred', actions: ['dueNow', 'deferredToPending'] }],
      },
    },
    failed: {
      after: {
        backoffDue: [
          { guard: 'wantsRunning', target: 'stopping', actions: ['backoffNow', { type: 'beginOutstanding', params: { retry: true } }] },
          { guard: 'hasBackoff', target: 'stopping', actions: 'backoffNow' },
        ],
      },
      on: {
        RESTART: [{ guard: 'isManual', target: 'stopping', actions: 'begin' }, { guard: 'deferrable', actions: 'defer' }, { target: 'stopping', actions: 'begin' }],
        ENSURE: { target: 'stopping', actions: 'begin' },
        ...STOP_NOW,
        DEFERRED_DUE: { guard: 'hasDeferred', target: 'stopping', actions: ['dueNow', { type: 'beginOutstanding', params: { retry: false } }] },
        REARM: { target: 'failed', reenter: true, actions: ['observe', 'rearmDeferred'] },
      },
    },
    destroyed: {
      on: {
        RESTART: { actions: 'rejectDestroyed' },
        ENSURE: { actions: 'rejectDestroyed' },
        STOP: { actions: 'rejectDestroyed' },
        DESTROY: { actions: ['observe', 'answerStopped'] },
      },
    },
  },
});
