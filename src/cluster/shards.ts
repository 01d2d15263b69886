/**
 * Workspaces hash into a fixed number of shards; a shard is the unit of ownership in a cluster. The hash
 * lives in the protocol (src/protocol/shards.ts), so routing clients compute the same shard.
 *
 * @example
 * shardOf('ws-1', 64); // 0..63, the same in every replica and every version
 */
export { DEFAULT_SHARDS, shardOf } from '../protocol/shards.ts';
