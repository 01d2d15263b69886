/**
 * Bench clients in their own thread, so their JSON work does not share the server's event loop (what a
 * remote client would see). Modes: `ack` (200 clients issuing calls, latency per call) and `fanout`
 * (subscribers measuring publish → delivery with a cross-thread clock: timeOrigin + now()).
 */
import { parentPort, workerData } from 'node:worker_threads';
import WebSocket from 'ws';
import { WsupClient } from '../../src/client/index.ts';

export type WorkerJob =
  | { mode: 'ack'; url: string; token: string; clients: number; calls: number; pauseMs: number }
  | { mode: 'fanout'; url: string; token: string; subs: number; idsPerSub: number | null; workspaces: number; expected: number };

const now = () => performance.timeOrigin + performance.now();
const sleep = (t: number) => new Promise((r) => setTimeout(r, t));
const job = workerData as WorkerJob;
const connect = () => new WsupClient({ url: job.url, token: job.token, WebSocket, reconnect: false });

if (job.mode === 'ack') {
  const clients = Array.from({ length: job.clients }, connect);
  await Promise.all(clients.map((c, i) => c.call('workspace.ensure', { id: `b-${i}` })));
  const lat: number[] = [];
  const t0 = now();
  await Promise.all(
    clients.map(async (c, i) => {
      await sleep(Math.random() * job.pauseMs);
      for (let k = 0; k < job.calls; k++) {
        const t = now();
        if (k % 5 === 0) await c.call('workspace.restart', { id: `b-${i}`, source: 'programmatic' });
        else if (k % 5 === 1) await c.call('workspace.ensure', { id: `b-${i}` });
        else await c.call('workspace.get', { id: `b-${i}` });
        lat.push(now() - t);
        if (job.pauseMs > 0) await sleep(job.pauseMs);
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
    clients.map((c, i) => {
      const ids = idsPerSub === null ? undefined : Array.from({ length: idsPerSub }, (_, k) => `f-${(i * idsPerSub + k) % job.workspaces}`);
      return c.subscribe(ids ? { ids } : {}, (ev) => lat.push(now() - (ev as unknown as { t: number }).t));
    }),
  );
  parentPort?.postMessage({ ready: true });
  const deadline = Date.now() + 60_000;
  while (lat.length < job.expected && Date.now() < deadline) await sleep(20);
  for (const c of clients) c.close();
  parentPort?.postMessage({ lat });
}
