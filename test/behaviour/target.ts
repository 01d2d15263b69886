/**
 * The target a behaviour test runs against: one `wsup serve` process, or a cluster of three `wsup serve
 * --cluster` processes on one PostgreSQL schema, all with `--provider fake` and one data dir (one token
 * file). Tests get clients on a random server (`client`), or on the i-th one (`at`), so the same bodies
 * prove that a cluster behaves like one node whichever replica a caller reaches.
 *
 * @example
 * const t = await startTarget('cluster', { url: postgresUrl() });
 * const op = t.client('operator');
 * await op.call('workspace.create', { id: 'ws-1' });
 * await t.dispose();
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { expect, vi } from 'vitest';
import WebSocket from 'ws';
import { shardOf } from '../../src/cluster/shards.ts';
import { WsupClient } from '../../src/client/index.ts';
import { TokenFile } from '../../src/server/auth.ts';
import { openPostgres } from '../../src/store/pg-engine.ts';
import { dropSchema } from '../cluster/harness.ts';
import type { SqlEngine } from '../../src/store/engine.ts';

export type TargetKind = 'node' | 'cluster';
export type Role = 'admin' | 'operator' | 'viewer';

export interface TargetOptions {
  /** PostgreSQL base url: the node uses it too when given (PGlite otherwise); the cluster needs it. */
  url: string | null;
  /** Extra `wsup serve` flags (quotas). */
  flags?: string[];
}

interface Server {
  name: string;
  proc: ChildProcess;
  url: string;
  exited: Promise<void>;
}

export class Target {
  private readonly clients: WsupClient[] = [];
  private readonly tokens: Record<Role, string>;

  private constructor(
    readonly kind: TargetKind,
    readonly dir: string,
    readonly servers: Server[],
    private readonly db: SqlEngine | null,
    private readonly schema: string | null,
    private readonly baseUrl: string | null,
    tokens: Record<Role, string>,
  ) {
    this.tokens = tokens;
  }

  static async start(kind: TargetKind, opts: TargetOptions): Promise<Target> {
    if (kind === 'cluster' && !opts.url) throw new Error('a cluster target needs PostgreSQL');
    const dir = mkdtempSync(join(tmpdir(), `wsup-behaviour-${kind}-`));
    const file = TokenFile.in(dir);
    const tokens: Record<Role, string> = {
      admin: file.ensureAdmin().token,
      operator: file.add('operator', { label: 'alice' }),
      viewer: file.add('viewer', { label: 'watcher' }),
    };
    let db: SqlEngine | null = null;
    let schema: string | null = null;
    let dbUrl: string | null = null;
    if (opts.url) {
      schema = `wsup_beh_${kind}_${process.pid}_${Math.random().toString(36).slice(2, 8)}`;
      db = await openPostgres({ url: opts.url, schema, max: 2 }); // creates the schema
      dbUrl = `${opts.url}${opts.url.includes('?') ? '&' : '?'}options=${encodeURIComponent(`-c search_path=${schema}`)}`;
    }
    const n = kind === 'cluster' ? 3 : 1;
    const args = (i: number) => [
      'serve',
      '--provider',
      'fake',
      '--port',
      '0',
      '--data-dir',
      dir,
      ...(kind === 'cluster' ? ['--cluster', '--replica-id', `r${i}`] : []),
      ...(opts.flags ?? []),
    ];
    const env = { ...(dbUrl ? { DATABASE_URL: dbUrl } : { DATABASE_URL: '' }), WSUP_LOG_LEVEL: 'warn' };
    const servers: Server[] = [];
    const t = new Target(kind, dir, servers, db, schema, opts.url, tokens);
    try {
      // The first one migrates the schema; the others start together.
      servers.push(await serve(`r0`, args(0), env));
      servers.push(...(await Promise.all(Array.from({ length: n - 1 }, (_, i) => serve(`r${i + 1}`, args(i + 1), env)))));
      if (kind === 'cluster') await t.settled();
    } catch (err) {
      await t.dispose();
      throw err;
    }
    return t;
  }

  /** The PostgreSQL schema the target runs in (null: PGlite). */
  get schemaName(): string | null {
    return this.schema;
  }

  get size(): number {
    return this.servers.length;
  }

  token(role: Role): string {
    return this.tokens[role];
  }

  /** A client of `role` on a random server. */
  client(role: Role = 'operator'): WsupClient {
    return this.at(Math.floor(Math.random() * this.servers.length), role);
  }

  /** A client of `role` on server `i` (modulo the number of servers). */
  at(i: number, role: Role = 'operator'): WsupClient {
    const c = new WsupClient({ url: this.servers[i % this.servers.length]!.url, token: this.tokens[role], WebSocket, reconnect: false });
    this.clients.push(c);
    return c;
  }

  /** The `/agent` url of server `i`. */
  agentUrl(i: number): string {
    return `${this.servers[i % this.servers.length]!.url.replace(/^http/, 'ws')}/agent`;
  }

  /** The replica index owning `id`'s shard now (0 for one node). */
  async ownerOf(id: string): Promise<number> {
    if (this.kind === 'node' || !this.db) return 0;
    const { rows } = await this.db.query<{ owner: string }>('SELECT owner FROM shard_leases WHERE shard = $1 AND expires_at > now()', [shardOf(id, 64)]);
    return Number((rows[0]?.owner ?? 'r0').slice(1));
  }

  /** Ids with `prefix` whose owners are `n` different servers (one each), or as many as there are. */
  async spread(prefix: string, n: number): Promise<string[]> {
    const want = Math.min(n, this.servers.length);
    const byOwner = new Map<number, string>();
    for (let i = 0; byOwner.size < want && i < 10_000; i++) {
      const id = `${prefix}-${i}`;
      const o = await this.ownerOf(id);
      if (!byOwner.has(o)) byOwner.set(o, id);
    }
    const ids = [...byOwner.values()];
    while (ids.length < n) ids.push(`${prefix}-x${ids.length}`);
    return ids;
  }

  /** Every shard has a live lease and every replica holds some: the cluster is balanced. */
  private async settled(): Promise<void> {
    await vi.waitFor(
      async () => {
        const { rows } = await this.db!.query<{ owner: string; n: number }>(
          'SELECT owner, count(*)::int AS n FROM shard_leases WHERE owner IS NOT NULL AND expires_at > now() GROUP BY owner',
        );
        expect(rows.reduce((a, r) => a + r.n, 0)).toBe(64);
        expect(rows.length).toBe(this.servers.length);
      },
      { timeout: 60_000, interval: 200 },
    );
  }

  async dispose(): Promise<void> {
    for (const c of this.clients) c.close();
    await Promise.all(
      this.servers.map(async (s) => {
        s.proc.kill('SIGKILL');
        await s.exited;
      }),
    );
    await this.db?.close();
    if (this.baseUrl && this.schema) await dropSchema(this.baseUrl, this.schema);
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export const startTarget = (kind: TargetKind, opts: TargetOptions) => Target.start(kind, opts);

function serve(name: string, args: string[], env: Record<string, string>): Promise<Server> {
  const proc = spawn(process.execPath, ['scripts/wsup-dev.js', ...args], {
    cwd: new URL('../..', import.meta.url).pathname,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  return new Promise<Server>((resolve, reject) => {
    createInterface({ input: proc.stdout }).on('line', (l) => {
      const m = /^wsup ready on (\S+)/.exec(l);
      if (m) resolve({ name, proc, url: m[1]!, exited });
    });
    void exited.then(() => reject(new Error(`wsup serve ${name} exited with ${proc.exitCode} before it was ready`)));
  });
}
