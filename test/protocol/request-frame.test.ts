/**
 * The server's hand-written request check must accept exactly what `requestFrameSchema` accepts (it may only
 * say "not sure" — null — for frames the schema then explains). Near-valid frames are generated on purpose:
 * arbitrary JSON alone would almost never be a request.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { readRequestFrame, requestFrameSchema } from '../../src/protocol/index.ts';

const nearValid = fc.record(
  {
    jsonrpc: fc.oneof(fc.constant('2.0'), fc.constant('1.0'), fc.constant(2), fc.constant(null)),
    method: fc.oneof(fc.string({ minLength: 0, maxLength: 70 }), fc.integer(), fc.constant(null)),
    params: fc.oneof(fc.dictionary(fc.string(), fc.jsonValue()), fc.array(fc.jsonValue()), fc.jsonValue()),
    id: fc.oneof(
      fc.string({ maxLength: 140 }),
      fc.integer(),
      fc.double(),
      fc.constant(null),
      fc.constant(Number.MAX_SAFE_INTEGER + 2),
      fc.dictionary(fc.string(), fc.jsonValue()),
    ),
    extra: fc.jsonValue(),
  },
  { requiredKeys: [] },
);

const valid = fc.record(
  {
    jsonrpc: fc.constant('2.0'),
    method: fc.string({ minLength: 1, maxLength: 64 }),
    params: fc.oneof(fc.dictionary(fc.string(), fc.jsonValue()), fc.array(fc.jsonValue())),
    id: fc.oneof(fc.string({ maxLength: 128 }), fc.integer(), fc.constant(null)),
  },
  { requiredKeys: ['jsonrpc', 'method'] },
);

describe('readRequestFrame', () => {
  it('agrees with requestFrameSchema on every frame it accepts, and accepts every frame the schema accepts', () => {
    let accepted = 0;
    fc.assert(
      fc.property(fc.oneof(valid, nearValid, fc.jsonValue()), (raw) => {
        const v = JSON.parse(JSON.stringify(raw)) as unknown; // exactly what arrives on the wire
        const fast = readRequestFrame(v);
        const schema = requestFrameSchema.safeParse(v);
        if (fast !== null) {
          accepted++;
          expect(schema.success).toBe(true);
          expect(fast).toEqual(schema.data);
        } else if (schema.success) {
          // The one frame left to the schema although valid: params with an own "__proto__" key.
          expect(Object.hasOwn(schema.data.params ?? {}, '__proto__') || Object.hasOwn((v as { params?: object }).params ?? {}, '__proto__')).toBe(true);
        }
      }),
      { numRuns: 20_000 },
    );
    expect(accepted).toBeGreaterThan(1_000); // the generator does reach valid frames
  });
});
