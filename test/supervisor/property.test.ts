/**
 * Random interleavings of every input the actor can see, checked after every step:
 * no two provider calls overlap; every request is eventually resolved or rejected; a burst of restarts
 * issued at one instant is satisfied by at most 2 cycles (exactly 1 when every request joined or started
 * it); and the actor settles in a resting state.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { actorCommands, injectedFailures, type ActorCmd } from '../helpers/commands.ts';
import { capture, flush, rig } from '../helpers/harness.ts';

const soak = process.env.WSUP_SOAK === '1';
const RUNS = soak ? 10_000 : 1_000;
const id = 'ws-p';

type Cmd = ActorCmd;

const cmd: fc.Arbitrary<Cmd> = fc.oneof(...actorCommands());

type Result = Awaited<ReturnType<typeof capture<{ outcome: string; cycle: number | null; requester: string }>>>;

describe('workspace actor under random interleavings (fast-check)', () => {
  it(`keeps single flight, bounds cycles per burst, answers every request and settles (${RUNS} runs)`, async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(cmd, { minLength: 1, maxLength: 25 }), async (cmds) => {
        const { failures, fault } = injectedFailures();
        const r = rig({
          latencyMs: 10,
          fault,
          sup: { config: { selfFireWindowMs: 500, backoffBaseMs: 100, backoffCapMs: 400, maxRestarts: 3, periodMs: 1_000 } },
        });
        const bursts: Array<{ outcomes: string[]; results: Promise<Result>[] }> = [];
        const others: Promise<unknown>[] = [];

        for (const c of cmds) {
          switch (c.kind) {
            case 'burst': {
              const results = c.sources.map((source) => capture(r.sup.restart(id, { source, wait: true })));
              bursts.push({ outcomes: [], results });
              break;
            }
            case 'ensure':
              others.push(capture(r.sup.ensure(id)));
              break;
            case 'stop':
              if (await r.sup.has(id)) others.push(capture(r.sup.stop(id)));
              break;
            case 'died':
              r.sup.liveness(id, false, 'random death');
              break;
            case 'advance':
              await r.advance(c.ms);
              break;
            case 'failNext':
              failures.push(c.op);
              break;
          }
          await flush();
          expect(r.provider.overlaps).toEqual([]);
        }

        failures.length = 0;
        await r.settle(120_000);
        expect(r.provider.overlaps).toEqual([]);
        expect(r.provider.inFlightIds()).toEqual([]);
        if (await r.sup.has(id)) {
          const view = await r.sup.get(id);
          expect(['idle', 'running', 'failed']).toContain(view.state);
          expect(view.deferredUntil).toBeNull();
          expect(view.pending).toBe(0);
        }

        // Every request answered: none of the captured promises may still be pending.
        const pendingMarker = Symbol('pending');
        for (const p of [...bursts.flatMap((b) => b.results), ...others]) {
          expect(await Promise.race([p, Promise.resolve(pendingMarker)])).not.toBe(pendingMarker);
        }

        // A burst is satisfied by at most 2 cycles, and by 1 when every request started or joined.
        const requests = r.events.flatMap((e) => (e.type === 'request' ? [e] : []));
        for (const burst of bursts) {
          const results = await Promise.all(burst.results);
          const cycles = new Set(results.flatMap((x) => (x.ok ? [x.value.cycle] : [])));
          expect(cycles.size).toBeLessThanOrEqual(2);
          const outcomes = results.flatMap((x) => (x.ok ? [x.value.outcome] : []));
          if (outcomes.length === results.length && outcomes.every((o) => o === 'started' || o === 'joined')) expect(cycles.size).toBe(1);
        }
        // Every answered restart is published as exactly one request event, under its requester and with
        // the outcome it was answered with; no request is published twice.
        const published = new Map<string, string[]>();
        for (const e of requests) published.set(e.requester, [...(published.get(e.requester) ?? []), e.outcome]);
        for (const burst of bursts) {
          for (const x of await Promise.all(burst.results)) if (x.ok) expect(published.get(x.value.requester), `request events of ${x.value.requester}`).toEqual([x.value.outcome]);
        }
        expect(published.size, 'request events published twice').toBe(requests.length);
      }),
      { numRuns: RUNS },
    );
  }, soak ? 3_600_000 : 240_000);
});
