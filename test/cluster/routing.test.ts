/**
 * Clients go to the owner: three `wsup serve --cluster` processes on one PostgreSQL advertise their URLs
 * in `cluster.members`; the ClusterClient (and the CLI given a comma list of URLs) sends each command to
 * its workspace's owner, so next to nothing goes through the forwarding inbox, with the same results as a
 * client that does not route. A replica leaving moves its shards, and one killed (-9) loses them; the
 * routing client follows both without a failed call.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClusterClient, WsupClient, type ClusterMembers } from '../../src/client/index.ts';
import { openPostgres } from '../../src/store/pg-engine.ts';
import { runCli } from '../cli/run-cli.ts';
import { describeWith, postgresUrl } from '../helpers/require.ts';
import { serveReplica } from './harness.ts';
import { startRig, TOKENS } from '../server/rig.ts';

describe('cluster.members on a single node', () => {
  it('is a clear error a viewer gets, takes no params, and a ClusterClient falls back to the node', async () => {
    const rig = await startRig();
    try {
      const viewer = rig.client('viewer');
      const err = await viewer.call('cluster.members', {}).catch((e: unknown) => e);
      expect(err).toMatchObject({ wsupCode: 'WSUP_INVALID_ARGUMENT' });
      expect((err as Error).message).toContain('single node');
      const bad = await viewer.call('cluster.members', { replica: 'x' } as never).catch((e: unknown) => e);
      expect(bad).toMatchObject({ code: -32602 });
      // A ClusterClient given a single node (and a dead URL first) sends everything to the node that answers.
      const c = new ClusterClient({ urls: ['http://127.0.0.1:1', rig.url], token: TOKENS.operator, WebSocket, reconnect: false });
      try {
        expect(await c.call('workspace.ensure', { id: 'single-1' })).toMatchObject({ id: 'single-1', state: 'running' });
        expect(await c.call('workspace.get', { id: 'single-1' })).toMatchObject({ id: 'single-1' });
        expect(c.stats).toMatchObject({ owner: 0, any: 2 });
        expect(c.members).toBeNull();
      } finally {
        c.close();
      }
    } finally {
      await rig.close();
    }
  });
});

describeWith(postgresUrl(), 'clients go to the owner (3 replica processes)', (url) => {
  const schema = `wsup_route_${process.pid}_${Math.random().toString(36).slice(2, 8)}`;
  const dir = mkdtempSync(join(tmpdir(), 'wsup-route-'));
  const dbUrl = `${url}${url.includes('?') ? '&' : '?'}options=${encodeURIComponent(`-c search_path=${schema}`)}`;
  const procs: ChildProcess[] = [];
  const urls: string[] = [];
  let db: Awaited<ReturnType<typeof openPostgres>>;
  const forwarded = async () => Number((await db.query<{ n: string }>('SELECT count(*) AS n FROM cluster_inbox')).rows[0]!.n);

  beforeAll(async () => {
    db = await openPostgres({ url, schema, max: 1 }); // creates the schema
    const a = serveReplica(dir, dbUrl, 'a');
    procs.push(a.proc);
    urls.push(await a.url); // a writes the admin token all use (same data dir)
    for (const name of ['b', 'c']) {
      const r = serveReplica(dir, dbUrl, name);
      procs.push(r.proc);
      urls.push(await r.url);
    }
  }, 120_000);
  afterAll(async () => {
    for (const p of procs) p.kill('SIGKILL');
    await db.exec(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    await db.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('routes every command to its owner: ~0 forwarded, the same results as through one replica, and follows a leave', async () => {
    const token = readFileSync(join(dir, 'admin.token'), 'utf8').trim();
    const plain = new WsupClient({ url: urls[0]!, token, WebSocket });
    // Balanced: every replica owns shards, every shard has an owner, each member says where it serves.
    await expect
      .poll(async () => {
        const t: ClusterMembers = await plain.call('cluster.members', {});
        const share = Math.ceil(t.shards / 3);
        return t.members.length === 3 && t.members.every((m) => m.shards > 0 && m.shards <= share) && t.members.every((m) => m.url !== null) && t.owners.every((o) => o !== null);
      }, { timeout: 60_000, interval: 200 })
      .toBe(true);
    const table = await plain.call('cluster.members', {});
    expect(table.members.map((m) => m.url).sort()).toEqual([...urls].sort());
    expect(table.members.reduce((n, m) => n + m.shards, 0)).toBe(table.shards);

    const routed = new ClusterClient({ urls, token, WebSocket });
    const ids = Array.from({ length: 30 }, (_, i) => `rt-${i}`);
    const viaRouted = async (list: string[], c: { call: ClusterClient['call'] }) => {
      const ensured = await Promise.all(list.map((id) => c.call('workspace.ensure', { id })));
      const restarted = await Promise.all(list.map((id) => c.call('workspace.restart', { id, reason: 'routing', wait: true })));
      const stopped = await Promise.all(list.map((id) => c.call('workspace.stop', { id })));
      return list.map((_, i) => ({ started: ensured[i]!.started, ensured: ensured[i]!.state, restart: restarted[i]!.outcome, stopped: stopped[i]!.desired }));
    };
    const before = await forwarded();
    const routedResults = await viaRouted(ids, routed);
    const routedForwarded = (await forwarded()) - before;
    const commands = ids.length * 3;
    expect(routed.stats.owner).toBe(commands);
    expect(routedForwarded).toBeLessThanOrEqual(Math.ceil(commands * 0.02)); // only a move mid-run forwards

    // The same commands through one replica that does not route: most go through the inbox, same answers.
    const otherIds = ids.map((id) => `${id}-plain`);
    const mid = await forwarded();
    const plainResults = await viaRouted(otherIds, plain);
    const plainForwarded = (await forwarded()) - mid;
    expect(plainForwarded).toBeGreaterThan(commands / 3);
    expect(routedResults).toEqual(plainResults);

    // The CLI with a comma list routes too.
    const cli = await runCli(['restart', 'rt-7', '--reason', 'cli', '--wait', '--url', urls.join(','), '--data-dir', dir, '--json']);
    expect(cli.code, cli.stdout + cli.stderr).toBe(0);
    expect(JSON.parse(cli.stdout)).toMatchObject({ id: 'rt-7', outcome: 'started' });

    // c leaves (SIGTERM): its shards move; the routing client follows without failing a call.
    const leaving = procs[2]!;
    leaving.kill('SIGTERM');
    await new Promise((r) => leaving.once('exit', r));
    const follow = new ClusterClient({ urls, token, WebSocket, refreshMs: 0 });
    await expect
      .poll(async () => (await plain.call('cluster.members', {})).owners.every((o) => o === 'a' || o === 'b'), { timeout: 60_000, interval: 200 })
      .toBe(true);
    const afterLeave = await forwarded();
    const again = await Promise.all(ids.map((id) => follow.call('workspace.ensure', { id })));
    expect(again.every((r) => r.state === 'running')).toBe(true);
    expect((await forwarded()) - afterLeave).toBeLessThanOrEqual(1);

    // b is killed (-9) with the client's table naming it: commands for its shards go to a replica that can
    // be reached and wait there for the takeover; every one is answered, none fails.
    const killed = procs[1]!;
    killed.kill('SIGKILL');
    await new Promise((r) => killed.once('exit', r));
    const afterKill = await Promise.all(ids.map((id) => follow.call('workspace.restart', { id, reason: 'after kill', wait: true })));
    // Answered by a cycle: its own, or the one the new owner began restoring the workspace (joined).
    expect(afterKill.map((r) => `${r.id} ${r.outcome === 'joined' ? 'started' : r.outcome} ${r.state}`)).toEqual(ids.map((id) => `${id} started running`));
    const { rows } = await db.query<{ n: string }>("SELECT count(*) AS n FROM shard_leases WHERE owner = 'a' AND expires_at > now()");
    expect(Number(rows[0]!.n)).toBe(table.shards);
    for (const c of [plain, routed, follow]) c.close();
  }, 240_000);
});
