/**
 * A million registered workspaces on one node: the store holds N (100,000 and 1,000,000), 10,000 of them
 * running, the rest stopped; `wsup serve` (the CLI's own, FakeProvider with no start time of its own) starts
 * on it. Measured per store (PostgreSQL, PGlite) and size: start-up to ready, RSS after start and with the
 * 10,000 running ones active, heap per active workspace, p50/p99 `workspace.ensure` of a cold stopped and of a
 * cold running workspace (from the client's send to its answer). Baseline: the same store with every actor
 * kept in memory (`--deactivate-after off`, all restored at start), at 100,000.
 * And the restart storm (10,000 × 20) on workspaces that all left memory first, on PostgreSQL.
 *
 * Sizes: WSUP_BENCH_MILLION_SIZES (default 100000,1000000); PostgreSQL needs DATABASE_URL.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { RESTART_SOURCES } from '../../machines/workspace.types.ts';
import { serveDefaults } from '../../src/cli/policy.ts';
import { WsupClient } from '../../src/client/index.ts';
import { FakeProvider } from '../../src/providers/fake.ts';
import { openPostgres } from '../../src/store/pg-engine.ts';
import { WorkspaceStore } from '../../src/store/index.ts';
import { openDurableSupervisor } from '../../src/supervisor/durable.ts';
import { runningId, stoppedId } from './million-ids.ts';

const RUNNING = 10_000;
const SAMPLES = 1_000;
const CHILD = fileURLToPath(new URL('./million-child.ts', import.meta.url));

export interface MillionRow {
  store: string;
  registered: number;
  mode: string;
  seedS: string;
  startupMs: number;
  rssReadyMB: number;
  rssActiveMB: number;
  heapPerActiveKB: string;
  coldStoppedP50: string;
  coldStoppedP99: string;
  coldRunningP50: string;
  coldRunningP99: string;
  met: string;
}

interface Where {
  kind: 'postgres' | 'pglite';
  dataDir: string;
  /** PostgreSQL: the url with this run's schema on its search path. */
  url?: string;
  schema?: string;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
};
const ms = (x: number) => `${x.toFixed(2)} ms`;

async function place(kind: Where['kind'], tag: string): Promise<Where> {
  const dataDir = mkdtempSync(join(tmpdir(), `wsup-million-${tag}-`));
  if (kind === 'pglite') return { kind, dataDir };
  const base = process.env.DATABASE_URL!;
  const schema = `wsup_million_${tag}_${process.pid}`;
  const admin = await openPostgres({ url: base, max: 1 });
  await admin.exec(`DROP SCHEMA IF EXISTS ${schema} CASCADE; CREATE SCHEMA ${schema}`);
  await admin.close();
  return { kind, dataDir, schema, url: `${base}${base.includes('?') ? '&' : '?'}options=${encodeURIComponent(`-c search_path=${schema}`)}` };
}

async function cleanup(w: Where): Promise<void> {
  rmSync(w.dataDir, { recursive: true, force: true });
  if (!w.schema) return;
  const admin = await openPostgres({ url: process.env.DATABASE_URL!, max: 1 });
  await admin.exec(`DROP SCHEMA IF EXISTS ${w.schema} CASCADE`);
  await admin.close();
}

const openAt = (w: Where) => WorkspaceStore.open(w.url ? { url: w.url } : { dataDir: join(w.dataDir, 'pglite') });

/**
 * `n` stored workspaces, RUNNING of them running: two made by a real supervisor under the server's default
 * policy (one stopped, one running), the rest copies of their rows under their own ids.
 */
