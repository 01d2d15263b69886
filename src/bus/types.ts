/**
 * The bus's port into the supervisor, and the event shapes producers send.
 *
 * The bus sits below the supervisor (docs/architecture.md, "Layers"), so it never imports it: the supervisor implements
 * {@link BusSink} and hands it to `createBus`. Keep the port this small; everything else is the actor's business.
 */
import type { SchedulerLike } from 'rxjs';

/**
 * A copy of `machines/workspace.types.ts` (the one definition), restated so the bus depends on nothing but this
 * port; test/protocol/sources.test.ts checks them equal.
 */
export const RESTART_SOURCES = ['manual', 'programmatic', 'file-write', 'liveness', 'claim'] as const;
export type RestartSource = (typeof RESTART_SOURCES)[number];

export interface RestartRequest {
  source: RestartSource;
  reason: string;
  requester: string;
}

/** What the bus needs from the supervisor. */
export interface BusSink {
  /** true when the workspace exists and is not destroyed */
  accepts(workspaceId: string): boolean;
  restart(workspaceId: string, req: RestartRequest): void | Promise<unknown>;
  liveness(workspaceId: string, alive: boolean, detail: string): void;
  claim?(workspaceId: string, ownerId: string, claimBuildId: string): void;
  /** Activity on the workspace (already coalesced: at most one per `activityWindowMs` per workspace). */
  activity?(workspaceId: string, source: string): unknown;
}

/** A file was written into the workspace. `at` is the producer's timestamp (ms); coalescing uses scheduler time. */
export interface FileWritten {
  workspaceId: string;
  path: string;
  at: number;
}

export interface LivenessEvent {
  workspaceId: string;
  alive: boolean;
  detail: string;
}

export interface ClaimEvent {
  workspaceId: string;
  ownerId: string;
  claimBuildId: string;
}

/**
 * Someone used the workspace: `source` says who or what (`files.written`, `agent heartbeat`, `cli:alice`).
 * `at` is the producer's timestamp (ms); coalescing uses scheduler time.
 */
export interface ActivityEvent {
  workspaceId: string;
  source: string;
  at: number;
}

export interface RestartEvent extends RestartRequest {
  workspaceId: string;
}

/** One coalesced burst of writes to one workspace: what becomes a single `file-write` restart. */
export interface Burst {
  workspaceId: string;
  /** Distinct paths in first-write order. */
  paths: string[];
  /** Writes folded into this burst (≥ paths.length: a path written twice counts twice). */
  writes: number;
  /** Scheduler time of the first and last write of the burst. */
  firstAt: number;
  lastAt: number;
}

/** Everything the routing stage delivers to the sink, in one ordered stream. */
export type BusCommand =
  | { kind: 'restart'; workspaceId: string; req: RestartRequest }
  | { kind: 'liveness'; workspaceId: string; alive: boolean; detail: string }
  | { kind: 'claim'; workspaceId: string; ownerId: string; claimBuildId: string }
  | { kind: 'activity'; workspaceId: string; source: string };

export interface CoalesceOptions {
  quietMs: number;
  maxWaitMs: number;
  /** A group is released this long after its last burst flushed, if no write reopened it. */
  idleExpireMs: number;
  scheduler: SchedulerLike;
  /** +1 when a workspace group is created, −1 when it is released: lets the bus count live groups. */
  onGroup?: (delta: 1 | -1) => void;
}

export interface BusCounters {
  /** File writes accepted at the edge. */
  writesSeen: number;
  /** Coalesced bursts flushed (each became one file-write restart, unless its workspace was gone by then). */
  bursts: number;
  /** Restarts handed to the sink, all sources. */
  restartsIssued: number;
  /** Writes absorbed into a burst without a restart of their own (writes − bursts, once flushed). */
  writesFolded: number;
  /** Events refused at the edge: invalid, unknown/destroyed workspace, or bus closed. */
  rejected: number;
  /** Commands not delivered: the workspace was destroyed between the event and the flush. */
  dropped: number;
  /** Sink calls that threw or rejected (reported through `onSinkError`). */
  sinkErrors: number;
  /** Per-workspace coalescing groups alive right now (released after `idleExpireMs` of silence). */
  activeGroups: number;
  /** Activity events accepted at the edge. */
  activitySeen: number;
  /** Activity handed to the sink (leading and trailing deliveries). */
  activityDelivered: number;
  /** Activity events replaced by a later one inside the same window (seen = delivered + folded + pending). */
  activityFolded: number;
  /** Workspaces with an open activity window right now (released when a window closes with nothing pending). */
  activityWindows: number;
}

export interface BusOptions {
  sink: BusSink;
  /** Source of time for every window; defaults to `asyncScheduler`. Tests pass a `TestScheduler`. */
  scheduler?: SchedulerLike;
  /** Trailing quiet window: a burst ends after this much silence. Default 2000. */
  quietMs?: number;
  /** Cap from a burst's first write: an endless stream still restarts this often. Default 15000. */
  maxWaitMs?: number;
  /** A workspace's group is released this long after its last burst flushed, if no write reopened it. Default 30000. */
  idleExpireMs?: number;
  /** Activity per workspace reaches the sink at most once per this window, leading and trailing. Default 1000. */
  activityWindowMs?: number;
  /** Called when a sink call throws or its promise rejects; the bus keeps routing either way. */
  onSinkError?: (err: unknown, cmd: BusCommand) => void;
}
