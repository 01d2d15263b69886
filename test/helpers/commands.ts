/**
 * The random inputs the property tests drive one workspace's actor with: restart bursts, ensure, stop, a
 * provider death, time, and a provider call made to fail. Each test adds its own kinds beside these.
 */
import fc from 'fast-check';
import { RESTART_SOURCES, type RestartSource } from '../../machines/workspace.types.ts';

export type ActorCmd =
  | { kind: 'burst'; sources: RestartSource[] }
  | { kind: 'ensure' }
  | { kind: 'stop' }
  | { kind: 'died' }
  | { kind: 'advance'; ms: number }
  | { kind: 'failNext'; op: 'start' | 'stop' };

/** Weighted arbitraries of every `ActorCmd` kind, for `fc.oneof(...actorCommands(), ...more)`. */
export function actorCommands(burstMax = 6): Array<fc.WeightedArbitrary<ActorCmd>> {
  return [
    { weight: 4, arbitrary: fc.record({ kind: fc.constant('burst' as const), sources: fc.array(fc.constantFrom(...RESTART_SOURCES), { minLength: 1, maxLength: burstMax }) }) },
    { weight: 2, arbitrary: fc.constant({ kind: 'ensure' as const }) },
    { weight: 1, arbitrary: fc.constant({ kind: 'stop' as const }) },
    { weight: 1, arbitrary: fc.constant({ kind: 'died' as const }) },
    { weight: 4, arbitrary: fc.record({ kind: fc.constant('advance' as const), ms: fc.constantFrom(1, 5, 10, 20, 50, 250, 1_000) }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('failNext' as const), op: fc.constantFrom('start' as const, 'stop' as const) }) },
  ];
}

/** `failNext` made real: each op pushed to `failures` fails the next provider call of that op. */
export function injectedFailures(): { failures: Array<'start' | 'stop'>; fault: (call: { op: string }) => Error | undefined } {
  const failures: Array<'start' | 'stop'> = [];
  const fault = (call: { op: string }) => {
    const i = failures.indexOf(call.op as 'start' | 'stop');
    if (i < 0) return undefined;
    failures.splice(i, 1);
    return new Error(`injected ${call.op} failure`);
  };
  return { failures, fault };
}
