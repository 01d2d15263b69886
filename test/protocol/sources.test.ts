/**
 * The restart, cycle and policy sources have one definition (machines/workspace.types.ts). The bus and the
 * wire protocol keep copies because the layers forbid them the import; this checks the copies still match,
 * as arrays at run time and as union types at compile time (a drift in either direction fails `tsc`).
 */
import { describe, expect, expectTypeOf, it } from 'vitest';
import * as machine from '../../machines/workspace.types.ts';
import * as bus from '../../src/bus/types.ts';
import * as wire from '../../src/protocol/model.ts';

describe('restart sources: one definition, copies kept equal', () => {
  it('the bus copy of RESTART_SOURCES equals the machine\'s, in order', () => {
    expect([...bus.RESTART_SOURCES]).toEqual([...machine.RESTART_SOURCES]);
  });

  it('the wire copies of RESTART_SOURCES, CYCLE_SOURCES and POLICY_SOURCES equal the machine\'s, in order', () => {
    expect([...wire.RESTART_SOURCES]).toEqual([...machine.RESTART_SOURCES]);
    expect([...wire.CYCLE_SOURCES]).toEqual([...machine.CYCLE_SOURCES]);
    expect([...wire.POLICY_SOURCES]).toEqual([...machine.POLICY_SOURCES]);
  });

  it('every restart source is a cycle source, each named once', () => {
    for (const s of machine.RESTART_SOURCES) expect(machine.CYCLE_SOURCES).toContain(s);
    expect(new Set(machine.CYCLE_SOURCES).size).toBe(machine.CYCLE_SOURCES.length);
  });

  it('the union types are mutually assignable', () => {
    expectTypeOf<bus.RestartSource>().toEqualTypeOf<machine.RestartSource>();
    expectTypeOf<wire.RestartSource>().toEqualTypeOf<machine.RestartSource>();
    expectTypeOf<wire.CycleSource>().toEqualTypeOf<machine.CycleSource>();
    expectTypeOf<wire.PolicySource>().toEqualTypeOf<machine.PolicySource>();
    // The same check spelled as plain assignments, both ways, so `tsc --noEmit` fails on a drift too.
    const both = <A, B>(a: [A] extends [B] ? ([B] extends [A] ? true : false) : false) => a;
    expect(both<bus.RestartSource, machine.RestartSource>(true)).toBe(true);
    expect(both<wire.RestartSource, machine.RestartSource>(true)).toBe(true);
    expect(both<wire.CycleSource, machine.CycleSource>(true)).toBe(true);
    expect(both<wire.PolicySource, machine.PolicySource>(true)).toBe(true);
  });
});
