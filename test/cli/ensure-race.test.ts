/**
 * Check-then-start across processes: two `wsup ensure` CLI processes that both want a workspace get exactly one
 * start between them, and the same endpoint.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRig, TOKENS, type ServerRig } from '../server/rig.ts';
import { runCli } from './run-cli.ts';

let rig: ServerRig;
beforeAll(async () => {
  rig = await startRig({ latencyMs: 30 });
});
afterAll(() => rig.close());

describe('check-then-start: two CLI processes ensure the same workspace', () => {
  it('gives exactly one of them started: true and both the same endpoint, 20 rounds', async () => {
    const rounds = Array.from({ length: 20 }, (_, i) => i);
    const results: Array<{ round: number; docs: Array<{ started: boolean; endpoint: string; state: string }> }> = [];
    // Five rounds at a time: ten CLI processes booting tsx at once keeps the test well under a minute.
    for (let i = 0; i < rounds.length; i += 5) {
      const batch = await Promise.all(
        rounds.slice(i, i + 5).map(async (round) => {
          const args = ['ensure', `ws-race-${round}`, '--json', '--url', rig.url, '--token', TOKENS.operator];
          const both = await Promise.all([runCli(args), runCli(args)]);
          for (const r of both) expect(r.code, r.stderr).toBe(0);
          return { round, docs: both.map((r) => JSON.parse(r.stdout) as { started: boolean; endpoint: string; state: string }) };
        }),
      );
      results.push(...batch);
    }
    for (const { round, docs } of results) {
      expect(docs.filter((d) => d.started), `round ${round}`).toHaveLength(1);
      expect(docs[0]!.endpoint).toBe(docs[1]!.endpoint);
      expect(docs.every((d) => d.state === 'running')).toBe(true);
      expect(rig.provider.starts.get(`ws-race-${round}`)).toBe(1);
    }
    expect(rig.provider.overlaps).toEqual([]);
  }, 120_000);
});
