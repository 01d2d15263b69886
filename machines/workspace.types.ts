/**
 * Types of the workspace statechart. Pure data: everything here must survive JSON round trips, because the
 * actor's snapshot is persisted and restored (src/store). No functions, no Dates, no Errors in context.
 */

/**
 * Why a restart was asked for: the one definition. `manual`, `claim` and `liveness` are never deferred.
 * The bus and the wire protocol keep their own copies (they must not import the machine); test/protocol/sources.test.ts
 * checks them equal.
 */
export const RESTART_SOURCES = ['manual', 'programmatic', 'file-write', 'liveness', 'claim'] as const;
export type RestartSource = (typeof RESTART_SOURCES)[number];

/** What a lifecycle policy acts for: the source on a policy's stop, start, dormancy mark or destroy. */
export const POLICY_SOURCES = ['idle', 'max-lifetime', 'schedule', 'dormancy'] as const;
export type PolicySource = (typeof POLICY_SOURCES)[number];

/**
 * The source on a cycle's why: a caller's restart source, or `schedule` (a scheduled start) or `update`
 * (a restart onto a template's new version). Callers can only ask with a RestartSource.
 */
export const CYCLE_SOURCES = [...RESTART_SOURCES, 'schedule', 'update'] as const;
export type CycleSource = (typeof CYCLE_SOURCES)[number];
/** Sources that are automatic and so subject to the self-fire window. */
export const AUTOMATIC_SOURCES: readonly CycleSource[] = ['programmatic', 'file-write'];

/** The answer a restart (or ensure) gets at once. */
export type Outcome = 'started' | 'joined' | 'queued' | 'deferred';

export type LifecycleState = 'idle' | 'starting' | 'running' | 'stopping' | 'failed' | 'destroyed';
export const LIFECYCLE_STATES: readonly LifecycleState[] = ['idle', 'starting', 'running', 'stopping', 'failed', 'destroyed'];

export type Desired = 'running' | 'stopped' | 'destroyed';

/** One request waiting to be satisfied by a cycle. `at` is when it arrived (ms since epoch, from the clock). */
export interface Request {
  requester: string;
  kind: 'restart' | 'ensure';
  source: CycleSource;
  reason: string;
  at: number;
  /** The answer it got: part of every cycle's "why". */
  outcome: Outcome;
}

/** A cycle: an optional provider stop followed by one provider start. */
export interface Cycle {
  n: number;
  source: CycleSource;
  reason: string;
  requests: Request[];
  startedAt: number;
  /** When the provider start began; `null` while the stop half runs (requests still join). */
  provisionAt: number | null;
  /** The ensure request that began this cycle from not-running, which alone gets `started: true`. */
  starter: string | null;
  /** Set when the cycle is an automatic retry after a failure. */
  retry: boolean;
}

export interface WorkspaceConfig {
  /** Automatic restarts within this long after a cycle's start are deferred to its end. */
  selfFireWindowMs: number;
  /** More than this many failures within `periodMs` is a crash loop. */
  maxRestarts: number;
  periodMs: number;
  backoffBaseMs: number;
  backoffCapMs: number;
  /**
   * Added to the idle timeout: activity can reach the actor up to this late (the bus coalesces it per window),
   * so an idle stop counts from `lastActivity.at + idleTimeoutMs + activityGraceMs`.
   */
  activityGraceMs: number;
}

export const DEFAULT_CONFIG: WorkspaceConfig = {
  selfFireWindowMs: 60_000,
  maxRestarts: 5,
  periodMs: 60_000,
  backoffBaseMs: 1_000,
  backoffCapMs: 300_000,
  activityGraceMs: 0,
};

/** A cron schedule in an IANA time zone (`Europe/Berlin`); DST-correct. */
export interface Schedule {
  cron: string;
  tz: string;
}

/**
 * Lifecycle policy of one workspace. Every field is nullable: null = off. Durations in ms. The effective
 * policy is server default ← template/pool default ← the workspace's own (`SET_POLICY` carries the result).
 */
