/**
 * API tokens verified against the database (DbTokens) on a real PostgreSQL: what a cluster's replicas
 * share. A second engine plays "another replica or the CLI"; the poll runs on a manual clock, so a
 * notification that never arrives is modelled exactly: nothing reloads until the poll fires.
 */
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Listener } from '../../src/cluster/notify.ts';
import { FakeProvider } from '../../src/providers/fake.ts';
import { DbTokens, issueDbToken, rotateDbAdmin } from '../../src/server/db-tokens.ts';
import { hashToken, TokenFile } from '../../src/server/auth.ts';
import { createServer, type WsupServer } from '../../src/server/index.ts';
import { ApiTokenRows } from '../../src/store/api-tokens.ts';
import type { SqlEngine } from '../../src/store/engine.ts';
import { migrate } from '../../src/store/migrations.ts';
import { openPostgres } from '../../src/store/pg-engine.ts';
import { Supervisor } from '../../src/supervisor/supervisor.ts';
import { describeWith, postgresUrl } from '../helpers/require.ts';
import { RawSocket, upgradeStatus } from './rig.ts';

/** A poll clock the test fires by hand. */
function manualClock() {
  const fns = new Map<number, () => void>();
  let n = 0;
  return {
    setInterval: (fn: () => void) => (fns.set(++n, fn), n),
    clearInterval: (h: unknown) => void fns.delete(h as number),
    get armed() {
      return fns.size;
    },
  };
}

/** Counts every statement sent through it. */
function counted(inner: SqlEngine): SqlEngine & { queries: number } {
  const c: SqlEngine & { queries: number } = {
    kind: inner.kind,
    description: inner.description,
    queries: 0,
    query: (sql, params, opts) => {
      c.queries++;
      return inner.query(sql, params, opts);
    },
    exec: (sql) => {
      c.queries++;
      return inner.exec(sql);
    },
    transaction: (fn, opts) => {
      c.queries++;
      return inner.transaction(fn, opts);
    },
    close: () => inner.close(),
  };
  return c;
}

