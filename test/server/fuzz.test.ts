/**
 * Protocol fuzzing: ≥ 10,000 malformed and hostile frames. Every frame is answered per JSON-RPC (or, when
 * too big, the socket is closed with 1009), the server never crashes, and a well-behaved client is served
 * throughout.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { METHOD_NAMES } from '../../src/protocol/index.ts';
import { startRig, type RawSocket, type ServerRig } from './rig.ts';

let rig: ServerRig;
beforeAll(async () => {
  rig = await startRig({ server: { limits: { ratePerSec: 1e9, burst: 1e9, maxPayload: 256 * 1024 } } });
});
afterAll(() => rig.close());

const KNOWN = new Set([-32700, -32600, -32601, -32602, -32603, -32003, -32004, -32010, -32011, -32012, -32013, -32015, -32016, -32017, -32029]);

const anyId = fc.oneof(
  fc.integer(),
  fc.string({ maxLength: 20 }),
  fc.string({ minLength: 129, maxLength: 2000 }),
  fc.double(),
  fc.constant(Number.MAX_VALUE),
  fc.constant(null),
  fc.jsonValue(),
);
const method = fc.oneof(fc.constantFrom(...METHOD_NAMES), fc.string({ maxLength: 80 }), fc.constant('__proto__'), fc.constant('constructor'));
const wsId = fc.oneof(fc.constantFrom('fz-1', 'fz-2', 'fz-3'), fc.string({ maxLength: 70 }));
const params = fc.oneof(
  fc.record({ id: wsId }, { requiredKeys: [] }),
  fc.record({ id: wsId, source: fc.string(), reason: fc.string(), wait: fc.anything() }, { requiredKeys: [] }),
  fc.record({ id: wsId, paths: fc.array(fc.string(), { maxLength: 5 }) }, { requiredKeys: [] }),
  fc.record({ ids: fc.anything(), limit: fc.anything(), state: fc.anything() }, { requiredKeys: [] }),
  fc.jsonValue(),
);
const requestLike = fc.record(
  { jsonrpc: fc.oneof(fc.constant('2.0'), fc.constant('1.0'), fc.jsonValue()), id: anyId, method, params, extra: fc.jsonValue() },
  { requiredKeys: [] },
);
const deep = fc.integer({ min: 10, max: 20_000 }).map((n) => `${'['.repeat(n)}${']'.repeat(n)}`);
const deepObj = fc.integer({ min: 20, max: 5_000 }).map((n) => `{"jsonrpc":"2.0","id":1,"method":"workspace.create","params":{"id":"fz-1","spec":${'{"a":'.repeat(n)}1${'}'.repeat(n)}}}`);

const frame: fc.Arbitrary<string> = fc.oneof(
  { weight: 3, arbitrary: fc.string({ maxLength: 200 }) },
  { weight: 2, arbitrary: fc.jsonValue().map((v) => JSON.stringify(v)) },
  { weight: 6, arbitrary: requestLike.map((r) => JSON.stringify(r)) },
  { weight: 2, arbitrary: fc.array(fc.oneof(requestLike, fc.jsonValue()), { maxLength: 80 }).map((b) => JSON.stringify(b)) },
  { weight: 1, arbitrary: deep },
  { weight: 1, arbitrary: deepObj },
  { weight: 1, arbitrary: fc.constantFrom('', '[]', '[[]]', 'null', '0', '"x"', '{}', '{"jsonrpc":"2.0"}', '\u0000', '{"jsonrpc":"2.0","id":1,"method":"workspace.list","params":[1,2]}') },
);

/** Every frame back must be a JSON-RPC response (or batch of them) or one of our notifications. */
function checkFrame(f: unknown): void {
  const items = Array.isArray(f) ? f : [f];
  expect(items.length).toBeGreaterThan(0);
  for (const item of items as Array<Record<string, unknown>>) {
    expect(item.jsonrpc).toBe('2.0');
    if ('method' in item) {
      expect(['event', 'lagged']).toContain(item.method);
      continue;
    }
    expect('id' in item).toBe(true);
    if ('error' in item) expect(KNOWN).toContain((item.error as { code: number }).code);
    else expect('result' in item).toBe(true);
  }
}

let sentinel = 0;
/** Send frames, each followed by a sentinel request; wait for the last sentinel; validate everything. */
async function barrage(s: RawSocket, frames: string[]): Promise<void> {
  const start = s.frames.length;
  const ids: string[] = [];
  for (const f of frames) {
    s.send(f);
    const id = `sentinel-${++sentinel}`;
    ids.push(id);
    s.send(JSON.stringify({ jsonrpc: '2.0', id, method: 'workspace.list', params: { limit: 1 } }));
  }
  const last = ids.at(-1)!;
  await s.until(() => s.frames.slice(start).some((f) => (f as { id?: string }).id === last), 30_000);
  expect(s.closed).toBeNull();
  const got = s.frames.slice(start);
  for (const f of got) checkFrame(f);
  const answered = new Set(got.map((f) => (f as { id?: unknown }).id));
  for (const id of ids) expect(answered).toContain(id);
}

describe('protocol fuzzing', () => {
  it('answers 10,000 hostile frames per JSON-RPC and keeps serving a well-behaved client', async () => {
    const s = await rig.raw('admin');
    const good = rig.client('operator');
    let goodCalls = 0;
    let stop = false;
    const wellBehaved = (async () => {
      while (!stop) {
        await good.call('workspace.ensure', { id: 'fz-good' });
        expect((await good.call('workspace.get', { id: 'fz-good' })).state).toBe('running');
        goodCalls++;
      }
    })();
    let sent = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(frame, { minLength: 100, maxLength: 100 }), async (frames) => {
        await barrage(s, frames);
        sent += frames.length;
      }),
      { numRuns: 101, endOnFailure: true },
    );
    stop = true;
    await wellBehaved;
    expect(sent).toBeGreaterThanOrEqual(10_000);
    expect(goodCalls).toBeGreaterThan(0);
    console.log(`fuzz: ${sent} hostile frames answered; well-behaved client completed ${goodCalls} ensure+get pairs meanwhile`);
  }, 180_000);

  it('closes with 1009 past the frame limit, and other connections are unaffected', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 256 * 1024 + 1, max: 1024 * 1024 }), async (size) => {
        const s = await rig.raw('admin');
        s.send(`{"jsonrpc":"2.0","id":1,"method":"workspace.list","params":{"x":"${'a'.repeat(size)}"}}`);
        await s.until(() => s.closed !== null, 10_000);
        expect(s.closed?.code).toBe(1009);
      }),
      { numRuns: 20 },
    );
    expect(await rig.client('viewer').call('workspace.list', { limit: 1 })).toHaveProperty('items');
  }, 60_000);
});
