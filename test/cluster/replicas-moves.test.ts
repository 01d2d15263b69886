/**
 * Shard moves are invisible to callers (replicas in this process, a real PostgreSQL): a fence refusal while
 * the lease still holds is run again on the owner, a command queued or in flight while its owner crashes
 * or leaves is carried to the next owner, and each is answered once and takes effect once.
 */
import { afterEach, expect, it } from 'vitest';
import { FencedError, Replica, shardOf } from '../../src/cluster/index.ts';
import type { Endpoint, WorkspaceSpec } from '../../src/providers/types.ts';
import type { SqlEngine } from '../../src/store/engine.ts';
import { openPostgres } from '../../src/store/pg-engine.ts';
import { describeWith, postgresUrl } from '../helpers/require.ts';
import { DbFakeProvider, FAKE_TABLES } from './db-provider.ts';

const POLL = { timeout: 30_000, interval: 50 };

/**
 * The shared fake provider, except that the first start of each workspace in `refuse` is refused the way
 * the replica's own gate refuses a call when its lease expired locally a moment before a renewal came back:
 * a FencedError, before anything reaches the provider.
 */
class RefusingOnce extends DbFakeProvider {
  readonly refused: string[] = [];
  constructor(
    db: SqlEngine,
    replica: string,
    private readonly refuse: Set<string>,
  ) {
    super(db, replica, 5);
  }
  override async start(spec: WorkspaceSpec, signal: AbortSignal): Promise<Endpoint> {
    if (this.refuse.delete(spec.id)) {
      this.refused.push(spec.id);
      throw new FencedError(shardOf(spec.id, 64), 'lease at epoch 1 expired or was given up');
    }
    return super.start(spec, signal);
  }
}

