/**
 * The cluster's routing table from its lease and member rows: which replica owns each shard and the URL
 * each replica serves clients on, so a client can send each command straight to its owner. A replica
 * advertises its URL once its server listens.
 *
 * @example
 * await advertise(engine, 'r1', 'http://10.0.0.5:7070');
 * const table = await readMembers(engine, { replica: 'r1', shards: 64, ttlMs: 2000 });
 * table.owners[shardOf('ws-1', table.shards)]; // 'r1'
 */
import type { ClusterMembers } from '../protocol/methods.ts';
import type { SqlEngine } from '../store/engine.ts';

/** Record where `replica` serves clients (its row may not exist yet: the first heartbeat may come later). */
export async function advertise(engine: SqlEngine, replica: string, url: string): Promise<void> {
  await engine.query(
    `INSERT INTO cluster_members (replica, heartbeat_at, url) VALUES ($1, now(), $2)
     ON CONFLICT (replica) DO UPDATE SET url = EXCLUDED.url`,
    [replica, url],
  );
}

/**
 * Every shard's current owner (null when its lease lapsed or was released) and the members that are alive
 * (heartbeat within one lease length) or own a shard. One statement: the owners and the version agree.
 */
export async function readMembers(engine: SqlEngine, o: { replica: string; shards: number; ttlMs: number }): Promise<ClusterMembers> {
  const { rows } = await engine.query<{ kind: 'lease' | 'member'; key: string; owner: string | null; epoch: string | null; url: string | null; leaving: boolean | null }>(
    `SELECT 'lease' AS kind, shard::text AS key, CASE WHEN expires_at > now() THEN owner END AS owner, epoch::text AS epoch, NULL AS url, NULL::boolean AS leaving
       FROM shard_leases WHERE shard < $1
     UNION ALL
     SELECT 'member', replica, NULL, NULL, url, leaving FROM cluster_members
       WHERE heartbeat_at > now() - make_interval(secs => $2::float8 / 1000)
          OR replica IN (SELECT owner FROM shard_leases WHERE expires_at > now())`,
    [o.shards, o.ttlMs],
  );
  const owners: Array<string | null> = Array.from({ length: o.shards }, () => null);
  const count = new Map<string, number>();
  let version = 0;
  for (const r of rows) {
    if (r.kind !== 'lease') continue;
    owners[Number(r.key)] = r.owner;
    version += Number(r.epoch ?? 0);
    if (r.owner !== null) count.set(r.owner, (count.get(r.owner) ?? 0) + 1);
  }
  const members = rows
    .filter((r) => r.kind === 'member')
    .map((r) => ({ replica: r.key, url: r.url, leaving: r.leaving === true, shards: count.get(r.key) ?? 0 }))
    .sort((a, b) => a.replica.localeCompare(b.replica));
  return { replica: o.replica, shards: o.shards, version, members, owners };
}
