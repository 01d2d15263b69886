/**
 * Turns a `Provider` into the `provision` / `deprovision` actors the workspace machine invokes.
 *
 * Timeouts live here, not in the machine: at the deadline the call's AbortSignal fires, and the actor
 * settles only when the provider's promise does. The machine therefore stays in `starting`/`stopping`
 * until the call has really ended, so a timed-out call can never overlap the next one (single flight
 * beats a quick answer). Completion times are stamped from the injected clock.
 */
import { fromPromise } from 'xstate';
import type {
  DeprovisionInput,
  DeprovisionOutput,
  ProvisionInput,
  ProvisionOutput,
} from '../../machines/workspace.types.ts';
import { errorMessage, ProviderTimeoutError, WsupError } from '../errors.ts';
import type { Provider } from '../providers/types.ts';
import type { Clock } from './clock.ts';

/** What the machine sees when a provider call fails: a message, a stable code, and when it happened. */
export class ProviderCallError extends Error {
  readonly code: string;
  readonly at: number;
  constructor(message: string, code: string, at: number, cause: unknown) {
    super(message, { cause });
    this.name = 'ProviderCallError';
    this.code = code;
    this.at = at;
  }
}

export interface ProviderActorOptions {
  provider: Provider;
  clock: Clock;
  /** Abort a provider call after this long. Default 10 minutes. */
  timeoutMs: number;
  /** Last hook before a start: e.g. inject a fresh agent token into the spec (stored before it is used). */
  prepareSpec?: (input: ProvisionInput) => ProvisionInput['spec'] | Promise<ProvisionInput['spec']>;
  onCall?: (op: 'start' | 'stop', id: string, ms: number, ok: boolean) => void;
  /**
   * Write-ahead: resolves once the workspace's transitions so far are committed (null: nothing pending).
   * Every call waits for it, so the transition that made the call is durable before the provider acts: a
   * kill in between must not leave a resource that the stored state says was never asked for.
   */
  committed?: (id: string) => Promise<void> | null | undefined;
}

/**
 * Wait until the transition that invoked this call is committed. XState starts an invoked actor before it
 * tells observers of the new snapshot, and the supervisor hands that snapshot to the store from its observer:
 * one microtask later the write is issued, and `committed` covers it.
 */
async function afterCommit(committed: NonNullable<ProviderActorOptions['committed']>, id: string): Promise<void> {
  await Promise.resolve();
  await committed(id);
}

async function withTimeout<T>(
  opts: ProviderActorOptions,
  op: 'start' | 'stop',
  id: string,
  parent: AbortSignal,
  call: (signal: AbortSignal) => Promise<T>,
): Promise<{ value: T; at: number }> {
  const { clock, timeoutMs } = opts;
  const controller = new AbortController();
  let timedOut = false;
  const onParentAbort = () => controller.abort(parent.reason);
  if (parent.aborted) controller.abort(parent.reason);
  else parent.addEventListener('abort', onParentAbort, { once: true });
  const timer = clock.setTimeout(() => {
    timedOut = true;
    controller.abort(new ProviderTimeoutError(id, op, timeoutMs));
  }, timeoutMs);
  const began = clock.now();
  try {
    const value = await call(controller.signal);
    opts.onCall?.(op, id, clock.now() - began, true);
    return { value, at: clock.now() };
  } catch (err) {
    const now = clock.now();
    opts.onCall?.(op, id, now - began, false);
    if (timedOut) throw new ProviderCallError(`provider ${op} timed out after ${timeoutMs} ms`, 'WSUP_PROVIDER_TIMEOUT', now, err);
    const code = err instanceof WsupError ? err.code : 'WSUP_PROVIDER_ERROR';
    throw new ProviderCallError(`provider ${op} failed: ${errorMessage(err)}`, code, now, err);
  } finally {
    clock.clearTimeout(timer);
    parent.removeEventListener('abort', onParentAbort);
  }
}

export function providerActors(opts: ProviderActorOptions) {
  return {
    provision: fromPromise<ProvisionOutput, ProvisionInput>(async ({ input, signal }) => {
      if (opts.committed) await afterCommit(opts.committed, input.id);
      const spec = opts.prepareSpec ? await opts.prepareSpec(input) : input.spec;
      const { value, at } = await withTimeout(opts, 'start', input.id, signal, (s) => opts.provider.start({ ...spec, id: input.id }, s));
      return { endpoint: value, at };
    }),
    deprovision: fromPromise<DeprovisionOutput, DeprovisionInput>(async ({ input, signal }) => {
      if (opts.committed) await afterCommit(opts.committed, input.id);
      const { at } = await withTimeout(opts, 'stop', input.id, signal, (s) => opts.provider.stop(input.id, s));
      return { at };
    }),
  };
}
