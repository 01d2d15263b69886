/**
 * wsup embedded in a plain Node http server: your routes stay yours, wsup answers `/control` (WebSocket),
 * `/healthz`, `/readyz`, `/metrics` and `/`. Run: `npx tsx examples/embedded.ts` (PGlite in .wsup-example/).
 */
import http from 'node:http';
import { createProcessProvider, createServer, openDurableSupervisor, TokenFile, WorkspaceStore } from '../src/index.ts';

export async function embed(dataDir: string, port = 0) {
  const store = await WorkspaceStore.open({ dataDir: `${dataDir}/pglite` }); // or { url: process.env.DATABASE_URL }
  const { supervisor } = await openDurableSupervisor({ store, provider: createProcessProvider({ dataDir }) });
  const tokens = TokenFile.in(dataDir);
  const wsup = createServer({ supervisor, tokens });
  const app = http.createServer((req, res) => wsup.handleRequest(req, res) || res.end('my app\n'));
  wsup.attach(app);
  await new Promise<void>((r) => app.listen(port, '127.0.0.1', r));
  async function close() {
    await wsup.close(); // drain /control first (sockets close with 1001), then the rest
    await new Promise((r) => app.close(r));
    await supervisor.shutdown({ deadlineMs: 10_000 });
    await store.close();
  }
  return { app, token: tokens.ensureAdmin().token, close };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { app, token } = await embed('.wsup-example', 7071);
  console.log(`my app + wsup on http://127.0.0.1:7071  (control token ${token})`);
  process.once('SIGINT', () => app.close());
}