describeWith(postgresUrl(), 'API tokens in PostgreSQL', (url) => {
  let schemaN = 0;
  const engines: SqlEngine[] = [];
  const dirs: string[] = [];
  const schemas: string[] = [];
  const base = `wsup_tok_${process.pid}_${Math.random().toString(36).slice(2, 6)}`;

  /** A fresh migrated schema and two engines on it: "this replica" and "another one". */
  async function fresh(): Promise<{ here: SqlEngine; other: SqlEngine }> {
    const schema = `${base}_${++schemaN}`;
    schemas.push(schema);
    const here = await openPostgres({ url, schema, max: 3 });
    const other = await openPostgres({ url, schema, max: 3 });
    engines.push(here, other);
    await migrate(here);
    return { here, other };
  }
  const dir = () => {
    const d = mkdtempSync(join(tmpdir(), 'wsup-dbtok-'));
    dirs.push(d);
    return d;
  };

  afterAll(async () => {
    await Promise.all(engines.map((e) => e.close()));
    const admin = await openPostgres({ url, max: 1 });
    for (const s of schemas) await admin.exec(`DROP SCHEMA IF EXISTS ${s} CASCADE`);
    await admin.close();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it('verifies a token issued elsewhere once reloaded, with its role and label; never stores the token', async () => {
    const { here, other } = await fresh();
    const tokens = await DbTokens.open({ engine: here, clock: manualClock() });
    const { token } = await issueDbToken(other, 'operator', { label: 'alice' });
    expect(tokens.verify(token)).toBeNull(); // not reloaded yet
    await tokens.refresh();
    expect(tokens.verify(token)).toEqual({ role: 'operator', label: 'alice', tokenId: hashToken(token).slice(0, 6) });
    expect(tokens.verify(`${token}x`)).toBeNull();
    const dump = JSON.stringify((await here.query('SELECT * FROM api_tokens')).rows);
    expect(dump).not.toContain(token);
    expect(dump).toContain(hashToken(token));
    tokens.close();
  });

  it('sees a revocation whose notification was lost at the next poll, and only then', async () => {
    const { here, other } = await fresh();
    const clock = manualClock();
    const tokens = await DbTokens.open({ engine: here, clock, pollMs: 1000 });
    expect(clock.armed).toBe(1);
    const { token } = await issueDbToken(other, 'viewer', { label: 'v' });
    expect(await tokens.poll()).toBe(true); // the insert changed the fingerprint
    expect(tokens.verify(token)?.role).toBe('viewer');
    expect(await tokens.poll()).toBe(false); // nothing changed: no reload
    expect(await new ApiTokenRows(other).revoke('v')).toHaveLength(1);
    expect(tokens.verify(token)?.role).toBe('viewer'); // stale until the poll: bounded by pollMs
    expect(await tokens.poll()).toBe(true);
    expect(tokens.verify(token)).toBeNull();
    tokens.close();
    expect(clock.armed).toBe(0);
  });

  it('hears writes through LISTEN on its channel, in a schema with the longest name PostgreSQL allows', async () => {
    const schema = `${base}_${'x'.repeat(63 - base.length - 1)}`;
    expect(schema).toHaveLength(63);
    schemas.push(schema);
    const here = await openPostgres({ url, schema, max: 2 });
    const other = await openPostgres({ url, schema, max: 2 });
    engines.push(here, other);
    await migrate(here);
    const tokens = await DbTokens.open({ engine: here, clock: manualClock() }); // no poll: only NOTIFY reloads
    const listener = new Listener({ url: `${url}${url.includes('?') ? '&' : '?'}options=${encodeURIComponent(`-c search_path=${schema}`)}`, channels: [await tokens.channel()], onNotify: () => void tokens.refresh(), onResync: () => void tokens.refresh() });
    await listener.start();
    try {
      const { token } = await issueDbToken(other, 'operator', { label: 'heard' });
      await expect.poll(() => tokens.verify(token)?.label, { timeout: 10_000, interval: 10 }).toBe('heard');
      await new ApiTokenRows(other).revoke('heard');
      await expect.poll(() => tokens.verify(token), { timeout: 10_000, interval: 10 }).toBeNull();
    } finally {
      await listener.close();
      tokens.close();
    }
  });

  it('refuses an expired token by its expiry, without a reload', async () => {
    const { here } = await fresh();
    let now = Date.now();
    const tokens = await DbTokens.open({ engine: here, clock: manualClock(), now: () => now });
    const { token } = await issueDbToken(here, 'viewer', { expiresAt: now + 60_000 });
    await tokens.refresh();
    expect(tokens.verify(token)?.role).toBe('viewer');
    now += 60_000;
    expect(tokens.verify(token)).toBeNull();
    tokens.close();
  });

  it('mints exactly one admin token when many replicas start at once, into one data dir', async () => {
    const { here } = await fresh();
    const dataDirs = Array.from({ length: 6 }, dir);
    const replicas = await Promise.all(dataDirs.map(async () => DbTokens.open({ engine: await openPostgres({ url, schema: schemas.at(-1)!, max: 2 }).then((e) => (engines.push(e), e)), clock: manualClock() })));
    const results = await Promise.all(replicas.map((t, i) => t.bootstrap(dataDirs[i]!)));
    expect(results.filter((r) => r.created)).toHaveLength(1);
    const minted = results.findIndex((r) => r.created);
    const token = readFileSync(join(dataDirs[minted]!, 'admin.token'), 'utf8').trim();
    expect(statSync(join(dataDirs[minted]!, 'admin.token')).mode & 0o777).toBe(0o600);
    for (const [i, r] of results.entries()) expect(r.admin).toBe(i === minted ? token : null);
    const { rows } = await here.query<{ n: number }>("SELECT count(*)::int AS n FROM api_tokens WHERE label = 'default-admin'");
    expect(rows[0]?.n).toBe(1);
    // Every replica verifies it (each reloaded after its bootstrap; the last may have been before the mint).
    for (const t of replicas) {
      await t.refresh();
      expect(t.verify(token)?.role).toBe('admin');
      t.close();
    }
  });

  it('a second live default admin cannot be inserted, even outside the bootstrap', async () => {
    const { here } = await fresh();
    const rows = new ApiTokenRows(here);
    await rows.insert({ hash: hashToken('a1'), role: 'admin', label: 'default-admin' });
    await expect(rows.insert({ hash: hashToken('a2'), role: 'admin', label: 'default-admin' })).rejects.toThrow(/rotate it instead/);
  });

  it('rotating the admin revokes the old one in the same transaction and writes the new one out', async () => {
    const { here } = await fresh();
    const d = dir();
    const tokens = await DbTokens.open({ engine: here, clock: manualClock() });
    const first = await tokens.bootstrap(d);
    expect(first.created).toBe(true);
    const old = first.admin!;
    const r = await rotateDbAdmin(here, d);
    expect(readFileSync(r.path, 'utf8').trim()).toBe(r.token);
    await tokens.refresh();
    expect(tokens.verify(old)).toBeNull();
    expect(tokens.verify(r.token)?.role).toBe('admin');
    // A restart of this replica mints nothing: the rotated admin is live.
    expect(await tokens.bootstrap(d)).toMatchObject({ created: false, admin: r.token, imported: 0 });
    tokens.close();
  });

  it('imports a single node\'s tokens.json on the cluster\'s first start only, admin included', async () => {
    const { here } = await fresh();
    const d = dir();
    const file = TokenFile.in(d);
    const { token: admin } = file.ensureAdmin();
    const op = file.add('operator', { label: 'ci' });
    const tokens = await DbTokens.open({ engine: here, clock: manualClock() });
    expect(await tokens.bootstrap(d)).toMatchObject({ created: false, imported: 2, admin });
    expect(tokens.verify(op)).toMatchObject({ role: 'operator', label: 'ci' });
    // A later node's file is not imported behind the cluster's back.
    const d2 = dir();
    const late = TokenFile.in(d2).add('admin', { label: 'late' });
    expect(await tokens.bootstrap(d2)).toMatchObject({ created: false, imported: 0, admin: null });
    expect(tokens.verify(late)).toBeNull();
    tokens.close();
  });

  describe('behind the control server', () => {
    let server: WsupServer;
    let supervisor: Supervisor;
    let tokens: DbTokens;
    let engine: SqlEngine & { queries: number };
    let other: SqlEngine;
    let wsUrl = '';
    let httpUrl = '';

    beforeAll(async () => {
      const f = await fresh();
      other = f.other;
      engine = counted(f.here);
      tokens = await DbTokens.open({ engine, clock: manualClock() });
      supervisor = new Supervisor({ provider: new FakeProvider({ latencyMs: 1 }) });
      server = createServer({ supervisor, tokens, port: 0, edge: { recheckMs: 50, maxPendingUpgradesPerAddress: 1000 } });
      const l = await server.listen();
      httpUrl = l.url;
      wsUrl = `ws://127.0.0.1:${l.port}/control`;
    });
    afterAll(async () => {
      tokens.close();
      await server.close();
      await supervisor.shutdown({ deadlineMs: 1000 });
    });

    it('closes open sockets of a revoked token (4401) and refuses it from then on', async () => {
      const { token } = await issueDbToken(other, 'operator', { label: 'gone' });
      const { token: stays } = await issueDbToken(other, 'viewer', { label: 'stays' });
      await tokens.refresh();
      const s = await RawSocket.open(wsUrl, { authorization: `Bearer ${token}` });
      const v = await RawSocket.open(wsUrl, { authorization: `Bearer ${stays}` });
      await new ApiTokenRows(other).revoke('gone');
      await tokens.refresh(); // what the replica's LISTEN does on the revoke's notification
      await expect.poll(() => s.closed?.code, { timeout: 10_000, interval: 20 }).toBe(4401);
      expect(await upgradeStatus(wsUrl, { authorization: `Bearer ${token}` })).toBe(401);
      expect(v.closed).toBeNull();
      v.ws.terminate();
    });

    it('answers a flood of unknown tokens from memory: no database round trip per attempt', async () => {
      const before = engine.queries;
      const t0 = performance.now();
      const attempts = 2000;
      const statuses: number[] = [];
      // 50 at a time: the per-address connection cap is not what this measures.
      for (let i = 0; i < attempts; i += 50) {
        const batch = Array.from({ length: 50 }, (_, j) => fetch(`${httpUrl}/whoami`, { headers: { authorization: `Bearer wsup_guess${i + j}` } }).then((r) => r.status));
        statuses.push(...(await Promise.all(batch)));
      }
      const upgrades: number[] = [];
      for (let i = 0; i < 200; i += 50) upgrades.push(...(await Promise.all(Array.from({ length: 50 }, (_, j) => upgradeStatus(wsUrl, { authorization: `Bearer wsup_ws_guess${i + j}` })))));
      const ms = performance.now() - t0;
      expect(new Set(statuses)).toEqual(new Set([401]));
      expect(new Set(upgrades)).toEqual(new Set([401]));
      expect(engine.queries - before).toBe(0);
      console.info(`[auth-db] ${attempts} bad-token /whoami + 200 bad upgrades: ${Math.round(ms)} ms, ${engine.queries - before} database statements`);
    });
  });
});