describeWith(postgresUrl(), 'cluster shard moves, unseen by callers', (url) => {
  let schema: string;
  let db: SqlEngine;
  const replicas: Replica[] = [];

  afterEach(async () => {
    await Promise.all(replicas.splice(0).map((r) => r.close()));
    await db.close();
    const admin = await openPostgres({ url, max: 1 });
    await admin.exec(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    await admin.close();
  });

  const setup = async () => {
    schema = `wsup_moves_${process.pid}_${Math.random().toString(36).slice(2, 8)}`;
    db = await openPostgres({ url, schema, max: 4 });
    await db.exec(FAKE_TABLES);
  };
  const start = async (name: string, provider = new DbFakeProvider(db, name, 5)) => {
    const r = await Replica.start({ url, schema, replica: name, provider, ttlMs: 2000, pollMs: 100 });
    replicas.push(r);
    return r;
  };
  const startCalls = async (ids: string[]) => {
    const { rows } = await db.query<{ id: string; n: number }>(
      `SELECT workspace_id AS id, count(*)::int AS n FROM fake_calls WHERE op = 'start' AND workspace_id = ANY($1::text[]) GROUP BY 1 ORDER BY 1`,
      [ids],
    );
    return Object.fromEntries(rows.map((r) => [r.id, r.n]));
  };
  const requestsBy = async (prefix: string) => {
    const { rows } = await db.query<{ op: string; n: number }>(
      `SELECT split_part(data->>'requester', '~', 1) AS op, count(*)::int AS n FROM workspace_events WHERE kind = 'request' AND data->>'requester' LIKE $1 || '%' GROUP BY 1`,
      [prefix],
    );
    return Object.fromEntries(rows.map((r) => [r.op, r.n]));
  };

  it('a fence refusal while the lease still holds is run again by the owner: answered, started once', async () => {
    await setup();
    const ids = Array.from({ length: 24 }, (_, i) => `fence-${i}`);
    const refuseA = new Set(ids);
    const refuseB = new Set(ids);
    const pa = new RefusingOnce(db, 'a', refuseA);
    const pb = new RefusingOnce(db, 'b', refuseB);
    const a = await start('a', pa);
    const b = await start('b', pb);
    await expect.poll(() => ({ a: a.owned().length, b: b.owned().length }), POLL).toEqual({ a: 32, b: 32 });
    const onA = ids.filter((id) => a.owned().includes(a.shardOf(id)));
    expect(onA.length).toBeGreaterThan(3);
    expect(onA.length).toBeLessThan(ids.length - 3);

    // Through a: run here for a's workspaces, forwarded (and run by b's inbox) for b's.
    const ensured = (await Promise.all(ids.map((id) => a.call('workspace.ensure', { id })))) as { state: string; started: boolean }[];
    expect(ensured.map((r) => r.state)).toEqual(ids.map(() => 'running'));
    expect([...pa.refused].sort(), 'a refused each of its workspaces once').toEqual([...onA].sort());
    expect(pb.refused.length, 'b refused each of its workspaces once').toBe(ids.length - onA.length);
    expect(await startCalls(ids)).toEqual(Object.fromEntries([...ids].sort().map((id) => [id, 1])));

    // A waited-for restart whose cycle the fence refuses: answered once its second cycle completed.
    for (const id of ids) (a.owned().includes(a.shardOf(id)) ? refuseA : refuseB).add(id);
    const restarted = (await Promise.all(ids.map((id, i) => a.call('workspace.restart', { id, wait: true, requester: `rf-${i}`, reason: 'fence' })))) as { state: string }[];
    expect(restarted.map((r) => r.state)).toEqual(ids.map(() => 'running'));
    expect(await startCalls(ids)).toEqual(Object.fromEntries([...ids].sort().map((id) => [id, 2])));
    const { rows } = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM fake_violations');
    expect(rows[0]!.n).toBe(0);
  }, 60_000);

  it('commands queued and in flight while their owner crashes are answered once, by the next owner', async () => {
    await setup();
    const a = await start('a');
    const b = await start('b');
    await expect.poll(() => ({ a: a.owned().length, b: b.owned().length }), POLL).toEqual({ a: 32, b: 32 });
    const ids = Array.from({ length: 60 }, (_, i) => `crash-${i}`).filter((id) => b.owned().includes(b.shardOf(id)));
    expect(ids.length).toBeGreaterThan(10);
    await Promise.all(ids.map((id) => a.call('workspace.ensure', { id })));

    // Three restarts per workspace through a (forwarded to b, queued behind each other there) while b
    // crashes: none is lost, none fails, each takes effect once.
    const calls = ids.flatMap((id, i) => [0, 1, 2].map((k) => a.call('workspace.restart', { id, wait: true, requester: `cr-${i}-${k}`, reason: 'crash' })));
    const crashed = b.close(); // a crash minus the process exit: no handover, the leases run out
    replicas.splice(replicas.indexOf(b), 1);
    const answers = (await Promise.all(calls)) as { outcome: string }[];
    await crashed;
    expect(answers.every((r) => ['started', 'joined', 'queued'].includes(r.outcome))).toBe(true);
    const labels = ids.flatMap((_, i) => [0, 1, 2].map((k) => `cr-${i}-${k}`));
    expect(await requestsBy('cr-')).toEqual(Object.fromEntries(labels.map((l) => [l, 1])));
    await expect.poll(() => a.owned().length, POLL).toBe(64);
    const views = await a.list({ limit: 1000 });
    expect(views.filter((v) => ids.includes(v.id)).map((v) => v.state)).toEqual(ids.map(() => 'running'));
  }, 90_000);

  it('a graceful leave finishes in-flight cycles and hands queued commands over: nothing refused, nothing twice', async () => {
    await setup();
    const a = await start('a');
    const b = await start('b');
    await expect.poll(() => ({ a: a.owned().length, b: b.owned().length }), POLL).toEqual({ a: 32, b: 32 });
    const ids = Array.from({ length: 60 }, (_, i) => `leave-${i}`).filter((id) => b.owned().includes(b.shardOf(id)));
    await Promise.all(ids.map((id) => a.call('workspace.ensure', { id })));

    // Per workspace in order (each waits for the one before): a restart, a stop, an ensure.
    const calls = ids.map(async (id, i) => {
      await a.call('workspace.restart', { id, wait: true, requester: `lv-${i}-0`, reason: 'leave' });
      await a.call('workspace.stop', { id, requester: `lv-${i}-stop` });
      return a.call('workspace.ensure', { id, requester: `lv-${i}-ensure` });
    });
    await b.leave();
    replicas.splice(replicas.indexOf(b), 1);
    const answers = await Promise.allSettled(calls);
    expect(answers.filter((r) => r.status === 'rejected')).toEqual([]);
    // Every request took effect once (restarts and ensures are logged under their label).
    const logged = await requestsBy('lv-');
    expect(Object.values(logged).every((n) => n === 1), JSON.stringify(logged)).toBe(true);
    expect(Object.keys(logged).filter((l) => l.endsWith('-0')).length).toBe(ids.length);
    const { rows: refused } = await db.query('SELECT * FROM fake_refused');
    expect(refused, 'a graceful handover leaves no call to the provider fence').toEqual([]);
    const { rows: violations } = await db.query('SELECT * FROM fake_violations');
    expect(violations).toEqual([]);
    const views = await a.list({ limit: 1000 });
    expect(views.filter((v) => ids.includes(v.id)).map((v) => v.state)).toEqual(ids.map(() => 'running'));
  }, 90_000);
});