export interface Policy {
  /** Stop a running workspace this long after its last activity. */
  idleTimeoutMs: number | null;
  /** Stop a running workspace this long after its current start, active or not. */
  maxLifetimeMs: number | null;
  /** Send a `warning` this long before a max-lifetime stop. */
  maxLifetimeWarnMs: number | null;
  /** Start a stopped workspace at these times. */
  autostart: Schedule | null;
  /** Stop a running workspace at these times. */
  autostop: Schedule | null;
  /** Mark a stopped workspace dormant after this long unused (still startable). */
  dormantAfterMs: number | null;
  /** Destroy a dormant workspace this long after it became dormant. Opt-in: never a default. */
  deleteDormantAfterMs: number | null;
  /** Whether the next start uses a changed template's new version. */
  autoUpdate: 'on-start' | 'never' | null;
}

export const NO_POLICY: Policy = {
  idleTimeoutMs: null,
  maxLifetimeMs: null,
  maxLifetimeWarnMs: null,
  autostart: null,
  autostop: null,
  dormantAfterMs: null,
  deleteDormantAfterMs: null,
  autoUpdate: null,
};

/** What a policy does next, and why: the view's `next`. */
export interface NextAction {
  action: 'stop' | 'start' | 'dormant' | 'destroy';
  at: number;
  source: PolicySource;
  /** Names the rule and the time, e.g. "idle for 30m since agent heartbeat at 14:02:11Z". */
  reason: string;
}

export interface WorkspaceSpecData {
  id: string;
  [key: string]: unknown;
}

/**
 * The inputs of the policy deadlines, and the earliest one. Nested rather than flat in the context: xstate's
 * `assign` copies the context on every event, and a top level of more than about 19 keys makes V8 copy it
 * into a slow dictionary object (several times the CPU per copy, and more memory). Keep the top level small.
 */
export interface PolicyTiming {
  /** The latest activity: when, and from where (`agent heartbeat`, `files.written`, `ensure`, `cli:alice`…). */
  lastActivity: { at: number; source: string } | null;
  /** When the current run began (its start completed); null whenever not running. Max lifetime counts from here. */
  runningSince: number | null;
  /**
   * When the workspace stopped (its stop completed, or it was created); null whenever not idle. Dormancy counts
   * from here or from activity, whichever is later.
   */
  stoppedAt: number | null;
  /** When it was marked dormant; null when not dormant. Any start clears it. */
  dormantSince: number | null;
  /** The `runningSince` whose max-lifetime warning was already sent (one warning per run). */
  warnedFor: number | null;
  /** The next occurrences of the schedules, computed after `now` (never at the moment a schedule is edited). */
  schedule: { nextStart: number | null; nextStop: number | null };
  /** While a scheduled start is being retried after failures: what is retried (`scheduled start "0 9 * * *" UTC`). */
  retryOf: string | null;
  /**
   * When the supervisor must send POLICY_DUE (`earliestDue` when last armed); null when nothing is due. The
   * machine raises no delayed event for policies: the supervisor keeps one deadline queue for every actor.
   */
  dueAt: number | null;
}

export const NO_TIMING: PolicyTiming = {
  lastActivity: null,
  runningSince: null,
  stoppedAt: null,
  dormantSince: null,
  warnedFor: null,
  schedule: { nextStart: null, nextStop: null },
  retryOf: null,
  dueAt: null,
};

/** The policy fields a snapshot stored before they were nested into `timing` held at its top level. */
export const FLAT_TIMING_KEYS = ['lastActivity', 'runningSince', 'stoppedAt', 'dormantSince', 'warnedFor', 'schedule', 'retryOf'] as const;

