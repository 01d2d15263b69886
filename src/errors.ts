/**
 * Small named errors with stable codes. Every message names its subject and, where there is one, the fix.
 * Protocol layers map `code` to wire codes in one table (src/server); nothing else switches on messages.
 */
export type WsupErrorCode =
  | 'WSUP_INVALID_ID'
  | 'WSUP_INVALID_ARGUMENT'
  | 'WSUP_NOT_FOUND'
  | 'WSUP_DESTROYED'
  | 'WSUP_SUPERSEDED'
  | 'WSUP_CYCLE_FAILED'
  | 'WSUP_PROVIDER_TIMEOUT'
  | 'WSUP_SHUTTING_DOWN'
  | 'WSUP_STORE'
  | 'WSUP_CORRUPT_STATE'
  | 'WSUP_CLAIM_CONFLICT'
  | 'WSUP_NOT_PREBUILD'
  | 'WSUP_FENCED'
  | 'WSUP_OUTCOME_UNKNOWN'
  | 'WSUP_POLICY'
  | 'WSUP_SUBSCRIPTION_LIMIT'
  | 'WSUP_QUOTA';

export class WsupError extends Error {
  readonly code: WsupErrorCode;
  readonly workspaceId: string | undefined;
  /** Machine-readable detail the wire error carries in `data` next to the code (e.g. a policy's field and rule). */
  readonly detail: Record<string, string | number> | undefined;
  constructor(code: WsupErrorCode, message: string, opts: { workspaceId?: string; cause?: unknown; detail?: Record<string, string | number> } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = new.target.name;
    this.code = code;
    this.workspaceId = opts.workspaceId;
    this.detail = opts.detail;
  }
}

export class InvalidWorkspaceIdError extends WsupError {
  constructor(id: unknown) {
    super(
      'WSUP_INVALID_ID',
      `invalid workspace id ${JSON.stringify(id)}: use 1-63 chars of a-z, 0-9, '_', '.', '-', starting with a letter or digit`,
    );
  }
}

export class WorkspaceNotFoundError extends WsupError {
  constructor(id: string) {
    super('WSUP_NOT_FOUND', `workspace ${id} not found: create it first or check the id`, { workspaceId: id });
  }
}

export class WorkspaceDestroyedError extends WsupError {
  constructor(id: string) {
    super('WSUP_DESTROYED', `workspace ${id} is destroyed: create a new workspace to use this id's resources`, {
      workspaceId: id,
    });
  }
}

export class SupersededError extends WsupError {
  constructor(id: string, by: string) {
    super('WSUP_SUPERSEDED', `request on workspace ${id} was superseded by ${by} before its cycle ran`, {
      workspaceId: id,
    });
  }
}

export class CycleFailedError extends WsupError {
  constructor(id: string, cycle: number, message: string, cause?: unknown) {
    super('WSUP_CYCLE_FAILED', `workspace ${id} cycle ${cycle} failed: ${message}`, { workspaceId: id, cause });
  }
}

export class ProviderTimeoutError extends WsupError {
  constructor(id: string, op: string, ms: number) {
    super('WSUP_PROVIDER_TIMEOUT', `provider ${op} for workspace ${id} timed out after ${ms} ms`, { workspaceId: id });
  }
}

/**
 * A command whose outcome nobody can tell: it was accepted, and it may have taken effect, or may still.
 * The one failure a cluster lets a caller see for a shard move; every other move is carried to the owner.
 */
export class OutcomeUnknownError extends WsupError {
  constructor(message: string, workspaceId?: string) {
    super('WSUP_OUTCOME_UNKNOWN', `${message}: read the workspace to see whether it took effect`, workspaceId === undefined ? {} : { workspaceId });
  }
}

export class ShuttingDownError extends WsupError {
  constructor(what = 'supervisor') {
    super('WSUP_SHUTTING_DOWN', `${what} is shutting down and accepts no new commands`);
  }
}

/** A claim that cannot be granted: lost the race, pool empty, or the workspace is not claimable. */
export class ClaimConflictError extends WsupError {
  constructor(message: string, workspaceId?: string) {
    super('WSUP_CLAIM_CONFLICT', message, workspaceId === undefined ? {} : { workspaceId });
  }
}

/** The workspace was never a prebuild: its agent has no reinit to wait for (an HTTP 409 on `/agent`). */
export class NotPrebuildError extends WsupError {
  constructor(id: string) {
    super('WSUP_NOT_PREBUILD', `workspace ${id} is not a prebuild: no claim will ever reinitialize its agent, stop waiting`, { workspaceId: id });
  }
}

/** A connection asked for more subscriptions, or more watched ids, than its cap allows. */
export class SubscriptionLimitError extends WsupError {
  constructor(
    readonly limit: 'maxSubscriptions' | 'maxSubscribedIds',
    readonly max: number,
    message: string,
  ) {
    super('WSUP_SUBSCRIPTION_LIMIT', `${message} (${limit} ${max}): unsubscribe first, or watch fewer ids`, { detail: { limit, max } });
  }
}

/**
 * A workspace request outside what the admin allows: a raw spec from a non-admin, a template the caller may
 * not use, or a parameter outside its template's rules. `field` is the offending path (`params.env.PATH`),
 * `rule` what it broke; nothing was stored or started.
 */
export class PolicyError extends WsupError {
  readonly field: string;
  readonly rule: string;
  constructor(field: string, rule: string, workspaceId?: string) {
    super('WSUP_POLICY', `refused by policy: ${field}: ${rule}`, { ...(workspaceId === undefined ? {} : { workspaceId }), detail: { field, rule } });
    this.field = field;
    this.rule = rule;
  }
}

/**
 * Thrown by a commit or a provider call for a shard whose lease this replica no longer holds, and by a
 * provider whose resource carries a newer fencing epoch than the call's (another replica took it over).
 */
export class FencedError extends WsupError {
  constructor(shard: number, detail: string) {
    super('WSUP_FENCED', `shard ${shard}: ${detail}: this replica no longer owns it, retry through the cluster`);
  }
}

export const WORKSPACE_ID = /^[a-z0-9][a-z0-9_.-]{0,62}$/;

/** Validate an id at the edge; ids become container and instance names. */
export function assertWorkspaceId(id: unknown): asserts id is string {
  if (typeof id !== 'string' || !WORKSPACE_ID.test(id)) throw new InvalidWorkspaceIdError(id);
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
