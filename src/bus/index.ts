/**
 * The bus: producers' entry points (file writes, activity, liveness, claims, restarts) and one routing stage into the
 * supervisor through the {@link BusSink} port. Layer rule: imports nothing above it.
 *
 * @example
 * const bus = createBus({ sink, quietMs: 2000, maxWaitMs: 15_000 });
 * bus.fileWritten({ workspaceId: 'ws-1', path: 'a.ts', at: Date.now() });
 * bus.counters(); // { writesSeen: 1, bursts: 0, … }
 */
export { createBus, burstCommand, BUS_DEFAULTS, type Bus } from './bus.ts';
export { coalesceFileWrites, formatReason, toBurst, REASON_PATHS } from './coalesce.ts';
export { BurstCoalescer } from './burst-coalescer.ts';
export { ActivityThrottle, type ActivityThrottleOptions } from './activity-throttle.ts';
export { coalesceFileWritesRx } from './coalesce-rx.ts';
export {
  InvalidBusEventError,
  UnknownWorkspaceError,
  assertActivityShape,
  assertFileWrittenShape,
  parseClaim,
  parseLiveness,
  parseRestart,
  type BusEventKind,
} from './validate.ts';
export * from './types.ts';
