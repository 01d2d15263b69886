/**
 * Fencing on the resource itself. In a cluster every provider call carries the epoch of the shard lease it
 * is made under (`ProviderFence`); a provider that can label what it creates records that shard and epoch
 * on it (its mark), and refuses a call whose epoch is older than the mark's: the call comes from a replica
 * that lost the shard, and the resource now belongs to the replica that took it over.
 *
 * Marks of another shard are not comparable (epochs count per shard) and never refuse anything; a call
 * without a fence (one node) is never refused.
 *
 * @example
 * const labels = fenceLabels(fence, { shard: 'wsup.shard', epoch: 'wsup.epoch' }); // {} without a fence
 * refuseStale(fence, readMark(found.Labels['wsup.shard'], found.Labels['wsup.epoch']), 'container wsup-ws1');
 */
import { FencedError, WsupError } from '../errors.ts';
import type { ProviderFence } from './types.ts';

/** The shard and epoch recorded on a resource by the call that created (or last adopted) it. */
export interface FenceMark {
  shard: number;
  epoch: number;
}

/** Fences come from the cluster, but a provider is a public API: a malformed one is refused, not trusted. */
export function assertFence(fence: ProviderFence | undefined): void {
  if (fence === undefined) return;
  const ok = (n: unknown) => typeof n === 'number' && Number.isSafeInteger(n) && n >= 0;
  if (!ok(fence.shard) || !ok(fence.epoch)) {
    throw new WsupError('WSUP_INVALID_ARGUMENT', `invalid provider fence ${JSON.stringify(fence)}: shard and epoch must be non-negative integers`);
  }
}

/** A resource's mark from its two recorded strings, or `null` when it has none (made without a fence). */
export function readMark(shard: string | undefined, epoch: string | undefined): FenceMark | null {
  if (shard === undefined || epoch === undefined || !/^\d+$/.test(shard) || !/^\d+$/.test(epoch)) return null;
  return { shard: Number(shard), epoch: Number(epoch) };
}

/** The labels (or tags) to record on what a fenced call creates; none without a fence. */
export function fenceLabels(fence: ProviderFence | undefined, keys: { shard: string; epoch: string }): Record<string, string> {
  return fence === undefined ? {} : { [keys.shard]: String(fence.shard), [keys.epoch]: String(fence.epoch) };
}

/** Throw `FencedError` when `mark` is newer than the call's fence on the same shard. */
export function refuseStale(fence: ProviderFence | undefined, mark: FenceMark | null, what: string): void {
  if (fence === undefined || mark === null || mark.shard !== fence.shard || mark.epoch <= fence.epoch) return;
  throw new FencedError(fence.shard, `${what} carries epoch ${mark.epoch}, newer than this call's epoch ${fence.epoch}`);
}

/** True when the resource was made under exactly this call's lease. */
export const sameMark = (fence: ProviderFence, mark: FenceMark | null): boolean => mark !== null && mark.shard === fence.shard && mark.epoch === fence.epoch;
