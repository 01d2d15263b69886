/**
 * Bench clients in their own thread, so their JSON work does not share the server's event loop (what a
 * remote client would see). Modes: `ack` (200 clients issuing calls, latency per call) and `fanout`
 * (subscribers measuring publish → delivery with a cross-thread clock: timeOrigin + now()).
 */
import { parentPort, workerData } from 'node:worker_threads';
import WebSocket from 'ws';
import { WsupClient } from '../../src/client/index.ts';

export type WorkerJob =
  | { mode: 'ack'; url: string; token: string; first: number; clients: number; warmup: number; calls: number; periodMs: number }
  | { mode: 'fanout'; url: string; token: string; first: number; subs: number; idsPerSub: number | null; workspaces: number; batch: boolean; expected: number };

const now = () => performance.timeOrigin + performance.now();
const sleep = (t: number) => new Promise((r) => setTimeout(r, t));
const job = workerData as WorkerJob;
const connect = () => new WsupClient({ url: job.url, token: job.token, WebSocket, reconnect: false, batch: job.mode === 'fanout' && job.batch });

if (job.mode === 'ack') {
  const clients = Array.from({ length: job.clients }, connect);
  const id = (i: number) => `b-${job.first + i}`;
  await Promise.all(clients.map((c, i) => c.call('workspace.ensure', { id: id(i) })));
  const lat: number[] = [];
  let t0 = 0;
  await Promise.all(
    clients.map(async (c, i) => {
      // Call k is due at start + k × periodMs (a fixed schedule, random phase), not periodMs after the last
      // ack: sleeping after each ack lets clients fall into step (the calls one stall delayed stay in a
      // burst from then on, and each later stall adds to the bursts), which measures the bench, not the server.
      const start = now() + Math.random() * job.periodMs;
      // The first `warmup` calls of each client are not measured: steady state, not the JIT's first pass.
      for (let k = 0; k < job.warmup + job.calls; k++) {
        const wait = start + k * job.periodMs - now();
        if (wait > 0) await sleep(wait);
        if (k === job.warmup) t0 ||= now();
        const t = now();
        if (k % 5 === 0) await c.call('workspace.restart', { id: id(i), source: 'programmatic' });
        else if (k % 5 === 1) await c.call('workspace.ensure', { id: id(i) });
        else await c.call('workspace.get', { id: id(i) });
        if (k >= job.warmup) lat.push(now() - t);
      }
    }),
  );
  const wallMs = now() - t0;
  for (const c of clients) c.close();
  parentPort?.postMessage({ lat, wallMs });
} else {
  const lat: number[] = [];
  const clients = Array.from({ length: job.subs }, connect);
  const { idsPerSub } = job;
  await Promise.all(
    clients.map((c, j) => {
      const i = job.first + j;
      const ids = idsPerSub === null ? undefined : Array.from({ length: idsPerSub }, (_, k) => `f-${(i * idsPerSub + k) % job.workspaces}`);
      // Warm-up events (published first, marked) are received but not measured.
      return c.subscribe(ids ? { ids } : {}, (ev) => {
        const e = ev as unknown as { t: number; warmup?: boolean };
        if (!e.warmup) lat.push(now() - e.t);
      });
    }),
  );
  parentPort?.postMessage({ ready: true });
  const deadline = Date.now() + 60_000;
  while (lat.length < job.expected && Date.now() < deadline) await sleep(20);
  for (const c of clients) c.close();
  parentPort?.postMessage({ lat });
}
