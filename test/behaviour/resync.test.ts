/**
 * A cluster replica's subscribers after its LISTEN connections blink (terminated in PostgreSQL, as a
 * network cut would): every subscriber is told to resync, with the state to start again from, and events
 * of workspaces run by other replicas keep arriving afterwards. One node has no such connection.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { WorkspaceEvent } from '../../src/protocol/index.ts';
import { openPostgres } from '../../src/store/pg-engine.ts';
import { describeWith, postgresUrl } from '../helpers/require.ts';
import { Target } from './target.ts';

describeWith(postgresUrl(), 'subscriptions across a listener blink (3-replica cluster)', (url) => {
  let t: Target;
  beforeAll(async () => {
    t = await Target.start('cluster', { url });
  }, 120_000);
  afterAll(async () => {
    await t?.dispose();
  }, 60_000);

  it('resyncs every subscriber after the blink and keeps delivering the other replicas\' events', async () => {
    const ids = await t.spread('blink', 3);
    for (const [i, id] of ids.entries()) await t.at(i).call('workspace.ensure', { id });
    const watcher = t.at(0, 'viewer');
    const seen: WorkspaceEvent[] = [];
    const resyncs: Array<{ reason: string; workspaces?: Array<{ id: string }> }> = [];
    await watcher.subscribe({ ids }, (ev) => seen.push(ev), { onResync: (info) => resyncs.push(info) });

    const db = await openPostgres({ url, max: 1 });
    try {
      const { rows } = await db.query<{ n: number }>(
        `SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity WHERE query LIKE $1`,
        [`LISTEN "wsup_${t.schemaName}_%`],
      );
      expect(rows[0]!.n).toBeGreaterThanOrEqual(t.size); // every replica's listener, at least
    } finally {
      await db.close();
    }
    await expect.poll(() => resyncs.some((r) => r.reason === 'lagged'), { timeout: 30_000, interval: 100 }).toBe(true);
    const lagged = resyncs.find((r) => r.reason === 'lagged')!;
    expect(lagged.workspaces?.map((w) => w.id).sort()).toEqual([...ids].sort());

    // After the blink, restarts run by the other replicas still reach this subscriber.
    const before = seen.length;
    await Promise.all(ids.slice(1).map((id, i) => t.at(i + 1).call('workspace.restart', { id, reason: 'after the blink', wait: true })));
    await expect
      .poll(() => ids.slice(1).every((id) => seen.slice(before).some((e) => e.id === id && e.type === 'cycle.completed')), { timeout: 30_000 })
      .toBe(true);
  }, 90_000);
});
