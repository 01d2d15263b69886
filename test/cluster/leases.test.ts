/**
 * The lease keeper.
 * - When the database refuses the early release of a shard (e.g. "too many clients"), the replica says so
 *   and goes on; the lease simply ends at its expiry. A scripted SQL engine stands in for PostgreSQL so the
 *   failure can be placed exactly.
 * - Renewing from its worker thread, on a real PostgreSQL, with a hand-set clock both threads read: leases
 *   are renewed while the main thread does not yield at all; the validity is exactly `sentAt + ttl -
 *   margin`; a row taken over is seen lapsed at once; a lease given up during a round stays given up; a
 *   dropped connection is reported and replaced; the worker ends on close and never keeps a process alive.
 */
import { spawn } from 'node:child_process';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { SharedClock } from '../../src/cluster/lease-worker.ts';
import { fenceCheck, LeaseKeeper, type LeaseKeeperOptions } from '../../src/cluster/leases.ts';
import type { SqlEngine } from '../../src/store/engine.ts';
import { migrate } from '../../src/store/migrations.ts';
import { openPostgres } from '../../src/store/pg-engine.ts';
import { thrown } from '../helpers/harness.ts';
import { describeWith, postgresUrl } from '../helpers/require.ts';

/** Answers the keeper's statements: one shard to acquire, and a refusal for the release. */
function scriptedEngine(): SqlEngine {
  const query = vi.fn(async (sql: string) => {
    if (sql.includes('SET owner = NULL')) throw Object.assign(new Error('sorry, too many clients already'), { code: '53300' });
    if (sql.includes('epoch = l.epoch + 1')) return { rows: [{ shard: 0, epoch: 1 }] };
    if (sql.includes('FROM cluster_members')) return { rows: [{ replica: 'a' }] };
    return { rows: [] };
  });
  // The keeper's rounds never open a transaction; one that did would fail the test here.
  const transaction = () => Promise.reject(new Error('the lease keeper opened a transaction'));
  return { kind: 'postgres', description: 'scripted', query, transaction } as unknown as SqlEngine;
}

