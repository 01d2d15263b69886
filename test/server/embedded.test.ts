/** The README's embedding example, run as written: wsup inside a plain http server with its own routes. */
import { mkdtempSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { embed } from '../../examples/embedded.ts';
import { WsupClient } from '../../src/client/index.ts';

describe('examples/embedded.ts', () => {
  const dir = mkdtempSync(join(tmpdir(), 'wsup-embed-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('serves the app on its routes and wsup on /control and /healthz, then shuts down cleanly', async () => {
    const { app, token, close } = await embed(dir);
    const base = `http://127.0.0.1:${(app.address() as AddressInfo).port}`;
    try {
      expect(await (await fetch(`${base}/anything`)).text()).toBe('my app\n');
      expect((await fetch(`${base}/healthz`)).status).toBe(200);
      const client = new WsupClient({ url: `${base.replace('http', 'ws')}/control`, token, WebSocket, reconnect: false });
      try {
        const first = await client.call('workspace.ensure', { id: 'embed-1' });
        expect(first).toMatchObject({ id: 'embed-1', started: true, state: 'running' });
        expect((await fetch(`${first.endpoint}/healthz`)).status).toBe(200); // the local-process agent answers
        expect(await client.call('workspace.ensure', { id: 'embed-1' })).toMatchObject({ started: false, endpoint: first.endpoint });
        await client.call('workspace.destroy', { id: 'embed-1' });
      } finally {
        client.close();
      }
    } finally {
      await close();
    }
    expect(app.listening).toBe(false);
  }, 90_000);
});
