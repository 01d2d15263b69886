/**
 * A shard's load on PostgreSQL with 100,000 workspaces in the store: what a replica reads when it gains a
 * shard. Baseline: the way it loaded before the shard hash was stored (list every workspace id, keep the
 * shard's, load those by id). Now: `loadWorkspaces({ shards })`, an index range scan of that shard.
 *
 * @example
 * npm run bench -- shards
 */
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { shardOf } from '../../src/protocol/shards.ts';
import { isPostgresUrl } from '../../src/store/engine.ts';
import { openPostgres } from '../../src/store/pg-engine.ts';
import { WorkspaceStore } from '../../src/store/store.ts';

const WORKSPACES = 100_000;
const SHARDS = 64;
const ROUNDS = 5;

export interface ShardLoadRow {
  name: string;
  workspaces: number;
  rowsLoaded: number;
  p50Ms: number;
  maxMs: number;
  ratio: string;
}

/** Rows read whole: readable ones (a corrupt one would be a bug of this bench's fixture, so it fails it). */
const count = (r: { workspaces: unknown[]; corrupt: unknown[] }) => {
  if (r.corrupt.length > 0) throw new Error(`${r.corrupt.length} rows of the fixture are unreadable`);
  return r.workspaces.length;
};
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

export async function benchShardLoad(): Promise<ShardLoadRow[]> {
  const url = process.env.DATABASE_URL;
  if (!isPostgresUrl(url)) {
    console.warn('[bench] shard load skipped: DATABASE_URL is not set (source .ci/components/20-postgres.sh)');
    return [];
  }
  const schema = `wsup_bench_shards_${process.pid}`;
  const store = await WorkspaceStore.open({ url, schema });
  try {
    // ~600 B snapshots, as an idle workspace's; inserted in SQL so the trigger stamps each hash as a commit's would.
    const [head, tail] = JSON.stringify({ status: 'active', value: { lifecycle: 'idle' }, context: { id: '@', now: 0, pad: 'x'.repeat(560) }, children: {} }).split('@');
    await store.engine.query(
      `INSERT INTO workspaces (id, spec, desired, state, owner, snapshot)
       SELECT w.id, '{}'::jsonb, 'stopped', 'idle', 'bench', $1 || w.id || $2 FROM (SELECT 'ws-' || lpad(i::text, 6, '0') AS id FROM generate_series(1, $3) AS i) w`,
      [head, tail, WORKSPACES],
    );
    await store.engine.query('ANALYZE workspaces');
    const before: number[] = [];
    const after: number[] = [];
    let rowsBefore = 0;
    let rowsAfter = 0;
    for (let r = 0; r < ROUNDS; r++) {
      const shard = (r * 13) % SHARDS;
      let t = performance.now();
      const ids = (await store.workspaceIds({ includeDestroyed: true })).filter((id) => shardOf(id, SHARDS) === shard);
      rowsBefore = count(await store.loadWorkspaces({ includeDestroyed: true, ids }));
      before.push(performance.now() - t);
      t = performance.now();
      rowsAfter = count(await store.loadWorkspaces({ includeDestroyed: true, shards: { count: SHARDS, of: [shard] } }));
      after.push(performance.now() - t);
      if (rowsAfter !== rowsBefore) throw new Error(`shard ${shard}: ${rowsAfter} rows by hash, ${rowsBefore} by id`);
    }
    const b = median(before);
    const a = median(after);
    return [
      { name: 'shard load, baseline: every id listed, then the shard by id', workspaces: WORKSPACES, rowsLoaded: rowsBefore, p50Ms: Math.round(b * 10) / 10, maxMs: Math.round(Math.max(...before) * 10) / 10, ratio: '1.00×' },
      { name: 'shard load by the stored hash (index)', workspaces: WORKSPACES, rowsLoaded: rowsAfter, p50Ms: Math.round(a * 10) / 10, maxMs: Math.round(Math.max(...after) * 10) / 10, ratio: `${(a / b).toFixed(2)}×` },
    ];
  } finally {
    await store.close();
    const admin = await openPostgres({ url, max: 1 });
    await admin.exec(`DROP SCHEMA IF EXISTS ${schema} CASCADE`).finally(() => admin.close());
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  benchShardLoad().then(console.table, (err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  });
}
