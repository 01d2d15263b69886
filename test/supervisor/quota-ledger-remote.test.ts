/** One ledger for a cluster replica: its own supervisors' holders and the other replicas', counted together. */
import { describe, expect, it } from 'vitest';
import { QuotaLedger } from '../../src/supervisor/quota.ts';

const alice = { owner: 'alice', template: 'py' };

describe('QuotaLedger across replicas', () => {
  it('counts remote holders with local ones, never the same workspace twice', () => {
    const ledger = new QuotaLedger(() => ({ perOwner: 2 }));
    ledger.track('a', { ...alice, holding: true });
    ledger.trackRemote('b', { ...alice, holding: true });
    expect(ledger.refusal('c', alice)?.message).toContain('owner alice already runs 2 of 2 allowed (a, b)');
    // b's shard moved here: tracked locally now, still one holder.
    ledger.track('b', { ...alice, holding: true });
    expect(ledger.usage().perOwner).toEqual([{ name: 'alice', running: 2, limit: 2 }]);
    ledger.trackRemote('a', { ...alice, holding: false }); // a moved away and stopped there
    expect(ledger.refusal('c', alice)).toBeNull();
  });

  it('keeps a handed-over shard\'s holders counted as remote until their new owner reports them', () => {
    const ledger = new QuotaLedger(() => ({ perOwner: 1 }));
    ledger.track('s1-a', { ...alice, holding: true });
    ledger.handOver((id) => id.startsWith('s1-'));
    expect(ledger.refusal('b', alice)?.code).toBe('WSUP_QUOTA');
    ledger.clearRemote();
    expect(ledger.refusal('b', alice)).toBeNull();
    expect(ledger.usage().perOwner).toEqual([]);
  });
});
