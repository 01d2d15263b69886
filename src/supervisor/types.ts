/** Public result and event types of the supervisor: the shapes the server, bus and visualizer read. */
import type {
  Desired,
  LifecycleState,
  Outcome,
  Request,
  RestartSource,
  SettledError,
} from '../../machines/workspace.types.ts';

export type { Desired, LifecycleState, Outcome, RestartSource };

export interface RestartOptions {
  source?: RestartSource;
  reason?: string;
  /** Who is asking, for the cycle's "why" (e.g. `cli:alice`); made unique by the supervisor. */
  requester?: string;
  /** Resolve only after the cycle that satisfies this request has completed (reject if it fails). */
  wait?: boolean;
}

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
  /** Prebuilds only (labelled by the ClaimService): the owner (the system owner until claimed) and pool. */
  owner?: string;
  pool?: string | null;
}

/** The "why" of a cycle: who asked, from where, and what each was told. */
export interface CycleWhy {
  n: number;
  source: RestartSource;
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
  | { type: 'cycle.failed'; id: string; cycle: CycleWhy; error: SettledError; at: number };

export type SupervisorLifecycle = 'starting' | 'ready' | 'draining' | 'stopped';
