/**
 * Types of the workspace statechart. Pure data: everything here must survive JSON round trips, because the
 * actor's snapshot is persisted and restored (src/store). No functions, no Dates, no Errors in context.
 */

/** Why a restart was asked for. `manual`, `claim` and `liveness` are never deferred. */
export type RestartSource = 'manual' | 'programmatic' | 'file-write' | 'liveness' | 'claim';
export const RESTART_SOURCES: readonly RestartSource[] = ['manual', 'programmatic', 'file-write', 'liveness', 'claim'];
/** Sources that are automatic and so subject to the self-fire window. */
export const AUTOMATIC_SOURCES: readonly RestartSource[] = ['programmatic', 'file-write'];

/** The answer a restart (or ensure) gets at once. */
export type Outcome = 'started' | 'joined' | 'queued' | 'deferred';

export type LifecycleState = 'idle' | 'starting' | 'running' | 'stopping' | 'failed' | 'destroyed';
export const LIFECYCLE_STATES: readonly LifecycleState[] = ['idle', 'starting', 'running', 'stopping', 'failed', 'destroyed'];

export type Desired = 'running' | 'stopped' | 'destroyed';

/** One request waiting to be satisfied by a cycle. `at` is when it arrived (ms since epoch, from the clock). */
export interface Request {
  requester: string;
  kind: 'restart' | 'ensure';
  source: RestartSource;
  reason: string;
  at: number;
  /** The answer it got: part of every cycle's "why". */
  outcome: Outcome;
}

/** A cycle: an optional provider stop followed by one provider start. */
export interface Cycle {
  n: number;
  source: RestartSource;
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
}

export const DEFAULT_CONFIG: WorkspaceConfig = {
  selfFireWindowMs: 60_000,
  maxRestarts: 5,
  periodMs: 60_000,
  backoffBaseMs: 1_000,
  backoffCapMs: 300_000,
};

export interface WorkspaceSpecData {
  id: string;
  [key: string]: unknown;
}

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
}

export interface WorkspaceInput {
  id: string;
  spec?: WorkspaceSpecData;
  config?: Partial<WorkspaceConfig>;
  now: number;
}

export type WorkspaceEvent =
  | { type: 'RESTART'; requester: string; source: RestartSource; reason: string; at: number }
  | { type: 'ENSURE'; requester: string; at: number }
  | { type: 'STOP'; requester: string; at: number }
  | { type: 'DESTROY'; requester: string; at: number }
  | { type: 'LIVENESS'; alive: boolean; detail: string; requester: string; at: number }
  | { type: 'SET_SPEC'; spec: WorkspaceSpecData; at: number }
  /** Sent after restoring a persisted snapshot: re-arms the deadline timers XState does not restore. */
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
