/**
 * Workspaces hash into a fixed number of shards; a shard is the unit of ownership in a cluster. Here in the
 * protocol because a routing client computes it too, to send each command to its shard's owner.
 *
 * @example
 * shardOf('ws-1', 64); // 0..63, the same in every replica, client and version
 */

/** Default shard count: enough to spread over a handful of replicas evenly, few enough to lease cheaply. */
export const DEFAULT_SHARDS = 64;

/** FNV-1a (32 bit) of the id's UTF-16 code units, modulo `shards`. Stable: changing it moves every workspace. */
export function shardOf(id: string, shards: number): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < id.length; i++) {
    h ^= id.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h % shards;
}
