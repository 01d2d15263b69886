/**
 * Server benchmarks (`benchServer`): command ack latency with 200 clients, event fan-out latency to 1,000
 * subscribers, and time from `wsup serve` to ready (cold = fresh data dir incl. PGlite initdb; warm = again).
 *
 * Clients and subscribers run in the bench process itself, so their JSON parsing shares the event loop
 * with the server: the latencies are an upper bound of what a remote client would see.
 * Fan-out feeds events straight into the server's hub (`server.hub.publish`), not through actor cycles,
 * so the rate is exact and the cost measured is the server's routing + serialization + sockets.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { WsupClient } from '../../src/client/index.ts';
import type { WorkspaceEvent } from '../../src/protocol/index.ts';
import { FakeProvider } from '../../src/providers/fake.ts';
import { createServer, staticTokens } from '../../src/server/index.ts';
import { Supervisor } from '../../src/supervisor/supervisor.ts';

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
  const client = () => new WsupClient({ url: `ws://127.0.0.1:${port}/control`, token: 't', WebSocket, reconnect: false });
  return { supervisor, server, client, async close() { await server.close(); await supervisor.shutdown(); } };
}

/** 200 clients, each 50 calls (get / restart / ensure mix) paced ~10 ms apart: ack = call → reply. */
async function ackLatency(): Promise<object> {
  const r = await rig();
  const clients = Array.from({ length: 200 }, r.client);
  await Promise.all(clients.map((c, i) => c.call('workspace.ensure', { id: `b-${i}` })));
  const lat: number[] = [];
  const t0 = performance.now();
  await Promise.all(clients.map(async (c, i) => {
    await sleep(Math.random() * 10);
    for (let k = 0; k < 50; k++) {
      const t = performance.now();
      if (k % 5 === 0) await c.call('workspace.restart', { id: `b-${i}`, source: 'programmatic' });
      else if (k % 5 === 1) await c.call('workspace.ensure', { id: `b-${i}` });
      else await c.call('workspace.get', { id: `b-${i}` });
      lat.push(performance.now() - t);
      await sleep(10);
    }
  }));
  const wall = performance.now() - t0;
  for (const c of clients) c.close();
  await r.close();
  return { bench: 'ack latency, 200 clients × 50 calls', calls: lat.length, perSec: Math.round(lat.length / (wall / 1000)), p50ms: ms(pct(lat, 50)), p99ms: ms(pct(lat, 99)), target: 'p99 ≤ 5 ms' };
}

/** `subs` subscribers, each watching `idsPerSub` of `workspaces` ids (null: all); events at `rate`/s for `seconds`. */
async function fanOut(subs: number, idsPerSub: number | null, workspaces: number, rate: number, seconds: number): Promise<object> {
  const r = await rig();
  const lat: number[] = [];
  const clients = Array.from({ length: subs }, r.client);
  await Promise.all(clients.map((c, i) => {
    const ids = idsPerSub === null ? undefined : Array.from({ length: idsPerSub }, (_, k) => `f-${(i * idsPerSub + k) % workspaces}`);
    return c.subscribe(ids ? { ids } : {}, (ev) => lat.push(performance.now() - (ev as unknown as { t: number }).t));
  }));
  const total = rate * seconds;
  const perTick = Math.max(1, Math.round(rate / 1000)); // a batch every ms
  let sent = 0;
  const t0 = performance.now();
  while (sent < total) {
    const due = Math.min(total, Math.floor(((performance.now() - t0) / 1000) * rate));
    for (; sent < due; sent++) {
      r.server.hub.publish({ type: 'cycle.provisioning', id: `f-${sent % workspaces}`, cycle: sent, at: Date.now(), t: performance.now() } as unknown as WorkspaceEvent);
    }
    await new Promise((res) => setImmediate(res));
    if (perTick > 0 && sent >= due) await sleep(1);
  }
  const expected = idsPerSub === null ? total * subs : total * ((subs * idsPerSub) / workspaces);
  const deadline = Date.now() + 30_000;
  while (lat.length < expected && Date.now() < deadline) await sleep(20);
  const achieved = total / ((performance.now() - t0) / 1000);
  for (const c of clients) c.close();
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
  rows.push(await ackLatency());
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
