/**
 * `wsup serve --cluster` as the README shows it: two replica processes on one PostgreSQL (a schema of
 * its own through the URL's search_path), driven with the `wsup` CLI through either replica; one leaves
 * (SIGTERM) and the other serves everything.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openPostgres } from '../../src/store/pg-engine.ts';
import { runCli } from '../cli/run-cli.ts';
import { describeWith, postgresUrl } from '../helpers/require.ts';
import { serveReplica } from './harness.ts';

describe('wsup serve --cluster without PostgreSQL', () => {
  it('refuses to start, with a clear message', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'wsup-cluster-'));
    try {
      const r = await runCli(['serve', '--cluster', '--provider', 'fake', '--port', '0', '--data-dir', dir], { DATABASE_URL: '' });
      expect(r.code).not.toBe(0);
      expect(r.stderr).toContain('--cluster needs PostgreSQL');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});

describeWith(postgresUrl(), 'wsup serve --cluster', (url) => {
  const schema = `wsup_serve_${process.pid}_${Math.random().toString(36).slice(2, 8)}`;
  const dir = mkdtempSync(join(tmpdir(), 'wsup-cluster-'));
  const dbUrl = `${url}${url.includes('?') ? '&' : '?'}options=${encodeURIComponent(`-c search_path=${schema}`)}`;
  const procs: ChildProcess[] = [];

  beforeAll(async () => {
    const admin = await openPostgres({ url, schema, max: 1 }); // creates the schema
    await admin.close();
  });
  afterAll(async () => {
    for (const p of procs) p.kill('SIGKILL');
    const admin = await openPostgres({ url, max: 1 });
    await admin.exec(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    await admin.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('serves any workspace through any replica, and keeps serving when one leaves', async () => {
    const a = serveReplica(dir, dbUrl, 'a');
    procs.push(a.proc);
    const aUrl = await a.url; // a writes the admin token both use (same data dir)
    const b = serveReplica(dir, dbUrl, 'b');
    procs.push(b.proc);
    const bUrl = await b.url;
    const via = (u: string) => ['--url', u, '--data-dir', dir, '--json'];

    const ids = Array.from({ length: 6 }, (_, i) => `cl-${i}`);
    const ensured = await Promise.all(ids.map((id, i) => runCli(['ensure', id, ...via(i % 2 ? aUrl : bUrl)])));
    for (const r of ensured) expect(r.code, r.stdout + r.stderr).toBe(0);
    const restarted = await runCli(['restart', 'cl-3', '--reason', 'through a', '--wait', ...via(aUrl)]);
    expect(restarted.code, restarted.stdout + restarted.stderr).toBe(0);
    expect(JSON.parse(restarted.stdout)).toMatchObject({ id: 'cl-3', outcome: 'started' });

    const listed = await runCli(['list', ...via(bUrl)]);
    const items = (JSON.parse(listed.stdout) as { items: Array<{ id: string; state: string }> }).items;
    expect(items.map((w) => w.id).sort()).toEqual([...ids].sort());

    // a leaves gracefully; b takes its shards and serves every workspace.
    a.proc.kill('SIGTERM');
    await new Promise((r) => a.proc.once('exit', r));
    const after = await Promise.all(ids.map((id) => runCli(['restart', id, '--reason', 'after a left', ...via(bUrl)])));
    for (const r of after) expect(r.code, r.stdout + r.stderr).toBe(0);
    const status = await runCli(['status', 'cl-3', ...via(bUrl)]);
    expect(JSON.parse(status.stdout)).toMatchObject({ id: 'cl-3' });
  }, 120_000);
});
