/**
 * Load on loopback: 200 clients × 50 mixed operations → 0 errors. Prints p50/p99 ack latency; no timing
 * assertion (shared CI machines are too noisy for one).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { WsupClient } from '../../src/client/index.ts';
import { startRig, type ServerRig } from './rig.ts';

let rig: ServerRig;
beforeAll(async () => {
  rig = await startRig({ latencyMs: 0 });
});
afterAll(() => rig.close());

export const pct = (sorted: number[], p: number): number => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;

/** One client's 50 operations over its own few workspaces (and some shared ones, to contend). */
async function mixed(c: WsupClient, n: number, lat: number[]): Promise<void> {
  const own = `load-${n}`;
  const shared = `load-shared-${n % 10}`;
  const ops: Array<() => Promise<unknown>> = [
    () => c.call('workspace.ensure', { id: own }),
    () => c.call('workspace.get', { id: own }),
    () => c.call('workspace.restart', { id: own, reason: 'load' }),
    () => c.call('workspace.ensure', { id: shared }),
    () => c.call('workspace.list', { limit: 10 }),
    () => c.call('events.history', { id: own, limit: 5 }),
    () => c.call('files.written', { id: own, paths: ['a.ts'] }),
    () => c.call('workspace.restart', { id: shared, source: 'programmatic' }),
    () => c.call('workspace.get', { id: shared }),
    () => c.call('machine.definition', {}),
  ];
  await c.call('workspace.ensure', { id: own });
  for (let i = 0; i < 50; i++) {
    const t = performance.now();
    await ops[i % ops.length]!();
    lat.push(performance.now() - t);
  }
}

describe('load on loopback', () => {
  it('serves 200 clients × 50 mixed operations with 0 errors', async () => {
    const clients = Array.from({ length: 200 }, () => rig.client('operator', { requestTimeoutMs: 30_000 }));
    await Promise.all(clients.map((c) => c.connect()));
    const lat: number[] = [];
    const started = performance.now();
    const results = await Promise.allSettled(clients.map((c, n) => mixed(c, n, lat)));
    const wall = performance.now() - started;
    const errors = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    expect(errors.map((e) => String(e.reason))).toEqual([]);
    expect(lat).toHaveLength(200 * 50);
    lat.sort((a, b) => a - b);
    console.log(
      `load: 200 clients × 50 ops = ${lat.length} acks in ${wall.toFixed(0)} ms; ack latency p50 ${pct(lat, 50).toFixed(2)} ms, p99 ${pct(lat, 99).toFixed(2)} ms, max ${lat.at(-1)!.toFixed(2)} ms`,
    );
    expect(rig.provider.overlaps).toEqual([]);
  }, 120_000);
});
