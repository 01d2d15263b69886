/**
 * Server benchmarks (`benchServer`): command ack latency with 200 clients, event fan-out latency to 1,000
 * subscribers, and time from `wsup serve` to ready (cold = fresh data dir incl. PGlite initdb; warm = again).
 *
 * Clients and subscribers run in a worker thread (server-clients.worker.ts), so their JSON work does not
 * share the server's event loop; on a 2-core machine they still share the CPUs.
 * Fan-out feeds events straight into the server's hub (`server.hub.publish`), not through actor cycles,
 * so the rate is exact and the cost measured is the server's routing + serialization + sockets.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import type { WorkspaceEvent } from '../../src/protocol/index.ts';
import { FakeProvider } from '../../src/providers/fake.ts';
import { createServer, staticTokens } from '../../src/server/index.ts';
import { Supervisor } from '../../src/supervisor/supervisor.ts';
import type { WorkerJob } from './server-clients.worker.ts';

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? NaN;
};
const ms = (x: number) => Number(x.toFixed(2));
const sleep = (t: number) => new Promise((r) => setTimeout(r, t));

async function rig() {
  const supervisor = new Supervisor({ provider: new FakeProvider({ latencyMs: 0 }) });
  const server = createServer({ supervisor, tokens: staticTokens([{ token: 't', role: 'admin' }]), port: 0, limits: { ratePerSec: 1e9, burst: 1e9 } });
  const { port } = await server.listen();
  return { supervisor, server, url: `ws://127.0.0.1:${port}/control`, async close() { await server.close(); await supervisor.shutdown(); } };
}

function inWorker<T>(job: WorkerJob, onReady?: () => void): Promise<T> {
  return new Promise((resolve, reject) => {
    const w = new Worker(new URL('./worker-boot.mjs', import.meta.url), {
      workerData: { ...job, entry: new URL('./server-clients.worker.ts', import.meta.url).href },
    });
    w.on('message', (m: { ready?: boolean }) => {
      if (m.ready) onReady?.();
      else resolve(m as T);
    });
    w.once('error', reject);
    w.once('exit', (code) => code !== 0 && reject(new Error(`bench worker exited ${code}`)));
  });
}

/**
 * 200 clients in a worker thread, 50 calls each (restart / ensure / get mix). `pauseMs` between a client's
 * calls: 100 ms is 200 clients at 10 calls/s each (~2,000 calls/s offered); 0 is closed loop (saturation).
 */
async function ackLatency(pauseMs: number): Promise<object> {
  const r = await rig();
  const { lat, wallMs } = await inWorker<{ lat: number[]; wallMs: number }>({ mode: 'ack', url: r.url, token: 't', clients: 200, calls: 50, pauseMs });
  await r.close();
  return {
    bench: `ack latency, 200 clients × 50 calls, ${pauseMs > 0 ? `${pauseMs} ms between calls` : 'closed loop'}`,
    calls: lat.length,
    perSec: Math.round(lat.length / (wallMs / 1000)),
    p50ms: ms(pct(lat, 50)),
    p99ms: ms(pct(lat, 99)),
    target: 'p99 ≤ 5 ms',
  };
}

/** `subs` subscribers (in a worker), each watching `idsPerSub` of `workspaces` ids (null: all); events at `rate`/s for `seconds`. */
async function fanOut(subs: number, idsPerSub: number | null, workspaces: number, rate: number, seconds: number): Promise<object> {
  const r = await rig();
  const total = rate * seconds;
  const expected = idsPerSub === null ? total * subs : total * ((subs * idsPerSub) / workspaces);
  let ready!: () => void;
  const subscribed = new Promise<void>((res) => (ready = res));
  const done = inWorker<{ lat: number[] }>({ mode: 'fanout', url: r.url, token: 't', subs, idsPerSub, workspaces, expected: Math.round(expected) }, () => ready());
  await subscribed;
  let sent = 0;
  const t0 = performance.now();
  while (sent < total) {
    const due = Math.min(total, Math.floor(((performance.now() - t0) / 1000) * rate));
    for (; sent < due; sent++) {
      const t = performance.timeOrigin + performance.now();
      r.server.hub.publish({ type: 'cycle.provisioning', id: `f-${sent % workspaces}`, cycle: sent, at: Date.now(), t } as unknown as WorkspaceEvent);
    }
    await sleep(1); // a batch every ms
  }
  const achieved = total / ((performance.now() - t0) / 1000);
  const { lat } = await done;
  await r.close();
  return {
    bench: `fan-out ${subs} subscribers × ${idsPerSub === null ? 'all' : `${idsPerSub} ids`}`,
    eventsPerSec: rate,
    achievedPerSec: Math.round(achieved),
    deliveries: lat.length,
    expected: Math.round(expected),
    p50ms: ms(pct(lat, 50)),
    p99ms: ms(pct(lat, 99)),
    target: 'p99 ≤ 50 ms',
  };
}

/** Time from spawning `tsx src/cli/main.ts serve` to its "wsup ready" line. */
function startToReady(dataDir: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn('npx', ['tsx', 'src/cli/main.ts', 'serve', '--data-dir', dataDir, '--port', '0'], {
      cwd: new URL('../..', import.meta.url).pathname,
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    let out = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('wsup ready')) {
        const took = performance.now() - t0;
        child.kill('SIGINT');
        child.once('exit', () => {
          clearTimeout(timer);
          resolve(took);
        });
      }
    });
    child.once('error', reject);
  });
}

export async function benchServer(): Promise<object[]> {
  const rows: object[] = [];
  const note = (m: string) => process.stderr.write(`server bench: ${m}\n`);
  note('ack latency');
  rows.push(await ackLatency(100));
  rows.push(await ackLatency(0));
  note('fan-out by ids');
  rows.push(await fanOut(1000, 10, 1000, 10_000, 3));
  note('fan-out to all');
  rows.push(await fanOut(1000, null, 1000, 100, 3));
  const dir = mkdtempSync(join(tmpdir(), 'wsup-bench-'));
  if (process.env.WSUP_BENCH_START === '0') return rows;
  note('start to ready');
  const cold = await startToReady(dir);
  const warm = await startToReady(dir);
  rows.push({ bench: 'npm start → ready (process provider, PGlite)', coldMs: Math.round(cold), warmMs: Math.round(warm), target: 'warm ≤ 2000 ms' });
  return rows;
}
