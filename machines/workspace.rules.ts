/**
 * The contract's rules as pure functions of context and time. The machine wires them to states; keeping
 * them here makes each rule one readable line and lets tests name them.
 *
 * One rule unifies them all: a request is satisfied by the first cycle whose provider start begins after
 * it arrived. The outcome only says which cycle that will be and when it runs.
 */
import {
  AUTOMATIC_SOURCES,
  type Cycle,
  type CycleSource,
  type Request,
  type RestartSource,
  type SettledError,
  type WorkspaceContext,
} from './workspace.types.ts';

export const isAutomatic = (source: RestartSource): boolean => AUTOMATIC_SOURCES.includes(source);

/** Inside the self-fire window: less than `selfFireWindowMs` since the last cycle started. */
export function inSelfFireWindow(ctx: WorkspaceContext, at: number): boolean {
  return ctx.lastCycleStartAt !== null && at < ctx.lastCycleStartAt + ctx.config.selfFireWindowMs;
}

/** An automatic request inside the window is deferred to the window's end, never dropped. */
export function shouldDefer(ctx: WorkspaceContext, source: RestartSource, at: number): boolean {
  return isAutomatic(source) && inSelfFireWindow(ctx, at);
}

/** The current cycle has not begun its provider start yet, so a new request is satisfied by it. */
export function joinable(ctx: WorkspaceContext): boolean {
  return ctx.cycle !== null && ctx.cycle.provisionAt === null;
}

/** Failures still inside the crash-loop period at time `at`, including one more if `plusOne`. */
export function recentFailures(ctx: WorkspaceContext, at: number, plusOne: boolean): number[] {
  const kept = ctx.failures.filter((t) => t > at - ctx.config.periodMs);
  return plusOne ? [...kept, at] : kept;
}

/** More than `maxRestarts` failures within `period` is a crash loop. */
export function crashLoop(ctx: WorkspaceContext, at: number): boolean {
  return recentFailures(ctx, at, true).length > ctx.config.maxRestarts;
}

/** Exponential backoff: base doubling per failure beyond the limit, capped. */
export function backoffMs(ctx: WorkspaceContext, failureCount: number): number {
  const beyond = Math.max(0, failureCount - ctx.config.maxRestarts - 1);
  return Math.min(ctx.config.backoffCapMs, ctx.config.backoffBaseMs * 2 ** Math.min(beyond, 30));
}

/** Every request that is waiting for a future cycle: the pending flag and the deferred set. */
export function outstanding(ctx: WorkspaceContext): Request[] {
  return [...ctx.pending, ...(ctx.deferred?.requests ?? [])];
}

/** Build the next cycle from the requests that begin it plus everything outstanding. */
export function nextCycle(
  ctx: WorkspaceContext,
  first: Request[],
  at: number,
  opts: { starter?: string | null; retry?: boolean; source?: CycleSource; reason?: string } = {},
): Cycle {
  const requests = [...first, ...outstanding(ctx)];
  const lead = requests[0];
  return {
    n: ctx.cycleCount + 1,
    source: opts.source ?? lead?.source ?? 'programmatic',
    reason: opts.reason ?? lead?.reason ?? 'automatic retry',
    requests,
    startedAt: at,
    provisionAt: null,
    starter: opts.starter ?? null,
    retry: opts.retry ?? false,
  };
}

export function requesters(requests: readonly Request[]): string[] {
  return requests.map((r) => r.requester);
}

export const superseded = (id: string, by: string): SettledError => ({
  code: 'WSUP_SUPERSEDED',
  message: `request on workspace ${id} was superseded by ${by} before its cycle ran`,
});

export const destroyedError = (id: string): SettledError => ({
  code: 'WSUP_DESTROYED',
  message: `workspace ${id} is destroyed: create a new workspace to use this id`,
});

/** Read what a provider-call actor threw; the supplier stamps `at` and may set a `code`. */
export function errorInfo(error: unknown, fallbackAt: number): { message: string; code: string; at: number } {
  if (typeof error === 'object' && error !== null) {
    const e = error as { message?: unknown; code?: unknown; at?: unknown };
    return {
      message: typeof e.message === 'string' ? e.message : JSON.stringify(error),
      code: typeof e.code === 'string' ? e.code : 'WSUP_PROVIDER_ERROR',
      at: typeof e.at === 'number' ? e.at : fallbackAt,
    };
  }
  return { message: String(error), code: 'WSUP_PROVIDER_ERROR', at: fallbackAt };
}
