/**
 * A socket the server is closing (its token was revoked, or the server drains) may still deliver frames
 * until the peer answers the close: none of them reaches a handler. A fake socket stands in for ws so the
 * CLOSING state can be held open.
 */
import { EventEmitter } from 'node:events';
import { describe, expect, it, vi } from 'vitest';
import type WebSocket from 'ws';
import { Connection, Outbound } from '../../src/server/connection.ts';
import type { Handlers } from '../../src/server/handlers.ts';
import { DEFAULT_LIMITS, systemServerClock } from '../../src/server/limits.ts';
import { silentLogger } from '../../src/server/logger.ts';

class FakeSocket extends EventEmitter {
  readonly OPEN = 1;
  readyState = 1;
  bufferedAmount = 0;
  isPaused = false;
  readonly sent: string[] = [];
  send(text: string): void {
    this.sent.push(text);
  }
  pause(): void {
    this.isPaused = true;
  }
  resume(): void {
    this.isPaused = false;
  }
}

function connection() {
  const ws = new FakeSocket();
  const call = vi.fn(async () => ({ id: 'ws-1', outcome: 'started', cycle: 1, state: 'starting' }));
  new Connection(ws as unknown as WebSocket, 'operator', 1, {
    handlers: { call } as unknown as Handlers,
    outbound: new Outbound(),
    limits: DEFAULT_LIMITS,
    clock: systemServerClock,
    logger: silentLogger,
    onError: () => undefined,
    accepting: () => true,
  });
  const restart = (id: number) => Buffer.from(JSON.stringify({ jsonrpc: '2.0', id, method: 'workspace.restart', params: { id: 'ws-1' } }));
  return { ws, call, restart };
}

describe('a socket being closed', () => {
  it('runs the calls it sends while open', async () => {
    const { ws, call, restart } = connection();
    ws.emit('message', restart(1), false);
    await vi.waitFor(() => expect(call).toHaveBeenCalledTimes(1));
  });

  it('runs nothing it sends once the server began closing it', async () => {
    const { ws, call, restart } = connection();
    ws.readyState = 2; // CLOSING: the server sent its close frame, the peer has not answered
    ws.emit('message', restart(1), false);
    ws.emit('message', restart(2), false);
    await new Promise((r) => setImmediate(r));
    expect(call).not.toHaveBeenCalled();
    expect(ws.sent).toEqual([]);
  });
});