export interface WorkspaceContext {
  id: string;
  spec: WorkspaceSpecData;
  config: WorkspaceConfig;
  /** The latest time this actor has observed (from events); the machine never reads a wall clock. */
  now: number;
  desired: Desired;
  cycleCount: number;
  cycle: Cycle | null;
  lastCycleStartAt: number | null;
  /** Requests that arrived after the current provider start began: the one pending flag. */
  pending: Request[];
  /** Automatic requests inside the self-fire window, run together at `until`. */
  deferred: { until: number; requests: Request[] } | null;
  /** Failure timestamps within the crash-loop period. */
  failures: number[];
  backoffUntil: number | null;
  endpoint: string | null;
  lastError: { message: string; code: string; at: number; cycle: number } | null;
  /** Requesters waiting for a stop or destroy to finish. */
  stopWaiters: string[];
  /** The effective lifecycle policy (see Policy). */
  policy: Policy;
  /** Policy deadlines' inputs and the due time they give (one nested object: see PolicyTiming). */
  timing: PolicyTiming;
}

export interface WorkspaceInput {
  id: string;
  spec?: WorkspaceSpecData;
  config?: Partial<WorkspaceConfig>;
  now: number;
}

/**
 * A restart or ensure may carry `activity`: the request counts as activity from that source, recorded by the
 * transition that handles it (as an ACTIVITY sent just before it would be), in one event instead of two.
 */
export type WorkspaceEvent =
  | { type: 'RESTART'; requester: string; source: RestartSource; reason: string; at: number; activity?: string }
  | { type: 'ENSURE'; requester: string; at: number; activity?: string }
  | { type: 'STOP'; requester: string; at: number }
  | { type: 'DESTROY'; requester: string; at: number }
  | { type: 'LIVENESS'; alive: boolean; detail: string; requester: string; at: number }
  | { type: 'SET_SPEC'; spec: WorkspaceSpecData; at: number }
  /** Activity on the workspace: pushes the idle deadline out, and counts as use for dormancy. */
  | { type: 'ACTIVITY'; source: string; at: number }
  /** Replace the effective policy. Never starts or stops anything by itself. */
  | { type: 'SET_POLICY'; policy: Policy; at: number }
  /** A policy deadline is due (sent by the supervisor's deadline queue at `timing.dueAt`): act, re-arm. */
  | { type: 'POLICY_DUE'; at: number }
  /** Sent after restoring a snapshot with a deferral, a backoff or an older shape: re-arms its deadlines from context. */
  | { type: 'REARM'; at: number }
  | { type: 'DEFERRED_DUE' };

export interface ProvisionInput {
  id: string;
  spec: WorkspaceSpecData;
  cycle: number;
}
export interface DeprovisionInput {
  id: string;
  cycle: number;
}
/** Provider call results carry the time they completed, stamped by whoever supplies the actor. */
export interface ProvisionOutput {
  endpoint: string;
  at: number;
}
export interface DeprovisionOutput {
  at: number;
}

export interface SettledError {
  code: string;
  message: string;
}

/** Everything the machine tells the outside world, via `emit`. */
export type WorkspaceEmitted =
  | { type: 'answered'; requester: string; outcome: Outcome; cycle: number | null; at: number }
  | { type: 'rejected'; requester: string; error: SettledError; at: number }
  | { type: 'cycle.started'; cycle: Cycle; at: number }
  | { type: 'cycle.provisioning'; cycle: number; at: number }
  | { type: 'cycle.completed'; cycle: Cycle; endpoint: string; at: number }
  | { type: 'cycle.failed'; cycle: Cycle; error: SettledError; at: number }
  /**
   * A policy acted (`stop`, `start`, `dormant`, `destroy`), warned (`warning`, with `stopAt`), or could not act
   * (`skipped`: e.g. a scheduled start refused by a quota, with the reason).
   */
  | {
      type: 'policy';
      action: 'stop' | 'start' | 'dormant' | 'destroy' | 'warning' | 'skipped';
      source: PolicySource;
      reason: string;
      at: number;
      stopAt?: number;
    }
  | {
      type: 'settled';
      requesters: string[];
      ok: boolean;
      cycle: number | null;
      endpoint: string | null;
      starter: string | null;
      error: SettledError | null;
      at: number;
    };