describe('lease keeper', () => {
  it('reports a release the database refused instead of failing the process', async () => {
    const errors: string[] = [];
    const unhandled: unknown[] = [];
    const onUnhandled = (err: unknown) => unhandled.push(err);
    process.on('unhandledRejection', onUnhandled);
    try {
      const keeper = new LeaseKeeper({
        engine: scriptedEngine(),
        replica: 'a',
        shards: 1,
        onGain: () => Promise.reject(new Error('loading the shard failed')), // so the keeper releases it
        onRelease: async () => undefined,
        onLose: () => undefined,
        onError: (_err, what) => errors.push(what),
      });
      await keeper.tick();
      await vi.waitFor(() => expect(errors).toContain('releasing shard 0 failed: it is free again at its lease\'s expiry'));
      expect(errors[0]).toBe('loading shard 0 failed: releasing it');
      expect(keeper.heldLease(0)).toBeNull();
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });
});

describe('lease keeper options', () => {
  it('refuses a main-thread clock with a renewal worker, which could not read it', () => {
    const opts = { engine: scriptedEngine(), replica: 'a', shards: 1, onGain: async () => undefined, onRelease: async () => undefined, onLose: () => undefined };
    expect(String(thrown(() => new LeaseKeeper({ ...opts, now: () => 0, renewal: { url: 'postgres://x' } })))).toMatch(/pass the clock as renewal\.clock/);
    expect(String(thrown(() => new LeaseKeeper({ ...opts, renewal: { url: 'postgres://x', schema: 'x; DROP TABLE y' } })))).toMatch(/schema/);
  });
});

/** Generous: the worker's rounds and the database answer on a machine busy with other tests. */
const WAIT = { timeout: 30_000, interval: 20 };

describeWith(postgresUrl(), 'lease keeper with its renewal worker on PostgreSQL', (url) => {
  let schema: string;
  let db: SqlEngine;
  let replica: string;
  const keepers: LeaseKeeper[] = [];
  const lost: number[] = [];
  const errors: Array<{ what: string; err: unknown }> = [];

  beforeEach(async () => {
    const tag = `${process.pid}_${Math.random().toString(36).slice(2, 8)}`;
    schema = `wsup_leases_${tag}`;
    replica = `lw-${tag}`;
    db = await openPostgres({ url, schema, max: 3 });
    await migrate(db);
    lost.length = 0;
    errors.length = 0;
  });
  afterEach(async () => {
    await Promise.all(keepers.splice(0).map((k) => k.close()));
    await db.close();
    const admin = await openPostgres({ url, max: 1 });
    await admin.exec(`DROP SCHEMA IF EXISTS ${schema} CASCADE`).finally(() => admin.close());
  });

  /** ttl 10 s in database time, so slow test steps never let a row expire; rounds only when kicked. */
  const start = async (clock: SharedClock, extra: Partial<LeaseKeeperOptions> = {}) => {
    const keeper = new LeaseKeeper({
      engine: db,
      replica,
      shards: 4,
      ttlMs: 10_000,
      marginMs: 4_000,
      renewMs: 3_600_000,
      renewal: { url, schema, clock },
      onGain: async () => undefined,
      onRelease: async () => undefined,
      onLose: (s) => lost.push(s),
      onError: (err, what) => errors.push({ err, what }),
      ...extra,
    });
    keepers.push(keeper);
    await keeper.tick();
    await vi.waitFor(() => expect(keeper.owned()).toEqual([0, 1, 2, 3]), WAIT);
    return keeper;
  };
  /** One renewal round, waited for without yielding the main thread. */
  const renewBlocking = (keeper: LeaseKeeper) => {
    const worker = keeper.renewer!;
    const before = worker.rounds();
    worker.renewNow();
    expect(worker.waitForRoundSync(before, 30_000), 'a renewal round completed').toBe(true);
  };
  const workerBackends = async () =>
    (await db.query<{ pid: number }>('SELECT pid FROM pg_stat_activity WHERE application_name = $1', [`wsup lease renewal ${replica}`.slice(0, 63)])).rows;

  it('renews while the main thread never yields, until exactly sentAt + ttl - margin', async () => {
    const clock = new SharedClock(100_000);
    const keeper = await start(clock);
    const lease = keeper.heldLease(0)!;
    expect(lease.validUntil).toBe(106_000); // acquired at 100,000: + 10,000 - 4,000

    // From here to the end of the block the main thread runs no timer and no promise: only the worker can
    // keep the lease.
    clock.set(105_000);
    renewBlocking(keeper);
    clock.set(110_000); // past what the acquisition gave
    expect(keeper.valid(lease)).toBe(true);
    expect(lease.validUntil).toBe(111_000);
    expect(keeper.owned()).toEqual([0, 1, 2, 3]);
    clock.set(110_999.999);
    expect(keeper.lease(0)).not.toBeNull();
    clock.set(111_000);
    expect(keeper.valid(lease)).toBe(false);
    expect(keeper.lease(0)).toBeNull();
    expect(errors).toEqual([]);
  });

  it('sees a row another replica took over as lapsed at once; the main thread then drops it', async () => {
    const clock = new SharedClock(0);
    const keeper = await start(clock);
    const lease = keeper.heldLease(2)!;
    await db.query(`UPDATE shard_leases SET owner = 'other', epoch = epoch + 1 WHERE shard = 2`);
    renewBlocking(keeper);
    expect(keeper.valid(lease), 'lapsed before the main thread handled anything').toBe(false);
    expect(lease.signal.aborted, 'the worker aborts nothing itself').toBe(false);
    expect(keeper.valid(keeper.heldLease(1)!)).toBe(true);
    await vi.waitFor(() => expect(lost).toEqual([2]), WAIT);
    expect(lease.signal.aborted).toBe(true);
    expect(keeper.owned()).toEqual([0, 1, 3]);
  });

  it('a lease given up while its renewal is in flight stays given up', async () => {
    const clock = new SharedClock(0);
    const keeper = await start(clock);
    const lease = keeper.heldLease(1)!;
    // Hold shard 1's row so the worker's renewal waits on it; give the lease up meanwhile.
    let unlock!: () => void;
    let locked!: () => void;
    const isLocked = new Promise<void>((r) => (locked = r));
    const tx = db.transaction(async (t) => {
      await t.query('SELECT 1 FROM shard_leases WHERE shard = 1 FOR UPDATE');
      locked();
      await new Promise<void>((r) => (unlock = r));
    });
    await isLocked;
    const worker = keeper.renewer!;
    const before = worker.rounds();
    worker.renewNow();
    await vi.waitFor(async () => expect((await db.query(`SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND application_name = $1`, [`wsup lease renewal ${replica}`.slice(0, 63)])).rows).toHaveLength(1), WAIT);
    worker.give(1, lease.epoch);
    unlock();
    await tx;
    await vi.waitFor(() => expect(worker.rounds()).toBeGreaterThan(before), WAIT);
    expect(worker.validUntil(1, lease.epoch)).toBe(-Infinity);
    expect(keeper.valid(lease)).toBe(false);
    expect(worker.validUntil(0, keeper.heldLease(0)!.epoch)).toBe(6_000);
  });

  it("renews past a commit's fence lock, which a takeover's lock still waits for", async () => {
    const clock = new SharedClock(0);
    const keeper = await start(clock);
    const lease = keeper.heldLease(0)!;
    let release!: () => void;
    let fenced!: (n: number) => void;
    const fenceHeld = new Promise<number>((r) => (fenced = r));
    const commit = db.transaction(async (tx) => {
      fenced((await fenceCheck(tx, replica, [{ shard: 0, epoch: lease.epoch }])).size);
      await new Promise<void>((r) => (release = r));
    });
    expect(await fenceHeld, 'the fence found the lease ours').toBe(0);
    clock.set(3_000);
    renewBlocking(keeper); // would wait for the commit if the two lock modes conflicted
    expect(lease.validUntil).toBe(9_000);
    // What every takeover takes: it cannot lock the row while the commit is in flight.
    const takeover = () => db.query('SELECT shard FROM shard_leases WHERE shard = 0 FOR UPDATE SKIP LOCKED');
    expect((await takeover()).rows).toEqual([]);
    release();
    await commit;
    expect((await takeover()).rows).toEqual([{ shard: 0 }]);
  });

  it('reports a dropped connection and renews over a new one', async () => {
    const clock = new SharedClock(0);
    const keeper = await start(clock);
    const [backend] = await workerBackends();
    expect(backend).toBeDefined();
    await db.query('SELECT pg_terminate_backend($1)', [backend!.pid]);
    await vi.waitFor(() => expect(errors.map((e) => e.what)).toContain('lease renewal connection failed'), WAIT);
    clock.set(5_000);
    renewBlocking(keeper);
    expect(keeper.heldLease(3)!.validUntil).toBe(11_000);
    expect((await workerBackends()).map((b) => b.pid)).not.toContain(backend!.pid);
    expect(errors.map((e) => e.what)).not.toContain('lease renewal worker stopped: restarting it');
  });

  it('ends the worker and its connection on close', async () => {
    const keeper = await start(new SharedClock(0));
    expect(await workerBackends()).toHaveLength(1);
    await keeper.close();
    await expect.poll(workerBackends, WAIT).toEqual([]);
    expect(keeper.valid(keeper.heldLease(0)!)).toBe(true); // close stops renewing; the lease runs out on its own
  });

  it('never keeps a process alive: a process that forgets to close its keeper still exits', async () => {
    const script = `
      const { LeaseKeeper } = await import(${JSON.stringify(new URL('../../src/cluster/leases.ts', import.meta.url).href)});
      const { openPostgres } = await import(${JSON.stringify(new URL('../../src/store/pg-engine.ts', import.meta.url).href)});
      const db = await openPostgres({ url: process.env.URL, schema: process.env.SCHEMA, max: 1 });
      const keeper = new LeaseKeeper({ engine: db, replica: 'forgetful', shards: 2, renewal: { url: process.env.URL, schema: process.env.SCHEMA },
        onGain: async () => {}, onRelease: async () => {}, onLose: () => {} });
      await keeper.tick();
      await db.close();
      console.log('HELD ' + [0, 1].filter((s) => keeper.heldLease(s)).length);
    `;
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      env: { ...process.env, URL: url, SCHEMA: schema },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    expect(out.trim()).toBe('HELD 2');
    expect(code).toBe(0);
  }, 60_000);
});
