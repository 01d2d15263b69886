/**
 * wsup: a workspace lifecycle supervisor. Every workspace is one XState actor whose statechart is the only
 * path to the provider, so restarts are serialized by construction.
 *
 * @example
 * ```ts
 * import { Supervisor, FakeProvider } from 'wsup';
 *
 * const sup = new Supervisor({ provider: new FakeProvider({ latencyMs: 10 }) });
 * const { started, endpoint } = await sup.ensure('ws-1');        // get-or-start
 * const { outcome } = await sup.restart('ws-1', { source: 'file-write', reason: 'saved' });
 * // outcome: 'started' | 'joined' | 'queued' | 'deferred'
 * sup.events.subscribe((e) => console.log(e.type, e.id));        // every cycle with its why
 * await sup.shutdown();
 * ```
 */

// Supervisor and its results
export { Supervisor, type SupervisorOptions, type PersistWrite } from './supervisor/supervisor.ts';
export type {
  CycleWhy,
  EnsureResult,
  RestartOptions,
  RestartResult,
  SupervisorEvent,
  SupervisorLifecycle,
  WorkspaceView,
} from './supervisor/types.ts';
export { systemClock, type Clock } from './supervisor/clock.ts';

// The statechart
export { workspaceMachine } from '../machines/workspace.machine.ts';
export type { LifecycleState, Outcome, RestartSource, WorkspaceConfig } from '../machines/workspace.types.ts';

// Providers
export type { Endpoint, Provider, ProviderEvent, ProviderResource, WorkspaceSpec } from './providers/types.ts';
export { FakeProvider, type FakeProviderOptions } from './providers/fake.ts';

export { createProcessProvider } from './providers/process.ts';
export { createDockerProvider } from './providers/docker.ts';
export { createEc2Provider } from './providers/ec2.ts';

// Durable state, the bus, the control server
export { WorkspaceStore } from './store/index.ts';
export { openDurableSupervisor, eventHistory, type OrphanPolicy, type RecoveryReport } from './supervisor/durable.ts';
export { createBus, type Bus } from './bus/index.ts';
export { createServer, TokenFile, staticTokens, type ServerOptions, type WsupServer } from './server/index.ts';

// Prebuild claims (the agent side is `wsup/agent`)
export { ClaimService, decide, type AgentDecision, type ClaimResult, type ClaimServiceOptions } from './supervisor/claims.ts';

// Errors
export {
  WsupError,
  WorkspaceNotFoundError,
  WorkspaceDestroyedError,
  InvalidWorkspaceIdError,
  ShuttingDownError,
  ClaimConflictError,
  type WsupErrorCode,
} from './errors.ts';
