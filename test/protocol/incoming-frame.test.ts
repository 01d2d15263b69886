/**
 * `readIncomingFrame`: the client's check of every server frame. Valid frames classify; anything that is not
 * a JSON-RPC 2.0 response or notification is null (the client drops it rather than misrouting it).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { readIncomingFrame } from '../../src/protocol/index.ts';

describe('readIncomingFrame', () => {
  it('classifies results, errors and notifications', () => {
    expect(readIncomingFrame({ jsonrpc: '2.0', id: 7, result: { ok: 1 } })).toEqual({ kind: 'result', id: 7, result: { ok: 1 } });
    expect(readIncomingFrame({ jsonrpc: '2.0', id: 'a', result: null })).toEqual({ kind: 'result', id: 'a', result: null });
    expect(readIncomingFrame({ jsonrpc: '2.0', id: null, error: { code: -32700, message: 'parse error' } })).toEqual({
      kind: 'error',
      id: null,
      error: { code: -32700, message: 'parse error' },
    });
    expect(readIncomingFrame({ jsonrpc: '2.0', id: 1, error: { code: -32602, message: 'm', data: { path: ['id'] } } })?.kind).toBe('error');
    expect(readIncomingFrame({ jsonrpc: '2.0', method: 'event', params: { subscription: 's1' } })).toEqual({
      kind: 'notification',
      method: 'event',
      params: { subscription: 's1' },
    });
  });

  it('refuses what is not a frame', () => {
    const bad: unknown[] = [
      null,
      42,
      'x',
      [],
      { id: 1, result: 1 }, // no jsonrpc
      { jsonrpc: '1.0', id: 1, result: 1 },
      { jsonrpc: '2.0', id: 1 }, // neither result nor error
      { jsonrpc: '2.0', id: 1, result: 1, error: { code: 1, message: 'm' } },
      { jsonrpc: '2.0', id: 1.5, result: 1 },
      { jsonrpc: '2.0', id: 'x'.repeat(129), result: 1 },
      { jsonrpc: '2.0', id: {}, result: 1 },
      { jsonrpc: '2.0', id: 1, error: { code: '1', message: 'm' } },
      { jsonrpc: '2.0', id: 1, error: { code: 1 } },
      { jsonrpc: '2.0', id: 1, error: { code: 1, message: 'm', data: 'd' } },
      { jsonrpc: '2.0', id: 1, error: [] },
      { jsonrpc: '2.0', method: 'event', id: 3 }, // a request, not something a server sends
      { jsonrpc: '2.0', method: 5 },
    ];
    for (const b of bad) expect(readIncomingFrame(b), JSON.stringify(b)).toBeNull();
  });

  it('never throws on arbitrary JSON', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (v) => {
        const f = readIncomingFrame(v);
        expect(f === null || ['result', 'error', 'notification'].includes(f.kind)).toBe(true);
      }),
      { numRuns: 2000 },
    );
  });
});
