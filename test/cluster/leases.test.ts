/**
 * The lease keeper when the database refuses the early release of a shard (e.g. "too many clients"): the
 * replica says so and goes on; the lease simply ends at its expiry. A scripted SQL engine stands in for
 * PostgreSQL so the failure can be placed exactly.
 */
import { describe, expect, it, vi } from 'vitest';
import { LeaseKeeper } from '../../src/cluster/leases.ts';
import type { SqlEngine } from '../../src/store/engine.ts';

/** Answers the keeper's statements: one shard to acquire, and a refusal for the release. */
function scriptedEngine(): SqlEngine {
  const query = vi.fn(async (sql: string) => {
    if (sql.includes('SET owner = NULL')) throw Object.assign(new Error('sorry, too many clients already'), { code: '53300' });
    if (sql.includes('epoch = l.epoch + 1')) return { rows: [{ shard: 0, epoch: 1 }] };
    if (sql.includes('FROM cluster_members')) return { rows: [{ replica: 'a' }] };
    return { rows: [] };
  });
  // The keeper's rounds never open a transaction; one that did would fail the test here.
  const transaction = () => Promise.reject(new Error('the lease keeper opened a transaction'));
  return { kind: 'postgres', description: 'scripted', query, transaction } as unknown as SqlEngine;
}

describe('lease keeper', () => {
  it('reports a release the database refused instead of failing the process', async () => {
    const errors: string[] = [];
    const unhandled: unknown[] = [];
    const onUnhandled = (err: unknown) => unhandled.push(err);
    process.on('unhandledRejection', onUnhandled);
    try {
      const keeper = new LeaseKeeper({
        engine: scriptedEngine(),
        replica: 'a',
        shards: 1,
        onGain: () => Promise.reject(new Error('loading the shard failed')), // so the keeper releases it
        onRelease: async () => undefined,
        onLose: () => undefined,
        onError: (_err, what) => errors.push(what),
      });
      await keeper.tick();
      await vi.waitFor(() => expect(errors).toContain('releasing shard 0 failed: it is free again at its lease\'s expiry'));
      expect(errors[0]).toBe('loading shard 0 failed: releasing it');
      expect(keeper.heldLease(0)).toBeNull();
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });
});
