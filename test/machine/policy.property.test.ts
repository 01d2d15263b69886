/**
 * Random interleavings of activity, restarts, ensures, stops, policy changes (random idle timeouts) and clock
 * advances, with provider calls that settle after random delays (and sometimes fail). After every run:
 * no idle stop of a running workspace came within `idleTimeoutMs` of the last activity, no two provider calls
 * were ever in flight at once, and every request was answered (settled or rejected).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { WorkspaceEmitted } from '../../machines/workspace.types.ts';
import { MIN, machineRig } from './policy-rig.ts';

const soak = process.env.WSUP_SOAK === '1';
const RUNS = soak ? 5_000 : 300;

type Cmd =
  | { kind: 'activity' }
  | { kind: 'restart'; source: 'manual' | 'programmatic' }
  | { kind: 'ensure' }
  | { kind: 'stop' }
  | { kind: 'policy'; idleTimeoutMs: number | null }
  | { kind: 'advance'; ms: number };

const cmd: fc.Arbitrary<Cmd> = fc.oneof(
  { weight: 4, arbitrary: fc.constant({ kind: 'activity' as const }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('restart' as const), source: fc.constantFrom('manual' as const, 'programmatic' as const) }) },
  { weight: 2, arbitrary: fc.constant({ kind: 'ensure' as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'stop' as const }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('policy' as const), idleTimeoutMs: fc.constantFrom(null, 5_000, 30_000, MIN, 5 * MIN) }) },
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('advance' as const), ms: fc.constantFrom(100, 1_000, 5_000, 20_000, 60_000, 4 * MIN) }) },
);

/** What the checker reads, in the order it happened: the actor's emissions and the test's own inputs. */
type Logged = WorkspaceEmitted | { type: 'sent-activity'; at: number } | { type: 'sent-policy'; idleTimeoutMs: number | null };

describe('policy deadlines under random interleavings (fast-check)', () => {
  it(`never idle-stops within the timeout of activity, keeps single flight, answers every request (${RUNS} runs)`, async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(cmd, { minLength: 1, maxLength: 30 }),
        fc.array(fc.integer({ min: 10, max: 90_000 }), { minLength: 1, maxLength: 8 }),
        fc.array(fc.boolean(), { minLength: 1, maxLength: 8 }),
        async (cmds, latencies, fails) => {
          let call = 0;
          const r = machineRig({
            latencyMs: () => latencies[call++ % latencies.length]!,
            fault: (op) => (fails[call % fails.length] && call % 5 === 0 ? new Error(`injected ${op} failure`) : undefined),
            config: { selfFireWindowMs: 30_000, maxRestarts: 3, periodMs: 60_000, backoffBaseMs: 100, backoffCapMs: 1_000 },
          });
          const log: Logged[] = [];
          r.actor.on('*', (e) => log.push(e));
          const asked: string[] = [];
          let n = 0;
          const who = () => `t:${++n}`;

          for (const c of cmds) {
            switch (c.kind) {
              case 'activity':
                log.push({ type: 'sent-activity', at: r.clock.now() });
                r.activity('test');
                break;
              case 'restart': {
                const requester = who();
                asked.push(requester);
                r.send({ type: 'RESTART', requester, source: c.source, reason: 'random' });
                break;
              }
              case 'ensure': {
                const requester = who();
                asked.push(requester);
                r.ensure(requester);
                break;
              }
              case 'stop': {
                const requester = who();
                asked.push(requester);
                r.stop(requester);
                break;
              }
              case 'policy':
                log.push({ type: 'sent-policy', idleTimeoutMs: c.idleTimeoutMs });
                r.setPolicy({ idleTimeoutMs: c.idleTimeoutMs });
                break;
              case 'advance':
                await r.advance(c.ms, Math.max(100, c.ms / 4));
                break;
            }
            expect(r.overlaps).toEqual([]);
          }
          // Let everything in flight finish (deferrals, retries, backoff, the calls themselves).
          for (let i = 0; i < 200 && (r.inFlight > 0 || !['idle', 'running', 'destroyed'].includes(r.state()) || r.ctx().deferred !== null); i++) {
            await r.advance(10_000, 5_000);
          }
          expect(r.errors).toEqual([]);
          expect(r.overlaps).toEqual([]);
          expect(r.inFlight).toBe(0);

          // Every request was answered: settled (ok or not) or rejected.
          const answered = new Set(log.flatMap((e) => (e.type === 'settled' ? e.requesters : e.type === 'rejected' ? [e.requester] : [])));
          for (const q of asked) expect(answered, `request ${q} never settled`).toContain(q);

          // No idle stop within the timeout in force of the last activity (ours, or a completed cycle).
          let lastActivity = Number.NEGATIVE_INFINITY;
          let idle: number | null = null;
          for (const e of log) {
            if (e.type === 'sent-activity') lastActivity = Math.max(lastActivity, e.at);
            else if (e.type === 'cycle.completed') lastActivity = Math.max(lastActivity, e.at);
            else if (e.type === 'sent-policy') idle = e.idleTimeoutMs;
            else if (e.type === 'policy' && e.source === 'idle') {
              expect(e.action).toBe('stop');
              expect(idle, 'an idle stop with no idle rule in force').not.toBeNull();
              expect(e.at - lastActivity, `idle stop at ${e.at} only ${e.at - lastActivity} ms after activity`).toBeGreaterThanOrEqual(idle!);
            }
          }
        },
      ),
      { numRuns: RUNS },
    );
  }, soak ? 3_600_000 : 240_000);
});
