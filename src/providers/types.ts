/**
 * One interface per kind of I/O: every workspace backend (docker, ec2, local process, fake) implements
 * `Provider`. The supervisor never calls it directly; a workspace actor invokes it, one call at a time.
 *
 * Contract:
 * - `start` and `stop` are idempotent: starting a running workspace returns its endpoint, stopping an
 *   absent one succeeds. Restored actors re-run an interrupted call, so this is load-bearing.
 * - Both honour `signal`: when it aborts, they stop waiting and reject with the signal's reason (or an
 *   AbortError), leaving the workspace in a state a later `start`/`stop` can converge from.
 * - Errors are thrown, never swallowed; the actor records them as the cycle's failure.
 * - In a cluster, every call carries the caller's `fence` (its shard lease's epoch). A provider that can
 *   tag its resources records the epoch on what it creates and refuses (`FencedError`, code WSUP_FENCED)
 *   to create, replace or remove a resource carrying a newer epoch than the call's: a replica frozen past
 *   its lease and resumed after a takeover changes nothing. Without a fence (one node) nothing is checked.
 */
export interface Provider {
  /** Short name used in logs, metrics and labels: `docker`, `ec2`, `process`, `fake`. */
  readonly kind: string;
  /** Create (or adopt) and start the workspace; resolves once it is reachable. */
  start(spec: WorkspaceSpec, signal: AbortSignal, fence?: ProviderFence): Promise<Endpoint>;
  /** Stop and remove the workspace's resources. An absent workspace is success. */
  stop(id: string, signal: AbortSignal, fence?: ProviderFence): Promise<void>;
  /** The provider's own view of one workspace, or `null` when it has no resource for it. */
  inspect(id: string): Promise<ProviderResource | null>;
  /** Every resource this provider manages for wsup (and only those). */
  list(): Promise<ProviderResource[]>;
  /** Optional drift feed: the provider saw a workspace die or vanish out of band. */
  watch?(onEvent: (event: ProviderEvent) => void): () => void;
  /** Release connections, watchers and timers. Idempotent. */
  close?(): Promise<void>;
}

/** Who is calling, in a cluster: the epoch of the shard lease the call is made under (it grows on every takeover). */
export interface ProviderFence {
  shard: number;
  epoch: number;
}

/** What a workspace runs: opaque to the supervisor, interpreted by the provider. */
export interface WorkspaceSpec {
  id: string;
  /** Provider-specific fields (image, cmd, env, ami, instanceType, command...). */
  [key: string]: unknown;
}

/** Where a running workspace can be reached, e.g. `http://127.0.0.1:41234` or `i-0abc (10.0.0.5)`. */
export type Endpoint = string;

export type ResourceStatus = 'running' | 'starting' | 'stopping' | 'stopped' | 'absent' | 'unknown';

export interface ProviderResource {
  id: string;
  status: ResourceStatus;
  endpoint?: Endpoint;
  /** Provider-native identity: container id, instance id, pid. */
  ref?: string;
  detail?: Record<string, unknown>;
}

export interface ProviderEvent {
  id: string;
  alive: boolean;
  detail: string;
}
