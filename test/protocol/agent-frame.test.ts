/** The agent's ack frame is checked like every /control param: no string a store cannot keep gets through. */
import { describe, expect, it } from 'vitest';
import { agentClientFrameSchema } from '../../src/protocol/index.ts';

describe('agent ack frame', () => {
  it('accepts a plain claim build id', () => {
    expect(agentClientFrameSchema.safeParse({ type: 'ack', claimBuildId: 'cb-1' }).success).toBe(true);
  });

  it.each([
    ['a NUL', 'cb\u00001'],
    ['a lone high surrogate', 'cb\ud800'],
    ['a lone low surrogate', '\udc00cb'],
  ])('refuses a claim build id holding %s', (_what, claimBuildId) => {
    const r = agentClientFrameSchema.safeParse({ type: 'ack', claimBuildId });
    expect(r.success).toBe(false);
    expect(r.error?.issues[0]?.message).toContain('NUL or a lone surrogate');
  });
});
