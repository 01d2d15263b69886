/**
 * Two replicas in this process on a real PostgreSQL: forwarding, event fan-out, a LISTEN connection that
 * drops mid-stream, and balance (a new replica takes its share; a leaving one hands over gracefully).
 */
import { afterEach, expect, it } from 'vitest';
import { Replica } from '../../src/cluster/index.ts';
import type { SqlEngine } from '../../src/store/engine.ts';
import { openPostgres } from '../../src/store/pg-engine.ts';
import type { SupervisorEvent } from '../../src/supervisor/types.ts';
import { describeWith, postgresUrl } from '../helpers/require.ts';
import { DbFakeProvider, FAKE_TABLES } from './db-provider.ts';

/** Polling the database and the replicas' leases (their own timers, not under the test's control). */
const POLL = { timeout: 20_000, interval: 50 };

describeWith(postgresUrl(), 'cluster replicas on PostgreSQL', (url) => {
  let schema: string;
  let db: SqlEngine;
  const replicas: Replica[] = [];
  const start = async (name: string) => {
    const r = await Replica.start({ url, schema, replica: name, provider: new DbFakeProvider(db, name, 5), ttlMs: 2000, pollMs: 200 });
    replicas.push(r);
    return r;
  };
  const owned = async () => {
    const { rows } = await db.query<{ owner: string; n: number }>('SELECT owner, count(*)::int AS n FROM shard_leases WHERE owner IS NOT NULL AND expires_at > now() GROUP BY owner');
    return Object.fromEntries(rows.map((r) => [r.owner, r.n])) as Record<string, number>;
  };

  afterEach(async () => {
    await Promise.all(replicas.splice(0).map((r) => r.close()));
    await db.close();
    const admin = await openPostgres({ url, max: 1 });
    await admin.exec(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    await admin.close();
  });

  const setup = async () => {
    schema = `wsup_replicas_${process.pid}_${Math.random().toString(36).slice(2, 8)}`;
    db = await openPostgres({ url, schema, max: 4 });
    await db.exec(FAKE_TABLES);
  };

  it('forwards commands to the owner and fans events out; a dropped LISTEN connection loses neither', async () => {
    await setup();
    const a = await start('a');
    const b = await start('b');
    await expect.poll(async () => ({ leases: await owned(), a: a.owned().length, b: b.owned().length }), POLL).toEqual({ leases: { a: 32, b: 32 }, a: 32, b: 32 });
    const ids = Array.from({ length: 60 }, (_, i) => `fw-${i}`);
    const onB = ids.filter((id) => b.owned().includes(a.shardOf(id)));
    expect(onB.length).toBeGreaterThan(10);

    const seen: SupervisorEvent[] = [];
    const sub = a.events.subscribe((e) => seen.push(e));
    let resyncs = 0;
    const rs = a.resyncs.subscribe(() => resyncs++);
    // Through a, for workspaces b owns: forwarded; their events come back to a's subscribers over NOTIFY.
    const ensured = await Promise.all(onB.map((id) => a.call('workspace.ensure', { id })));
    expect(ensured.every((r) => (r as { state: string }).state === 'running')).toBe(true);
    const runningAtA = () => onB.filter((id) => seen.some((e) => e.id === id && e.type === 'transition' && e.to === 'running'));
    await expect.poll(runningAtA, POLL).toEqual(onB); // events of b-owned workspaces, seen at a

    // Drop both listeners while forwarded restarts are in flight: the inbox poll still finds and answers them.
    const inFlight = onB.map((id, i) => a.call('workspace.restart', { id, reason: `blink ${i}`, requester: `blink-${i}` }));
    a.blinkListener();
    b.blinkListener();
    const answers = await Promise.all(inFlight);
    expect(answers.map((r) => (r as { outcome: string }).outcome).every((o) => ['started', 'joined', 'queued'].includes(o))).toBe(true);
    await expect.poll(() => resyncs, POLL).toBeGreaterThanOrEqual(1); // the reconnect (the first connect was before we subscribed)
    // The subscriber is not stuck: events after the reconnect still arrive.
    seen.length = 0;
    await a.call('workspace.restart', { id: onB[0]!, reason: 'after the blink' });
    await expect.poll(() => seen.some((e) => e.id === onB[0] && e.type === 'cycle.completed'), { ...POLL, message: 'events after the blink' }).toBe(true);
    // Each restart took effect once.
    const { rows } = await db.query<{ op: string; n: number }>(
      `SELECT split_part(split_part(data->>'requester', '#', 1), '~', 1) AS op, count(*)::int AS n FROM workspace_events WHERE kind = 'request' AND data->>'requester' LIKE 'blink-%' GROUP BY 1`,
    );
    expect(rows.length).toBe(onB.length);
    expect(rows.every((r) => r.n === 1)).toBe(true);
    sub.unsubscribe();
    rs.unsubscribe();
  }, 60_000);

  it("runs a method a shard's services add on the shard's owner, forwarded from any replica", async () => {
    await setup();
    const withEcho = async (name: string) => {
      const r = await Replica.start({
        url,
        schema,
        replica: name,
        provider: new DbFakeProvider(db, name, 5),
        ttlMs: 2000,
        pollMs: 200,
        services: ({ shard, epoch }) => ({
          methods: { 'test.echo': async (p, requester) => ({ id: p.id, ranOn: name, shard, epoch, requester }) },
          close: async () => undefined,
        }),
      });
      replicas.push(r);
      return r;
    };
    const a = await withEcho('a');
    const b = await withEcho('b');
    await expect.poll(() => ({ a: a.owned().length, b: b.owned().length }), POLL).toEqual({ a: 32, b: 32 });
    const ids = Array.from({ length: 20 }, (_, i) => `echo-${i}`);
    const answers = (await Promise.all(ids.map((id) => a.call('test.echo', { id, requester: 'probe' })))) as { id: string; ranOn: string; shard: number; requester: string }[];
    for (const [i, r] of answers.entries()) {
      expect(r.id).toBe(ids[i]);
      expect(r.shard).toBe(a.shardOf(ids[i]!));
      expect(r.ranOn).toBe(b.owned().includes(r.shard) ? 'b' : 'a');
      expect(r.requester).toMatch(/^probe~a\.\d+$/);
    }
    expect(new Set(answers.map((r) => r.ranOn))).toEqual(new Set(['a', 'b']));
    // A method neither the table nor the services know is refused by name, wherever it runs.
    const onB = ids.find((id) => b.owned().includes(a.shardOf(id)))!;
    const refused = await a.call('test.nope', { id: onB }).then(
      () => null,
      (err: unknown) => err as { code: string; message: string },
    );
    expect(refused?.code).toBe('WSUP_INVALID_ARGUMENT');
    expect(refused?.message).toContain('test.nope');
  }, 60_000);

  it('a new replica takes its share; a leaving replica hands its shards over after in-flight cycles', async () => {
    await setup();
    const a = await start('a');
    await expect.poll(() => a.owned().length, POLL).toBe(64);
    const ids = Array.from({ length: 40 }, (_, i) => `bal-${i}`);
    await Promise.all(ids.map((id) => a.call('workspace.ensure', { id })));

    const b = await start('b');
    await expect.poll(async () => ({ leases: await owned(), b: b.owned().length }), POLL).toEqual({ leases: { a: 32, b: 32 }, b: 32 });

    // Restarts keep flowing through a while b leaves: b finishes its cycles, then a takes b's shards.
    const during = ids.map((id) => a.call('workspace.restart', { id, reason: 'during the handover', wait: true }));
    await b.leave();
    replicas.splice(replicas.indexOf(b), 1);
    const results = await Promise.all(during);
    expect(results.length).toBe(ids.length);
    await expect.poll(() => a.owned().length, POLL).toBe(64);
    const { rows: violations } = await db.query('SELECT * FROM fake_violations');
    expect(violations).toEqual([]);
    const { rows: refused } = await db.query('SELECT * FROM fake_refused');
    expect(refused, 'a graceful handover leaves no call to the provider fence').toEqual([]);
    const { rows: states } = await db.query<{ state: string }>('SELECT state FROM workspaces WHERE id = ANY($1::text[])', [ids]);
    expect(states.every((s) => s.state === 'running')).toBe(true);
    // Closing twice is one close: the same promise, and the replica says it is closed.
    const closing = a.close();
    expect(a.close()).toBe(closing);
    await closing;
    expect(a.closed).toBe(true);
  }, 60_000);

  it('prunes answered inbox rows past their keep time, never a queued one', async () => {
    await setup();
    const a = await start('a');
    const b = await start('b');
    await expect.poll(async () => ({ a: a.owned().length, b: b.owned().length }), POLL).toEqual({ a: 32, b: 32 });
    const onB = Array.from({ length: 40 }, (_, i) => `pr-${i}`).filter((id) => b.owned().includes(a.shardOf(id)));
    await Promise.all(onB.map((id) => a.call('workspace.ensure', { id })));
    const count = async (where: string) => (await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM cluster_inbox WHERE ${where}`)).rows[0]!.n;
    const answered = await count('done_at IS NOT NULL');
    expect(answered).toBeGreaterThanOrEqual(onB.length);
    // Half of them answered an hour ago; one more row queued for a shard nobody drains (no such workspace owner runs it).
    await db.query(`UPDATE cluster_inbox SET done_at = now() - interval '1 hour' WHERE id IN (SELECT id FROM cluster_inbox WHERE done_at IS NOT NULL ORDER BY id LIMIT $1)`, [Math.floor(answered / 2)]);
    await db.query(`INSERT INTO cluster_inbox (shard, workspace_id, method, params, origin, created_at) VALUES (9999, 'nobody', 'workspace.get', '{"id":"nobody"}', 'test', now() - interval '2 hours')`);
    expect(await a.pruneInbox(10 * 60_000)).toBe(Math.floor(answered / 2));
    expect(await count('done_at IS NOT NULL')).toBe(answered - Math.floor(answered / 2));
    expect(await count('done_at IS NULL')).toBe(1);
  }, 60_000);
});
