/**
 * Two restart paths racing, on a real dockerd, through the supervisor: manual and programmatic restarts fired concurrently
 * for the same workspace never reach the engine twice at once, so the name conflict the naive code hits
 * (see docker.test.ts) cannot happen: 50 rounds, 0 conflicts, at most 2 containers created per round.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, expect, it } from 'vitest';
import { createDockerProvider } from '../../src/providers/docker.ts';
import type { Provider } from '../../src/providers/types.ts';
import { Supervisor } from '../../src/supervisor/supervisor.ts';
import { describeWith, dockerHost } from '../helpers/require.ts';

const IMAGE = 'wsup-test:latest';
const CMD = ['sh', '-c', 'trap "exit 0" TERM; sleep 3600 & wait'];
const PREFIX = `wsups${randomBytes(3).toString('hex')}-`;

const host = await dockerHost(IMAGE);

/** Wrap a provider and record any moment two of its calls were in flight for one workspace. */
function guarded(inner: Provider) {
  const inFlight = new Set<string>();
  const overlaps: string[] = [];
  const starts = new Map<string, number>();
  const track = async <T>(id: string, call: () => Promise<T>): Promise<T> => {
    if (inFlight.has(id)) overlaps.push(id);
    inFlight.add(id);
    try {
      return await call();
    } finally {
      inFlight.delete(id);
    }
  };
  const provider: Provider = {
    kind: inner.kind,
    start: (spec, signal) => {
      starts.set(spec.id, (starts.get(spec.id) ?? 0) + 1);
      return track(spec.id, () => inner.start(spec, signal));
    },
    stop: (id, signal) => track(id, () => inner.stop(id, signal)),
    inspect: (id) => inner.inspect(id),
    list: () => inner.list(),
  };
  return { provider, overlaps, starts };
}

describeWith(host, 'two restart paths racing on a real dockerd, through the supervisor', () => {
  const docker = createDockerProvider({ prefix: PREFIX, defaultSpec: { image: IMAGE, cmd: CMD }, stopGraceSeconds: 2 });
  const { provider, overlaps, starts } = guarded(docker);
  // No self-fire window here: every programmatic request must meet the manual one head on.
  const sup = new Supervisor({ provider, config: { selfFireWindowMs: 0 } });
  const ids = ['a', 'b', 'c', 'd', 'e'];

  afterAll(async () => {
    await Promise.allSettled(ids.map((id) => sup.destroy(id)));
    await sup.shutdown({ deadlineMs: 10_000 });
    await docker.close();
  });

  it('manual and programmatic restarts fired concurrently: 50 rounds, 0 conflicts, ≤ 2 containers created per round', async () => {
    await Promise.all(ids.map((id) => sup.ensure(id)));
    const perRound: number[] = [];
    const outcomes = new Set<string>();
    // Five workspaces in parallel, ten rounds each: 50 rounds, and the engine is busy with others meanwhile.
    await Promise.all(
      ids.map(async (id, w) => {
        for (let round = 0; round < 10; round++) {
          const before = starts.get(id) ?? 0;
          // The programmatic path fires a little later in some rounds, so it lands in every phase of the cycle.
          const lag = (round * 7 + w * 13) % 4 === 0 ? 0 : ((round * 37 + w * 11) % 5) * 60;
          const [m, p] = await Promise.all([
            sup.restart(id, { source: 'manual', reason: 'POST /workspaces/:id/restart', wait: true }),
            new Promise((r) => setTimeout(r, lag)).then(() => sup.restart(id, { source: 'programmatic', reason: 'RestartByID', wait: true })),
          ]);
          outcomes.add(`${m.outcome}/${p.outcome}`);
          // Each provider start after a stop creates exactly one container (stop removes it).
          perRound.push((starts.get(id) ?? 0) - before);
        }
      }),
    );
    expect(perRound).toHaveLength(50);
    expect(Math.max(...perRound)).toBeLessThanOrEqual(2);
    expect(docker.counters.conflicts).toBe(0);
    expect(docker.counters.created).toBe([...starts.values()].reduce((a, b) => a + b, 0));
    expect(overlaps).toEqual([]);
    for (const id of ids) expect((await sup.get(id)).state).toBe('running');
    const names = (await docker.list()).map((r) => r.id).sort();
    expect(names).toEqual(ids);
    // Both outcomes happened: some rounds joined one cycle, some queued a second.
    expect([...outcomes].some((o) => o.endsWith('joined'))).toBe(true);
  }, 300_000);
});
