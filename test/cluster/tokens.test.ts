/**
 * One set of API tokens for a whole cluster: two `wsup serve --cluster` processes on a real PostgreSQL
 * (a schema of their own through the URL's search_path), each with its own data dir, managed with
 * `wsup token --cluster` as an operator would on either host.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TokenFile } from '../../src/server/auth.ts';
import type { SqlEngine } from '../../src/store/engine.ts';
import { openPostgres } from '../../src/store/pg-engine.ts';
import { runCli, serveCli } from '../cli/run-cli.ts';
import { describeWith, postgresUrl } from '../helpers/require.ts';
import { RawSocket, upgradeStatus } from '../server/rig.ts';

type Served = Awaited<ReturnType<typeof serveCli>>;

describeWith(postgresUrl(), 'cluster API tokens', (url) => {
  const tag = `${process.pid}_${Math.random().toString(36).slice(2, 8)}`;
  const schemas: string[] = [];
  const dirs: string[] = [];
  const running: Served[] = [];
  let db: SqlEngine;

  const schemaUrl = (schema: string) => `${url}${url.includes('?') ? '&' : '?'}options=${encodeURIComponent(`-c search_path=${schema}`)}`;
  const dir = () => {
    const d = mkdtempSync(join(tmpdir(), 'wsup-cltok-'));
    dirs.push(d);
    return d;
  };
  const serve = async (dataDir: string, dbUrl: string, name: string) => {
    const s = await serveCli(['--cluster', '--replica-id', name, '--provider', 'fake', '--port', '0', '--data-dir', dataDir, '--database-url', dbUrl]);
    running.push(s);
    return s;
  };
  const ws = (s: Served) => `${s.url.replace(/^http/, 'ws')}/control`;
  const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
  const tokenCli = (dbUrl: string, dataDir: string, ...args: string[]) => runCli(['token', '--cluster', '--data-dir', dataDir, '--json', ...args], { DATABASE_URL: dbUrl });

  beforeAll(async () => {
    process.env.WSUP_LOG_LEVEL = 'warn'; // the served processes inherit it: only warnings on the test's stderr
    db = await openPostgres({ url, max: 2 });
  });
  afterAll(async () => {
    await Promise.all(running.map((s) => s.stop()));
    for (const s of schemas) await db.exec(`DROP SCHEMA IF EXISTS ${s} CASCADE`);
    await db.close();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  describe('two replicas, each with its own data dir', () => {
    const schema = `wsup_cltok_${tag}`;
    const dbUrl = schemaUrl(schema);
    const dirA = dir();
    const dirB = dir();
    let a: Served;
    let b: Served;
    let admin = '';
    let adminDir = '';
    const count = async (where = 'true') => (await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${schema}.api_tokens WHERE ${where}`)).rows[0]!.n;

    beforeAll(async () => {
      schemas.push(schema);
      await (await openPostgres({ url, schema, max: 1 })).close(); // creates the schema
    });

    it('starting both at once mints exactly one admin token, into one of their data dirs', async () => {
      [a, b] = await Promise.all([serve(dirA, dbUrl, 'a'), serve(dirB, dbUrl, 'b')]);
      expect(await count("label = 'default-admin'")).toBe(1);
      const holders = [dirA, dirB].filter((d) => existsSync(join(d, 'admin.token')));
      expect(holders).toHaveLength(1);
      adminDir = holders[0]!;
      admin = readFileSync(join(adminDir, 'admin.token'), 'utf8').trim();
      expect(admin).toMatch(/^wsup_/);
    }, 120_000);

    it('the admin token works on both replicas, though only one data dir holds it', async () => {
      expect(await upgradeStatus(ws(a), bearer(admin))).toBe(101);
      expect(await upgradeStatus(ws(b), bearer(admin))).toBe(101);
      const other = adminDir === dirA ? b : a;
      const listed = await runCli(['list', '--url', other.url, '--token', admin, '--json']);
      expect(listed.code, listed.stderr).toBe(0);
      expect(await upgradeStatus(ws(a), bearer(`${admin}x`))).toBe(401);
    }, 60_000);

    let op = '';
    it('a token issued on replica b\'s host works on replica a (and b)', async () => {
      const issued = await tokenCli(dbUrl, dirB, '--add', 'operator', '--label', 'op-b');
      expect(issued.code, issued.stderr).toBe(0);
      op = (JSON.parse(issued.stdout) as { token: string }).token;
      await expect.poll(() => upgradeStatus(ws(a), bearer(op)), { timeout: 10_000, interval: 50 }).toBe(101);
      await expect.poll(() => upgradeStatus(ws(b), bearer(op)), { timeout: 10_000, interval: 50 }).toBe(101);
      const ensured = await runCli(['ensure', 'tok-ws-1', '--url', a.url, '--token', op, '--json']);
      expect(ensured.code, ensured.stderr).toBe(0);
      expect(JSON.parse(ensured.stdout)).toMatchObject({ id: 'tok-ws-1', state: 'running' });
    }, 60_000);

    it('revoking it answers 401 on both replicas and closes its open sockets on both (4401)', async () => {
      const onA = await RawSocket.open(ws(a), bearer(op));
      const onB = await RawSocket.open(ws(b), bearer(op));
      const adminSocket = await RawSocket.open(ws(b), bearer(admin));
      const revoked = await tokenCli(dbUrl, dirA, '--remove', 'op-b');
      const t0 = performance.now();
      expect(revoked.code, revoked.stderr).toBe(0);
      expect(JSON.parse(revoked.stdout)).toMatchObject({ removed: 1 });
      await expect.poll(() => onA.closed?.code, { timeout: 10_000, interval: 10 }).toBe(4401);
      await expect.poll(() => onB.closed?.code, { timeout: 10_000, interval: 10 }).toBe(4401);
      console.info(`[cluster tokens] revoke (CLI exited) → sockets closed on both replicas: ≤ ${Math.round(performance.now() - t0)} ms`);
      expect(await upgradeStatus(ws(a), bearer(op))).toBe(401);
      expect(await upgradeStatus(ws(b), bearer(op))).toBe(401);
      expect(adminSocket.closed).toBeNull(); // only that token's sockets
      adminSocket.ws.terminate();
      expect(await count('revoked_at IS NOT NULL')).toBe(1);
    }, 60_000);

    it('viewer and operator tokens have no way to issue, list or revoke tokens over the wire', async () => {
      const viewer = JSON.parse((await tokenCli(dbUrl, dirA, '--add', 'viewer', '--label', 'v-1')).stdout) as { token: string };
      const operator = JSON.parse((await tokenCli(dbUrl, dirA, '--add', 'operator', '--label', 'o-1')).stdout) as { token: string };
      const before = await count();
      for (const token of [viewer.token, operator.token]) {
        await expect.poll(() => upgradeStatus(ws(b), bearer(token)), { timeout: 10_000, interval: 50 }).toBe(101);
        const s = await RawSocket.open(ws(b), bearer(token));
        for (const method of ['token.issue', 'token.add', 'token.revoke', 'token.remove', 'token.list', 'token.rotate']) {
          const reply = (await s.rpc(JSON.stringify({ jsonrpc: '2.0', id: 1, method, params: { role: 'admin', label: 'v-1' } }))) as { error?: { code: number } };
          expect(reply.error?.code, method).toBe(-32601);
        }
        s.ws.terminate();
      }
      expect(await count()).toBe(before);
      expect(await count('revoked_at IS NOT NULL')).toBe(1);
    }, 60_000);

    it('a restart keeps every token and mints no second admin', async () => {
      await Promise.all([a.stop(), b.stop()]);
      const noAdmin = adminDir === dirA ? dirB : dirA;
      const again = await serve(noAdmin, dbUrl, 'c'); // the data dir without admin.token: nothing to mint
      expect(existsSync(join(noAdmin, 'admin.token'))).toBe(false);
      expect(await count("label = 'default-admin'")).toBe(1);
      expect(await upgradeStatus(ws(again), bearer(admin))).toBe(101);
      const listed = JSON.parse((await tokenCli(dbUrl, noAdmin, '--list')).stdout) as { items: Array<{ label: string | null; revokedAt: number | null }> };
      expect(listed.items.map((t) => [t.label, t.revokedAt !== null])).toEqual([
        ['default-admin', false],
        ['op-b', true],
        ['v-1', false],
        ['o-1', false],
      ]);
      // The old admin token, where it was minted, is still live: `wsup token` there prints it.
      expect(JSON.parse((await tokenCli(dbUrl, adminDir)).stdout)).toMatchObject({ token: admin });
      const rotated = await tokenCli(dbUrl, noAdmin, '--rotate');
      expect(rotated.code, rotated.stderr).toBe(0);
      const next = (JSON.parse(rotated.stdout) as { token: string }).token;
      expect(readFileSync(join(noAdmin, 'admin.token'), 'utf8').trim()).toBe(next);
      await expect.poll(() => upgradeStatus(ws(again), bearer(admin)), { timeout: 10_000, interval: 50 }).toBe(401);
      expect(await upgradeStatus(ws(again), bearer(next))).toBe(101);
      // Where the old one was minted, `wsup token` says it was rotated instead of printing a dead token.
      const stale = await tokenCli(dbUrl, adminDir);
      expect(stale.code).toBe(1);
      expect(stale.stderr).toContain('no longer works in the cluster');
      await again.stop();
    }, 120_000);
  });

  it('a single node\'s data dir brings its tokens.json into a new cluster on first start', async () => {
    const schema = `wsup_cltok_imp_${tag}`;
    schemas.push(schema);
    await (await openPostgres({ url, schema, max: 1 })).close();
    const d = dir();
    const file = TokenFile.in(d);
    const { token: admin } = file.ensureAdmin();
    const ci = file.add('operator', { label: 'ci' });
    const s = await serve(d, schemaUrl(schema), 'solo');
    expect(await upgradeStatus(ws(s), bearer(admin))).toBe(101);
    expect(await upgradeStatus(ws(s), bearer(ci))).toBe(101);
    const { rows } = await db.query<{ label: string }>(`SELECT label FROM ${schema}.api_tokens ORDER BY id`);
    expect(rows.map((r) => r.label)).toEqual(['default-admin', 'ci']); // imported, nothing minted
    // Another node's file, later and by hand: its tokens join; its default admin does not replace ours.
    const d2 = dir();
    const other = TokenFile.in(d2);
    other.ensureAdmin();
    const late = other.add('viewer', { label: 'late' });
    const imported = await runCli(['token', '--cluster', '--import', other.path, '--data-dir', d, '--json'], { DATABASE_URL: schemaUrl(schema) });
    expect(imported.code, imported.stderr).toBe(0);
    expect(JSON.parse(imported.stdout)).toMatchObject({ imported: 1, skipped: 1 });
    await expect.poll(() => upgradeStatus(ws(s), bearer(late)), { timeout: 10_000, interval: 50 }).toBe(101);
    expect(await upgradeStatus(ws(s), bearer(admin))).toBe(101);
    await s.stop();
  }, 120_000);

  it('wsup token --cluster without a database says what it needs', async () => {
    const r = await runCli(['token', '--cluster', '--list', '--data-dir', dir()], { DATABASE_URL: '' });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--cluster keeps tokens in PostgreSQL');
  }, 60_000);
});
