/**
 * Replicas as separate processes against one PostgreSQL schema, with the database-shared fake provider.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ClusterMethod, ClusterParams } from '../../src/cluster/index.ts';
import { TokenFile } from '../../src/server/auth.ts';
import type { SqlEngine } from '../../src/store/engine.ts';
import { openPostgres } from '../../src/store/pg-engine.ts';
import { FAKE_TABLES } from './db-provider.ts';

const CHILD = fileURLToPath(new URL('./replica-child.ts', import.meta.url));
const SERVE_CHILD = fileURLToPath(new URL('./serve-child.ts', import.meta.url));
const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** Drop a test's schema (and everything in it) through a connection of its own. */
export async function dropSchema(url: string, schema: string): Promise<void> {
  const admin = await openPostgres({ url, max: 1 });
  try {
    await admin.exec(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  } finally {
    await admin.close();
  }
}

/** Shards whose lease is held right now, by owner. */
export async function leaseOwners(db: SqlEngine): Promise<Map<string, number>> {
  const { rows } = await db.query<{ owner: string; n: number }>('SELECT owner, count(*)::int AS n FROM shard_leases WHERE owner IS NOT NULL AND expires_at > now() GROUP BY owner');
  return new Map(rows.map((r) => [r.owner, r.n]));
}

export type CallOutcome = { ok: true; result: unknown } | { ok: false; code: string; message: string };

export class ReplicaProcess {
  readonly proc: ChildProcess;
  readonly ready: Promise<number>;
  readonly exited: Promise<void>;
  port = 0;
  dead = false;

  constructor(
    readonly name: string,
    env: Record<string, string>,
  ) {
    this.proc = spawn(process.execPath, ['--import', 'tsx', CHILD], { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
    this.exited = new Promise((r) => this.proc.once('exit', () => r()));
    this.ready = new Promise((resolve, reject) => {
      createInterface({ input: this.proc.stdout! }).on('line', (l) => {
        const m = /^READY (\d+)$/.exec(l);
        if (m) resolve((this.port = Number(m[1])));
      });
      void this.exited.then(() => reject(new Error(`replica ${name} exited before READY`)));
    });
  }

  async call(method: ClusterMethod, params: ClusterParams, timeoutMs = 30_000): Promise<CallOutcome> {
    try {
      const res = await fetch(`http://127.0.0.1:${this.port}/call`, {
        method: 'POST',
        body: JSON.stringify({ method, params }),
        signal: AbortSignal.timeout(timeoutMs),
      });
      const body = (await res.json()) as { result?: unknown; error?: { code: string; message: string } };
      return body.error ? { ok: false, ...body.error } : { ok: true, result: body.result };
    } catch (err) {
      return { ok: false, code: 'TRANSPORT', message: err instanceof Error ? err.message : String(err) };
    }
  }

  async get(path: string): Promise<unknown> {
    return (await fetch(`http://127.0.0.1:${this.port}${path}`, { method: path === '/blink' ? 'POST' : 'GET' })).json();
  }

  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    this.dead = true;
    this.proc.kill(signal);
    await this.exited;
  }
}

export class ClusterRig {
  readonly replicas: ReplicaProcess[] = [];
  readonly errors: unknown[] = [];
  private n = 0;
  private disposed = false;

  private constructor(
    readonly url: string,
    readonly schema: string,
    readonly db: SqlEngine,
    private readonly env: Record<string, string>,
  ) {}

  /** `providerConnections`: each replica's pool to the shared fake provider (default 4). */
  static async create(url: string, env: { latencyMs?: number; ttlMs?: number; windowMs?: number; providerConnections?: number } = {}): Promise<ClusterRig> {
    const schema = `wsup_cluster_${process.pid}_${Math.random().toString(36).slice(2, 8)}`;
    const db = await openPostgres({ url, schema, max: 4 });
    await db.exec(FAKE_TABLES);
    return new ClusterRig(url, schema, db, {
      DATABASE_URL: url,
      WSUP_CLUSTER_SCHEMA: schema,
      WSUP_CLUSTER_LATENCY_MS: String(env.latencyMs ?? 20),
      WSUP_CLUSTER_TTL_MS: String(env.ttlMs ?? 2000),
      WSUP_CLUSTER_WINDOW_MS: String(env.windowMs ?? 60_000),
      WSUP_CLUSTER_PROVIDER_CONNECTIONS: String(env.providerConnections ?? 4),
    });
  }

  async spawn(): Promise<ReplicaProcess> {
    const r = new ReplicaProcess(`r${this.n++}`, { ...this.env, WSUP_CLUSTER_REPLICA: `r${this.n - 1}` });
    this.replicas.push(r);
    await r.ready;
    return r;
  }

  /** Start a replacement without waiting for it; a boot failure (unless disposing) is kept in `errors`. */
  spawnInBackground(): void {
    this.spawn().catch((err: unknown) => {
      if (!this.disposed) this.errors.push(err);
    });
  }

  alive(): ReplicaProcess[] {
    return this.replicas.filter((r) => !r.dead);
  }

  /** SIGKILL, then tell the shared provider that this replica's in-flight calls died with it. */
  async kill(r: ReplicaProcess): Promise<void> {
    await r.kill('SIGKILL');
    await this.db.query('INSERT INTO fake_dead VALUES ($1) ON CONFLICT DO NOTHING', [r.name]);
  }

  /** Shards whose lease is held right now, by owner. */
  async owners(): Promise<Map<string, number>> {
    return leaseOwners(this.db);
  }

  async dispose(): Promise<void> {
    this.disposed = true;
    await Promise.all(this.alive().map((r) => r.kill('SIGKILL')));
    await this.db.close();
    await dropSchema(this.url, this.schema);
  }
}

/** `wsup serve --cluster --provider fake` as its own process, as a user starts a replica; `url` once it is ready. */
export function serveReplica(dataDir: string, dbUrl: string, name: string): { proc: ChildProcess; url: Promise<string> } {
  const proc = spawn(process.execPath, ['scripts/wsup-dev.js', 'serve', '--cluster', '--replica-id', name, '--provider', 'fake', '--port', '0', '--data-dir', dataDir], {
    cwd: new URL('../..', import.meta.url).pathname,
    env: { ...process.env, DATABASE_URL: dbUrl, WSUP_LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const ready = new Promise<string>((resolve, reject) => {
    createInterface({ input: proc.stdout }).on('line', (l) => {
      const m = /^wsup ready on (\S+)/.exec(l);
      if (m) resolve(m[1]!);
    });
    proc.once('exit', (code) => reject(new Error(`wsup serve --cluster exited with ${code} before it was ready`)));
  });
  return { proc, url: ready };
}

/** One `wsup serve --cluster` process of a ServeRig. */
export interface ServedReplica {
  name: string;
  proc: ChildProcess;
  /** Its http:// URL (append /control or /agent, as ws://). */
  url: string;
  exited: Promise<void>;
  dead: boolean;
}

/**
 * `wsup serve --cluster` processes (serve-child.ts: the whole server, the database-shared fake provider)
 * on one PostgreSQL schema and one data dir, whose token file (an operator token) the first replica
 * imports into the cluster.
 */
export class ServeRig {
  readonly servers: ServedReplica[] = [];
  private n = 0;

  private constructor(
    readonly url: string,
    readonly schema: string,
    readonly db: SqlEngine,
    readonly dir: string,
    readonly operator: string,
    private readonly env: Record<string, string>,
  ) {}

  /** `providerConnections`: each replica's pool to the shared fake provider (default 4). */
  static async create(url: string, opts: { latencyMs?: number; providerConnections?: number } = {}): Promise<ServeRig> {
    const schema = `wsup_serve_${process.pid}_${Math.random().toString(36).slice(2, 8)}`;
    const db = await openPostgres({ url, schema, max: 4 });
    await db.exec(FAKE_TABLES);
    const dir = mkdtempSync(join(tmpdir(), 'wsup-serve-rig-'));
    const operator = TokenFile.in(dir).add('operator', { label: 'rig' });
    return new ServeRig(url, schema, db, dir, operator, {
      DATABASE_URL: url,
      WSUP_CLUSTER_SCHEMA: schema,
      WSUP_CLUSTER_DATA_DIR: dir,
      WSUP_CLUSTER_LATENCY_MS: String(opts.latencyMs ?? 10),
      WSUP_CLUSTER_PROVIDER_CONNECTIONS: String(opts.providerConnections ?? 4),
      WSUP_LOG_LEVEL: 'warn',
    });
  }

  /** Start a replica; resolves once it serves (its banner printed). */
  spawn(): Promise<ServedReplica> {
    const name = `r${this.n++}`;
    const proc = spawn(process.execPath, ['--import', 'tsx', SERVE_CHILD], { cwd: ROOT, env: { ...process.env, ...this.env, WSUP_CLUSTER_REPLICA: name }, stdio: ['ignore', 'pipe', 'inherit'] });
    const exited = new Promise<void>((r) => proc.once('exit', () => r()));
    return new Promise<ServedReplica>((resolve, reject) => {
      createInterface({ input: proc.stdout }).on('line', (l) => {
        const m = /^wsup ready on (\S+)/.exec(l);
        if (!m) return;
        const s: ServedReplica = { name, proc, url: m[1]!, exited, dead: false };
        this.servers.push(s);
        resolve(s);
      });
      void exited.then(() => reject(new Error(`replica ${name} exited with ${proc.exitCode} before it was ready`)));
    });
  }

  live(): ServedReplica[] {
    return this.servers.filter((s) => !s.dead);
  }

  /** SIGKILL, then tell the shared provider that this replica's in-flight calls died with it. */
  async kill(s: ServedReplica): Promise<void> {
    s.dead = true;
    s.proc.kill('SIGKILL');
    await s.exited;
    await this.db.query('INSERT INTO fake_dead VALUES ($1) ON CONFLICT DO NOTHING', [s.name]);
  }

  /** Shards whose lease is held right now, by owner. */
  async owners(): Promise<Map<string, number>> {
    return leaseOwners(this.db);
  }

  async dispose(): Promise<void> {
    for (const s of this.live()) s.proc.kill('SIGKILL');
    await Promise.all(this.servers.map((s) => s.exited));
    await this.db.close();
    await dropSchema(this.url, this.schema);
    rmSync(this.dir, { recursive: true, force: true });
  }
}
