/** Scale-out on PostgreSQL: shard leases with fencing epochs, durable forwarding, event fan-out. */
export { clusterBackend } from './backend.ts';
export { Replica, type ClusterMethod, type ClusterParams, type ReplicaOptions } from './replica.ts';
export { ShardHost, fencedProvider, type ShardContext, type ShardRuntime, type ShardServices } from './shard-host.ts';
export { Inbox } from './inbox.ts';
export { Fanout } from './fanout.ts';
export { LeaseKeeper, FencedError, fenceCheck, type Lease, type LeaseKeeperOptions } from './leases.ts';
export { Listener, type ListenerOptions } from './notify.ts';
export { shardOf, DEFAULT_SHARDS } from './shards.ts';
export { ShardServiceSet, poolKey, type ShardMethod, type ShardMethodParams, type ShardServiceSetOptions } from './services.ts';
export { ClusterClaims, type ClusterClaimsOptions, type RouteCall } from './claims.ts';
export { ClusterPools, ClusterViews } from './pools.ts';
export { QuotaFeed, type QuotaFeedOptions } from './quota-feed.ts';