async function seed(w: Where, n: number): Promise<number> {
  const t0 = performance.now();
  const store = await openAt(w);
  const provider = new FakeProvider({ latencyMs: 0 });
  const { supervisor } = await openDurableSupervisor({ store, provider, policy: serveDefaults({}), config: { activityGraceMs: 5_000 } });
  await supervisor.create('cold-template');
  await supervisor.ensure('run-template');
  await supervisor.shutdown();
  const copy = async (template: string, prefix: string, from: number, to: number) =>
    store.engine.query(
      `INSERT INTO workspaces (id, spec, desired, state, owner, prebuild, pool, snapshot, version, next_due_at)
       SELECT ids.id, replace(t.spec::text, '${template}', ids.id)::jsonb, t.desired, t.state, t.owner, false, NULL, replace(t.snapshot, '${template}', ids.id), 1, t.next_due_at
       FROM (SELECT '${prefix}' || lpad(g::text, 7, '0') AS id FROM generate_series($1::int, $2::int) g) ids, workspaces t WHERE t.id = '${template}'`,
      [from, to],
    );
  const BATCH = w.kind === 'pglite' ? 25_000 : 100_000;
  for (let i = 0; i < RUNNING; i += BATCH) await copy('run-template', 'run-', i, Math.min(RUNNING, i + BATCH) - 1);
  for (let i = 0; i < n - RUNNING; i += BATCH) await copy('cold-template', 'cold-', i, Math.min(n - RUNNING, i + BATCH) - 1);
  // The two originals go (as destroyed: the log is append-only), so the copies are all there is.
  await store.engine.query(`UPDATE workspaces SET state = 'destroyed', desired = 'destroyed', destroyed_at = now() WHERE id IN ('cold-template', 'run-template')`);
  await store.engine.exec('VACUUM ANALYZE workspaces');
  await store.close();
  return (performance.now() - t0) / 1000;
}

interface Served {
  child: ChildProcess;
  url: string;
  startupMs: number;
  memory(): Promise<{ rss: number; heapUsed: number }>;
  stop(): Promise<void>;
}

