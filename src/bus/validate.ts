/**
 * Edge validation for bus events. Plain checks, not zod: this runs once per file write and the bus must carry
 * ≥ 1M events/s, so each check is a typeof or a regex test. Every failure is a named error with a stable code
 * whose message names the event kind, the field and what was wrong.
 */
import { WORKSPACE_ID, WsupError } from '../errors.ts';
import { RESTART_SOURCES, type ActivityEvent, type ClaimEvent, type FileWritten, type LivenessEvent, type RestartEvent } from './types.ts';

export type BusEventKind = 'file-write' | 'liveness' | 'claim' | 'restart' | 'activity';

/** The event itself is malformed (missing field, wrong type, bad id). */
export class InvalidBusEventError extends WsupError {
  readonly kind: BusEventKind;
  readonly field: string;
  constructor(kind: BusEventKind, field: string, problem: string, workspaceId?: string) {
    super('WSUP_INVALID_ARGUMENT', `invalid ${kind} event: ${field} ${problem}`, workspaceId ? { workspaceId } : {});
    this.kind = kind;
    this.field = field;
  }
}

/** `sink.accepts` said no: the workspace does not exist or is destroyed. Never queued for later. */
export class UnknownWorkspaceError extends WsupError {
  readonly kind: BusEventKind;
  constructor(kind: BusEventKind, workspaceId: string) {
    super(
      'WSUP_NOT_FOUND',
      `${kind} event rejected: workspace ${workspaceId} does not exist or is destroyed; create it before sending events`,
      { workspaceId },
    );
    this.kind = kind;
  }
}

const MAX_TEXT = 4096;
/** The supervisor's limit on an activity source: refused here, at the edge, rather than by the sink later. */
const MAX_SOURCE = 128;

function record(kind: BusEventKind, ev: unknown): Record<string, unknown> {
  if (typeof ev !== 'object' || ev === null) throw new InvalidBusEventError(kind, 'event', `must be an object, got ${ev === null ? 'null' : typeof ev}`);
  return ev as Record<string, unknown>;
}

function id(kind: BusEventKind, ev: Record<string, unknown>): string {
  const v = ev.workspaceId;
  if (typeof v !== 'string' || !WORKSPACE_ID.test(v)) {
    throw new InvalidBusEventError(kind, 'workspaceId', `${JSON.stringify(v)} is not a workspace id (1-63 chars of a-z, 0-9, '_', '.', '-')`);
  }
  return v;
}

function text(kind: BusEventKind, ev: Record<string, unknown>, field: string, workspaceId: string, allowEmpty = false): string {
  const v = ev[field];
  if (typeof v !== 'string' || (!allowEmpty && v.length === 0) || v.length > MAX_TEXT) {
    const what = typeof v === 'string' ? (v.length === 0 ? 'is empty' : `is longer than ${MAX_TEXT} chars`) : `must be a string, got ${typeof v}`;
    throw new InvalidBusEventError(kind, field, what, workspaceId);
  }
  return v;
}

/**
 * Hot path (once per write): checks in place without copying, and checks only that `workspaceId` is a string.
 * Its format is checked by {@link assertWorkspaceIdFor} only when the sink does not know the id: an id the
 * supervisor accepts was validated when the workspace was created, and the regex was ~15% of the per-write cost.
 */
export function assertFileWrittenShape(ev: unknown): asserts ev is FileWritten {
  const r = record('file-write', ev);
  const workspaceId = r.workspaceId;
  if (typeof workspaceId !== 'string') id('file-write', r);
  // Named property reads on the fast path; the generic checks run only to build the error.
  const path = r.path;
  if (typeof path !== 'string' || path.length === 0 || path.length > MAX_TEXT) text('file-write', r, 'path', workspaceId as string);
  const at = r.at;
  if (typeof at !== 'number' || !Number.isFinite(at)) {
    throw new InvalidBusEventError('file-write', 'at', `must be a finite number of ms, got ${String(at)}`, workspaceId as string);
  }
}

/**
 * Hot path (once per activity event), checked in place like {@link assertFileWrittenShape}: the id's format is
 * checked only when the sink does not know it.
 */
export function assertActivityShape(ev: unknown): asserts ev is ActivityEvent {
  const r = record('activity', ev);
  const workspaceId = r.workspaceId;
  if (typeof workspaceId !== 'string') id('activity', r);
  const source = r.source;
  if (typeof source !== 'string' || source.length === 0 || source.length > MAX_SOURCE) {
    const what = typeof source === 'string' ? (source.length === 0 ? 'is empty' : `is longer than ${MAX_SOURCE} chars`) : `must be a string, got ${typeof source}`;
    throw new InvalidBusEventError('activity', 'source', `${what} (name who or what used the workspace, e.g. "agent heartbeat")`, workspaceId as string);
  }
  const at = r.at;
  if (typeof at !== 'number' || !Number.isFinite(at)) {
    throw new InvalidBusEventError('activity', 'at', `must be a finite number of ms, got ${String(at)}`, workspaceId as string);
  }
}

/** Throws `InvalidBusEventError` for a malformed id: tells "bad id" apart from "unknown workspace". */
export function assertWorkspaceIdFor(kind: BusEventKind, workspaceId: string): void {
  id(kind, { workspaceId });
}

export function parseLiveness(ev: unknown): LivenessEvent {
  const r = record('liveness', ev);
  const workspaceId = id('liveness', r);
  if (typeof r.alive !== 'boolean') throw new InvalidBusEventError('liveness', 'alive', `must be a boolean, got ${typeof r.alive}`, workspaceId);
  return { workspaceId, alive: r.alive, detail: text('liveness', r, 'detail', workspaceId, true) };
}

export function parseClaim(ev: unknown): ClaimEvent {
  const r = record('claim', ev);
  const workspaceId = id('claim', r);
  return {
    workspaceId,
    ownerId: text('claim', r, 'ownerId', workspaceId),
    claimBuildId: text('claim', r, 'claimBuildId', workspaceId),
  };
}

export function parseRestart(ev: unknown): RestartEvent {
  const r = record('restart', ev);
  const workspaceId = id('restart', r);
  const source = r.source;
  if (typeof source !== 'string' || !(RESTART_SOURCES as readonly string[]).includes(source)) {
    throw new InvalidBusEventError('restart', 'source', `${JSON.stringify(source)} is not one of ${RESTART_SOURCES.join(', ')}`, workspaceId);
  }
  return {
    workspaceId,
    source: source as RestartEvent['source'],
    reason: text('restart', r, 'reason', workspaceId),
    requester: text('restart', r, 'requester', workspaceId),
  };
}
