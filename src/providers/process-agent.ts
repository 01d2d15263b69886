/**
 * The built-in workspace agent of the local-process provider: a tiny HTTP server on a loopback port.
 *
 * It is plain JavaScript run with `node -e`, so a workspace needs neither tsx nor a file on disk, and
 * it outlives the supervisor that spawned it (the point of adoption: a restarted supervisor takes over the running workspace instead of starting a second one).
 *
 * Contract, shared with custom commands: the child gets `WSUP_WORKSPACE_ID`, `WSUP_PORT`, `WSUP_HOST`,
 * `WSUP_AGENT_NONCE` and `WSUP_AGENT_TOKEN` in its environment and must answer `GET /healthz` on
 * `http://$WSUP_HOST:$WSUP_PORT` with 200. When the body is JSON with a `nonce`, the provider checks it
 * against its record, which tells a reused pid or port apart from the process it started.
 */

/** The agent's source; `[process.execPath, '-e', AGENT_SOURCE]` runs it. */
export const AGENT_SOURCE = String.raw`
'use strict';
const http = require('node:http');
const id = process.env.WSUP_WORKSPACE_ID;
const nonce = process.env.WSUP_AGENT_NONCE;
const startedAt = new Date().toISOString();
const server = http.createServer((req, res) => {
  if (req.method === 'GET' && req.url === '/healthz') {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ id, nonce, pid: process.pid, startedAt }));
    return;
  }
  res.writeHead(404, { 'content-type': 'text/plain' });
  res.end('not found\n');
});
server.on('error', (err) => {
  console.error('wsup agent ' + id + ': ' + err.message);
  process.exit(1);
});
server.listen(Number(process.env.WSUP_PORT), process.env.WSUP_HOST || '127.0.0.1', () => {
  console.log('wsup agent ' + id + ' listening on ' + JSON.stringify(server.address()));
});
const shutdown = () => server.close(() => process.exit(0));
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
`;

/** The default command: the built-in agent under the current Node binary. */
export function defaultAgentCommand(): string[] {
  return [process.execPath, '-e', AGENT_SOURCE];
}
