/** Public result and event types of the supervisor: the shapes the server, bus and visualizer read. */
import type {
  CycleSource,
  Desired,
  LifecycleState,
  NextAction,
  Outcome,
  Policy,
  PolicySource,
  Request,
  RestartSource,
  Schedule,
  SettledError,
} from '../../machines/workspace.types.ts';

export type { CycleSource, Desired, LifecycleState, NextAction, Outcome, Policy, PolicySource, RestartSource, Schedule };

/** A policy as callers set it: every field optional (absent = inherit the default), null = off. */
export type PolicyPatch = Partial<Policy>;

export interface ActivityResult {
  id: string;
  /** When the workspace stops for idleness if nothing else happens; null when no idle timeout applies. */
  idleDeadline: number | null;
}

export interface RestartOptions {
  source?: RestartSource;
  reason?: string;
  /** Who is asking, for the cycle's "why" (e.g. `cli:alice`); made unique by the supervisor. */
  requester?: string;
  /** Resolve only after the cycle that satisfies this request has completed (reject if it fails). */
  wait?: boolean;
}

/** `Supervisor.update`: a restart with source `update`, onto the spec the server re-rendered. */
export type UpdateOptions = Omit<RestartOptions, 'source'>;

export interface RestartResult {
  id: string;
  outcome: Outcome;
  /** The cycle that satisfies the request; `null` while deferred (it may be absorbed by an earlier one). */
  cycle: number | null;
  state: LifecycleState;
  requester: string;
}

export interface EnsureResult {
  id: string;
  /** True for exactly one caller: the one whose request started the workspace. */
  started: boolean;
  endpoint: string;
  state: LifecycleState;
}

export interface WorkspaceView {
  id: string;
  state: LifecycleState;
  desired: Desired;
  endpoint: string | null;
  cycle: number;
  pending: number;
  deferredUntil: number | null;
  backoffUntil: number | null;
  lastError: { message: string; code: string; at: number; cycle: number } | null;
  spec: Record<string, unknown>;
  /** The effective lifecycle policy (null fields are off). */
  policy: Policy;
  lastActivityAt: number | null;
  /** Stopped and unused past `dormantAfterMs`: still startable; any start clears it. */
  dormant: boolean;
  /** What a policy does next, when, and why; null when nothing is scheduled. */
  next: NextAction | null;
  /** Built from an older version of its template than the server has now (labelled by the server). */
  outdated?: boolean;
  /** Prebuilds only (labelled by the ClaimService): the owner (the system owner until claimed) and pool. */
  owner?: string;
  pool?: string | null;
}

/** The "why" of a cycle: who asked, from where, and what each was told. */
export interface CycleWhy {
  n: number;
  source: CycleSource;
  reason: string;
  retry: boolean;
  requesters: Array<Pick<Request, 'requester' | 'source' | 'reason' | 'outcome' | 'at'>>;
  startedAt: number;
  provisionAt: number | null;
}

export type SupervisorEvent =
  | { type: 'transition'; id: string; from: LifecycleState | null; to: LifecycleState; at: number; cycle: CycleWhy | null }
  | { type: 'request'; id: string; requester: string; outcome: Outcome; cycle: number | null; at: number }
  | { type: 'cycle.started'; id: string; cycle: CycleWhy; at: number }
  | { type: 'cycle.provisioning'; id: string; cycle: number; at: number }
  | {
      type: 'cycle.completed';
      id: string;
      cycle: CycleWhy;
      endpoint: string;
      at: number;
      durations: { stopMs: number | null; startMs: number | null; totalMs: number };
    }
  | { type: 'cycle.failed'; id: string; cycle: CycleWhy; error: SettledError; at: number }
  /** A policy acted, or could not (`skipped`); `reason` names the rule and the time. */
  | { type: 'policy'; id: string; action: 'stop' | 'start' | 'dormant' | 'destroy' | 'skipped'; source: PolicySource; reason: string; at: number }
  /** A max-lifetime stop is coming at `stopAt`: to subscribers and to the workspace's agent. */
  | { type: 'policy.warning'; id: string; source: PolicySource; reason: string; stopAt: number; at: number };

export type SupervisorLifecycle = 'starting' | 'ready' | 'draining' | 'stopped';