async function serveOn(w: Where, deactivate?: string): Promise<Served> {
  const t0 = performance.now();
  const child = spawn(process.execPath, ['--expose-gc', '--import', 'tsx', CHILD], {
    env: {
      ...process.env,
      WSUP_BENCH_DATA_DIR: w.dataDir,
      WSUP_BENCH_RUNNING: String(RUNNING),
      WSUP_LOG_LEVEL: 'warn',
      ...(w.url ? { WSUP_BENCH_DATABASE_URL: w.url } : {}),
      ...(deactivate ? { WSUP_BENCH_DEACTIVATE: deactivate } : {}),
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const lines = createInterface({ input: child.stdout });
  const waiting: Array<(line: string) => void> = [];
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  lines.on('line', (line) => waiting.shift()?.(line));
  const next = (match: RegExp, what: string) =>
    Promise.race([
      new Promise<string>((resolve) => {
        const take = (line: string) => (match.test(line) ? resolve(line) : waiting.unshift(take));
        waiting.push(take);
      }),
      exited.then(() => {
        throw new Error(`wsup serve exited before ${what}`);
      }),
    ]);
  const banner = await next(/wsup ready on /, 'it was ready');
  const startupMs = performance.now() - t0;
  const url = /wsup ready on (\S+)/.exec(banner)![1]!;
  return {
    child,
    url,
    startupMs,
    async memory() {
      const line = next(/^memory /, 'it printed its memory');
      child.kill('SIGUSR2');
      const m = JSON.parse((await line).slice('memory '.length)) as { rss: number; heapUsed: number };
      return m;
    },
    async stop() {
      child.kill('SIGTERM');
      await exited;
    },
  };
}

/**
 * One call at a time: each latency is one request's, send to answer. Round the connections, each under the
 * server's per-connection rate limit.
 */
async function latencies(clients: WsupClient[], ids: string[]): Promise<number[]> {
  const out: number[] = [];
  for (const [i, id] of ids.entries()) {
    const t = performance.now();
    const r = await clients[i % clients.length]!.call('workspace.ensure', { id });
    out.push(performance.now() - t);
    if (r.state !== 'running') throw new Error(`ensure ${id}: ${r.state}`);
  }
  return out;
}

async function inBatches(ids: string[], width: number, f: (id: string) => Promise<unknown>): Promise<void> {
  for (let i = 0; i < ids.length; i += width) await Promise.all(ids.slice(i, i + width).map(f));
}

async function measure(kind: Where['kind'], n: number, deactivate?: string): Promise<MillionRow> {
  const w = await place(kind, `${kind === 'postgres' ? 'pg' : 'lite'}${n}${deactivate ? 'off' : ''}`);
  try {
    const seedS = await seed(w, n);
    const served = await serveOn(w, deactivate);
    try {
      const ready = await served.memory();
      const token = readFileSync(join(w.dataDir, 'admin.token'), 'utf8').trim();
      const clients = Array.from({ length: 16 }, () => new WsupClient({ url: served.url, token, WebSocket, reconnect: false, requestTimeoutMs: 60_000 }));
      // Cold ones spread over the id space; then every running one, which is what "10,000 active" means here.
      const stride = (total: number) => Math.max(1, Math.floor(total / SAMPLES));
      const runningSample = Array.from({ length: SAMPLES }, (_, i) => runningId((i * stride(RUNNING)) % RUNNING));
      const stoppedSample = Array.from({ length: SAMPLES }, (_, i) => stoppedId((i * stride(n - RUNNING) + 7) % (n - RUNNING)));
      await Promise.all(clients.map((c) => c.call('workspace.get', { id: stoppedId(0) }))); // connections and a first request, not measured
      const coldRunning = await latencies(clients, runningSample);
      const coldStopped = await latencies(clients, stoppedSample);
      // Every running one, 16 connections each one call at a time.
      const all = Array.from({ length: RUNNING }, (_, i) => runningId(i));
      await Promise.all(clients.map(async (c, k) => {
        for (let i = k; i < all.length; i += clients.length) await c.call('workspace.ensure', { id: all[i]! });
      }));
      const active = await served.memory();
      for (const c of clients) c.close();
      const activated = RUNNING + SAMPLES;
      const heapPerActive = (active.heapUsed - ready.heapUsed) / activated;
      const rssActiveMB = Math.round(active.rss / 2 ** 20);
      const p99s = [pct(coldStopped, 99), pct(coldRunning, 99)];
      const checks = deactivate
        ? []
        : [served.startupMs <= 5_000 || `start-up ${Math.round(served.startupMs)} ms > 5 s`, p99s.every((p) => p <= 20) || 'p99 > 20 ms', kind !== 'postgres' || rssActiveMB <= 1_536 || `RSS ${rssActiveMB} MB > 1.5 GB`];
      const failed = checks.filter((c): c is string => c !== true);
      return {
        store: kind,
        registered: n,
        mode: deactivate ? 'baseline: every actor in memory' : 'deactivation on (default)',
        seedS: seedS.toFixed(1),
        startupMs: Math.round(served.startupMs),
        rssReadyMB: Math.round(ready.rss / 2 ** 20),
        rssActiveMB,
        heapPerActiveKB: deactivate ? '' : (heapPerActive / 1024).toFixed(2),
        coldStoppedP50: ms(pct(coldStopped, 50)),
        coldStoppedP99: ms(pct(coldStopped, 99)),
        coldRunningP50: ms(pct(coldRunning, 50)),
        coldRunningP99: ms(pct(coldRunning, 99)),
        met: deactivate ? '' : failed.length === 0 ? 'yes' : `NO: ${failed.join('; ')}`,
      };
    } finally {
      await served.stop();
    }
  } finally {
    await cleanup(w);
  }
}

export interface ColdStormRow {
  store: string;
  workspaces: number;
  requests: number;
  activeBefore: number;
  cyclesMax: number;
  cyclesMean: string;
  overlaps: number;
  wallMs: number;
  activations: number;
  met: string;
}

/** 10,000 workspaces × 20 restarts at once (mixed sources), every one of them out of memory when it begins. */
async function coldStorm(kind: Where['kind']): Promise<ColdStormRow> {
  const w = await place(kind, `${kind === 'postgres' ? 'pg' : 'lite'}storm`);
  const n = 10_000;
  try {
    const store = await openAt(w);
    const provider = new FakeProvider({ latencyMs: 1 });
    const { supervisor } = await openDurableSupervisor({ store, provider, deactivateAfterMs: 200 });
    const ids = Array.from({ length: n }, (_, i) => `storm-${i}`);
    await inBatches(ids, 500, (id) => supervisor.ensure(id));
    for (let i = 0; i < 100 && supervisor.residency().active > 0; i++) await sleep(100); // quiet: they all leave memory
    const activeBefore = supervisor.residency().active;
    const before = new Map(provider.starts);
    let seed = 42;
    const rand = () => ((seed = (seed * 1664525 + 1013904223) >>> 0) / 2 ** 32);
    const t0 = performance.now();
    await Promise.all(ids.flatMap((id) => Array.from({ length: 20 }, () => supervisor.restart(id, { source: RESTART_SOURCES[Math.floor(rand() * RESTART_SOURCES.length)]!, reason: 'storm', wait: true }))));
    const wallMs = performance.now() - t0;
    const counts = ids.map((id) => (provider.starts.get(id) ?? 0) - (before.get(id) ?? 0));
    const cyclesMax = Math.max(...counts);
    const activations = supervisor.residency().activations;
    await supervisor.shutdown();
    await store.close();
    const ok = cyclesMax <= 2 && provider.overlaps.length === 0;
    return {
      store: kind,
      workspaces: n,
      requests: n * 20,
      activeBefore,
      cyclesMax,
      cyclesMean: (counts.reduce((a, b) => a + b, 0) / n).toFixed(2),
      overlaps: provider.overlaps.length,
      wallMs: Math.round(wallMs),
      activations,
      met: ok ? 'yes' : 'NO',
    };
  } finally {
    await cleanup(w);
  }
}

export async function benchMillion(): Promise<object[]> {
  const sizes = (process.env.WSUP_BENCH_MILLION_SIZES ?? '100000,1000000').split(',').map(Number);
  const kinds: Array<Where['kind']> = process.env.DATABASE_URL ? ['postgres', 'pglite'] : ['pglite'];
  if (!process.env.DATABASE_URL) console.log('(no DATABASE_URL: PostgreSQL rows skipped)');
  const rows: object[] = [];
  const step = async (row: Promise<MillionRow>) => {
    const r = await row;
    console.log(`  ${r.store} ${r.registered} ${r.mode}: ready in ${r.startupMs} ms, RSS ${r.rssActiveMB} MB, p99 cold stopped ${r.coldStoppedP99}, cold running ${r.coldRunningP99}`);
    rows.push(r);
  };
  for (const kind of kinds) {
    await step(measure(kind, Math.min(...sizes), 'off'));
    for (const n of sizes) await step(measure(kind, n));
  }
  console.table(rows);
  const storm = [await coldStorm(kinds[0]!)];
  console.table(storm);
  return growth(rows as MillionRow[]);
}

/** How each figure grows from the smallest to the largest size, deactivation on (flat is the target). */
function growth(rows: MillionRow[]): object[] {
  const on = rows.filter((r) => !r.mode.startsWith('baseline'));
  const out: object[] = [];
  for (const kind of new Set(on.map((r) => r.store))) {
    const mine = on.filter((r) => r.store === kind).sort((a, b) => a.registered - b.registered);
    if (mine.length < 2) continue;
    const [a, b] = [mine[0]!, mine[mine.length - 1]!];
    const ratio = (x: number, y: number) => `${(y / x).toFixed(2)}×`;
    const num = (s: string) => Number.parseFloat(s);
    out.push({
      store: kind,
      from: a.registered,
      to: b.registered,
      startup: ratio(a.startupMs, b.startupMs),
      rssActive: ratio(a.rssActiveMB, b.rssActiveMB),
      heapPerActive: ratio(num(a.heapPerActiveKB), num(b.heapPerActiveKB)),
      coldStoppedP99: ratio(num(a.coldStoppedP99), num(b.coldStoppedP99)),
      coldRunningP99: ratio(num(a.coldRunningP99), num(b.coldRunningP99)),
    });
  }
  return out;
}

if (import.meta.url === `file://${process.argv[1]}`) console.table(await benchMillion());
