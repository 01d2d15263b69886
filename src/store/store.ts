/**
 * WorkspaceStore: the supervisor's durable memory. One schema, one set of queries, two engines.
 *
 * - `commit` is the only write path for workspaces and events, and it group-commits: concurrent calls are
 *   carried by one transaction and each resolves only after that transaction commits (ack ⇒ durable).
 * - `loadWorkspaces` never drops a row it cannot read: it returns it under `corrupt`, with a
 *   `WSUP_CORRUPT_STATE` error naming the workspace, next to every row it could read.
 *
 * @example
 * const store = await WorkspaceStore.open({ url: process.env.DATABASE_URL });   // or { dataDir: '.wsup/pglite' }
 * await store.commit({ workspaces: [{ id, state, desired, snapshot }], events: [{ workspaceId: id, at, kind: 'transition' }] });
 * const { workspaces, corrupt } = await store.loadWorkspaces();
 * await store.close();
 */
import { WsupError, errorMessage } from '../errors.ts';
import { BurstStore } from './bursts.ts';
import { ClaimStore } from './claims.ts';
import type { EngineOptions, SqlEngine, SqlQueryable } from './engine.ts';
import { openEngine } from './open.ts';
import { GroupCommitter, type BatchOutcome, type GroupCommitStats } from './group-commit.ts';
import { checkIntegrity } from './integrity.ts';
import { migrate, type MigrationResult } from './migrations.ts';
import { EVENT_COLUMNS, eventParams, merge, prepare, WORKSPACE_WRITE_COLUMNS, workspaceParams, type MergedBatch, type PreparedCommit, type PreparedWorkspace } from './prepare.ts';
import { PoolStore } from './pools.ts';
import { ProcessRecordStore, TokenStore } from './records.ts';
import {
  SYSTEM_OWNER,
  rowProblem,
  type CommitWrite,
  type CorruptWorkspace,
  type EventRecord,
  type PersistedSnapshot,
  type WorkspaceRecord,
} from './types.ts';
import type { Desired, LifecycleState } from '../../machines/workspace.types.ts';

export interface StoreOptions extends EngineOptions {
  /** Use this engine instead of opening one; the store then does not close it. */
  engine?: SqlEngine;
  /** Batch concurrent commits into one transaction. Default true; false only to measure the difference. */
  groupCommit?: boolean;
  /** Most writes per transaction. Default 1000. */
  maxBatch?: number;
  /**
   * Group-commit transactions in flight at once. Default 2 on PostgreSQL (the next batch is built and sent
   * while the previous one commits; writes of one workspace still commit in order), 1 on PGlite (one
   * session: transactions run one at a time anyway).
   */
  maxInFlight?: number;
  /**
   * Runs first in every commit transaction with the ids of the workspaces it writes, and answers the ids
   * it refuses (with why): writes touching them are left out of the transaction and rejected with that
   * error; the rest commit. The cluster's fencing check: a replica that lost a shard's lease cannot write
   * that shard's workspaces, and its other shards' writes are not held hostage by it.
   */
  fence?: (tx: SqlQueryable, workspaceIds: readonly string[]) => Promise<ReadonlyMap<string, Error> | null>;
}

/** A workspace's columns as `liveRows` reads them; `snapshot` is the stored JSON text. */
export interface LiveRow {
  id: string;
  spec: Record<string, unknown>;
  desired: Desired;
  state: LifecycleState;
  snapshot: string | null;
}

/** The shards `of` of `count` a replica owns: reads limited to them use the shard index. */
export interface ShardFilter {
  count: number;
  of: readonly number[];
}

export interface LoadFilter {
  includeDestroyed?: boolean;
  ids?: readonly string[];
  shards?: ShardFilter;
  /** Only workspaces with a provider call in flight (starting, stopping) or due by `dueBefore` (ms). */
  active?: { dueBefore: number };
}

export interface LoadResult {
  workspaces: WorkspaceRecord[];
  /** Rows that exist but cannot be restored: report each, never skip silently. */
  corrupt: CorruptWorkspace[];
}

interface WorkspaceRow {
  id: string;
  spec: Record<string, unknown>;
  desired: string;
  state: string;
  owner: string;
  prebuild: boolean;
  pool: string | null;
  snapshot: unknown;
  version: number;
  created_at: Date;
  updated_at: Date;
  destroyed_at: Date | null;
  next_due_at: string | number | null;
}

const WORKSPACE_COLUMNS = 'id, spec, desired, state, owner, prebuild, pool, snapshot, version, created_at, updated_at, destroyed_at, next_due_at';
const LOAD_PAGE = 2000;

export class WorkspaceStore {
  readonly claims: ClaimStore;
  readonly tokens: TokenStore;
  readonly processes: ProcessRecordStore;
  readonly pools: PoolStore;
  /** File-write bursts acknowledged and not yet restarted. */
  readonly bursts: BurstStore;
  private readonly committer: GroupCommitter<PreparedCommit>;
  private closing: Promise<void> | null = null;
  private readonly fence: StoreOptions['fence'];

  private constructor(
    readonly engine: SqlEngine,
    readonly migration: MigrationResult,
    private readonly ownsEngine: boolean,
    opts: StoreOptions,
  ) {
    this.committer = new GroupCommitter((batch) => this.writeBatch(batch), {
      enabled: opts.groupCommit ?? true,
      ...(opts.maxBatch !== undefined ? { maxBatch: opts.maxBatch } : {}),
      maxInFlight: opts.maxInFlight ?? (engine.kind === 'postgres' ? 2 : 1),
      keys: (c) => c.keys,
    });
    this.fence = opts.fence;
    this.claims = new ClaimStore(engine);
    this.tokens = new TokenStore(engine);
    this.processes = new ProcessRecordStore(engine);
    this.pools = new PoolStore(engine);
    this.bursts = new BurstStore(engine);
  }

  /** Open PostgreSQL for a `postgres://` url, PGlite otherwise, and migrate. */
  static async open(opts: StoreOptions = {}): Promise<WorkspaceStore> {
    let engine: SqlEngine;
    try {
      engine = opts.engine ?? (await openEngine(opts));
    } catch (err) {
      if (err instanceof WsupError) throw err;
      throw new WsupError('WSUP_STORE', `cannot open the store: ${errorMessage(err)}`, { cause: err });
    }
    try {
      const migration = await migrate(engine);
      await checkIntegrity(engine);
      return new WorkspaceStore(engine, migration, opts.engine === undefined, opts);
    } catch (err) {
      if (opts.engine === undefined) await engine.close().catch(() => undefined);
      if (err instanceof WsupError) throw err;
      throw new WsupError('WSUP_STORE', `cannot migrate ${engine.description}: ${errorMessage(err)}`, { cause: err });
    }
  }

  get kind(): SqlEngine['kind'] {
    return this.engine.kind;
  }

  /** Counters for tests and metrics: `transactions` vs `writes` shows how well commits batch. */
  get stats(): Readonly<GroupCommitStats> {
    return this.committer.stats;
  }

  /**
   * Upsert workspaces (each bumps `version`) and append events, durably. Resolves after COMMIT; rejects
   * with `WSUP_STORE` if the transaction carrying it failed (nothing of it was written), or with
   * `WSUP_INVALID_ARGUMENT` at once for a write that cannot be stored.
   */
  async commit(write: CommitWrite): Promise<void> {
    if (this.closing) throw new WsupError('WSUP_STORE', `store on ${this.engine.description} is closed: commit refused`);
    const prepared = prepare(write);
    if (prepared.workspaces.size === 0 && prepared.events.length === 0) return;
    return this.committer.submit(prepared);
  }

  private async writeBatch(writes: readonly PreparedCommit[]): Promise<BatchOutcome> {
    try {
      try {
        return await this.writeOnce(writes, true);
      } catch (err) {
        // Another writer inserted one of the new workspaces meanwhile: nothing was written; take the long way.
        if ((err as { code?: unknown }).code !== UPSERT_RACED) throw err;
        return await this.writeOnce(writes, false);
      }
    } catch (err) {
      const batch = merge(writes);
      const n = batch.workspaces.size + batch.events.length;
      throw new WsupError('WSUP_STORE', `commit of ${n} rows on ${this.engine.description} rolled back: ${errorMessage(err)}`, { cause: err });
    }
  }

  /**
   * One attempt at a batch. `oneStatement`: the whole batch as ONE statement (`commitStatement`) when it fits;
   * without a fence that needs no BEGIN/COMMIT either: one round trip, committed (implicitly, at its Sync)
   * before the driver resolves it, so ack ⇒ durable still holds.
   */
  private async writeOnce(writes: readonly PreparedCommit[], oneStatement: boolean): Promise<BatchOutcome> {
    const write = (tx: SqlQueryable, batch: MergedBatch, inOne: boolean) => (inOne ? commitInOneStatement(tx, batch) : writeInto(tx, batch));
    const fits = (batch: MergedBatch) => oneStatement && batch.workspaces.size <= WORKSPACES_PER_STATEMENT;
    const fence = this.fence;
    if (!fence) {
      const batch = merge(writes);
      const inOne = fits(batch);
      await this.engine.transaction((tx) => write(tx, batch, inOne), { singleStatement: inOne });
      return undefined;
    }
    let refused: Array<Error | undefined> | undefined;
    await this.engine.transaction(async (tx) => {
      let todo = writes;
      const fenced = await fence(tx, [...new Set(writes.flatMap((w) => w.keys))]);
      if (fenced && fenced.size > 0) {
        refused = writes.map((w) => w.keys.map((k) => fenced.get(k)).find((e) => e !== undefined));
        todo = writes.filter((_, i) => refused![i] === undefined);
      }
      if (todo.length === 0) return;
      const batch = merge(todo);
      await write(tx, batch, fits(batch));
    });
    return refused;
  }

  /** Every workspace id (live ones by default): cheap, no snapshots. */
  async workspaceIds(opts: { includeDestroyed?: boolean } = {}): Promise<string[]> {
    const live = opts.includeDestroyed ? '' : 'WHERE destroyed_at IS NULL';
    const { rows } = await this.engine.query<{ id: string }>(`SELECT id FROM workspaces ${live} ORDER BY id`);
    return rows.map((r) => r.id);
  }

  /**
   * Every workspace (live ones by default; only `ids`, or only those in `shards.of` of `shards.count`
   * shards, if given), split into readable rows and corrupt ones. By shard it reads only those shards'
   * rows (an index scan at the default 64 shards).
   */
  async loadWorkspaces(opts: LoadFilter = {}): Promise<LoadResult> {
    const result: LoadResult = { workspaces: [], corrupt: [] };
    const params: unknown[] = [''];
    let live = opts.includeDestroyed ? '' : 'AND destroyed_at IS NULL';
    if (opts.ids) live += ` AND id = ANY($${params.push(opts.ids)}::text[])`;
    live += shardClause('loadWorkspaces', opts.shards, params);
    if (opts.active) {
      // Work in flight (a provider call) or due by `dueBefore`: each found by its own index, then read by id.
      const found: unknown[] = [opts.active.dueBefore];
      const where = `${opts.includeDestroyed ? '' : 'AND destroyed_at IS NULL'}${opts.ids ? ` AND id = ANY($${found.push(opts.ids)}::text[])` : ''}${shardClause('loadWorkspaces', opts.shards, found)}`;
      const { rows } = await this.engine.query<{ id: string }>(
        `SELECT id FROM workspaces WHERE state IN ('starting', 'stopping') ${where} UNION SELECT id FROM workspaces WHERE next_due_at <= $1 ${where}`,
        found,
      );
      const ids = rows.map((r) => r.id).sort();
      for (let i = 0; i < ids.length; i += LOAD_PAGE) {
        const page = await this.loadWorkspaces({ ids: ids.slice(i, i + LOAD_PAGE), ...(opts.includeDestroyed ? { includeDestroyed: true } : {}) });
        result.workspaces.push(...page.workspaces);
        result.corrupt.push(...page.corrupt);
      }
      return result;
    }
    // Keyset pages keep 100,000 snapshots from arriving as one result set.
    for (let after = ''; ; ) {
      params[0] = after;
      const { rows } = await this.engine.query<WorkspaceRow>(`SELECT ${WORKSPACE_COLUMNS} FROM workspaces WHERE id > $1 ${live} ORDER BY id LIMIT ${LOAD_PAGE}`, params);
      for (const row of rows) {
        const problem = readRow(row);
        if (problem === null) result.workspaces.push(toRecord(row));
        else result.corrupt.push({ id: row.id, reason: problem, error: corruptError(row.id, problem) });
      }
      if (rows.length < LOAD_PAGE) return result;
      after = rows[rows.length - 1]!.id;
    }
  }

  /** One workspace, or null if absent. Throws `WSUP_CORRUPT_STATE` naming it if its row is unreadable. */
  async getWorkspace(id: string): Promise<WorkspaceRecord | null> {
    const { rows } = await this.engine.query<WorkspaceRow>(`SELECT ${WORKSPACE_COLUMNS} FROM workspaces WHERE id = $1`, [id]);
    const row = rows[0];
    if (!row) return null;
    const problem = readRow(row);
    if (problem !== null) throw corruptError(id, problem);
    return toRecord(row);
  }

  /** The newest `limit` events (default 100) before `beforeSeq`, oldest first: page back with the first seq. */
  async events(id: string, opts: { limit?: number; beforeSeq?: number } = {}): Promise<EventRecord[]> {
    const limit = Math.max(1, Math.min(opts.limit ?? 100, 10_000));
    const { rows } = await this.engine.query<EventRow>(
      `SELECT * FROM (
         SELECT seq, workspace_id, at, kind, cycle, source, reason, requesters, outcome, state_from, state_to, durations, error, data
         FROM workspace_events WHERE workspace_id = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3
       ) page ORDER BY seq`,
      [id, opts.beforeSeq ?? Number.MAX_SAFE_INTEGER, limit],
    );
    return rows.map(toEvent);
  }

  // --- Reads any cluster replica answers from the store (every owner commits before it answers) -----

  /** Live workspaces' columns and snapshot text, in id order after `cursor`: a list without restoring actors. */
  async liveRows(filter: { state?: LifecycleState; limit?: number; cursor?: string; shards?: ShardFilter } = {}): Promise<LiveRow[]> {
    // One past the protocol's largest page, so that a caller asking for limit + 1 learns whether more follow.
    const params: unknown[] = [filter.cursor ?? '', Math.max(1, Math.min(filter.limit ?? 1000, 10_001))];
    let where = filter.state ? `AND state = $${params.push(filter.state)}` : '';
    where += shardClause('liveRows', filter.shards, params);
    const { rows } = await this.engine.query<LiveRow>(
      `SELECT id, spec, desired, state, snapshot FROM workspaces WHERE destroyed_at IS NULL AND id > $1 ${where} ORDER BY id LIMIT $2`,
      params,
    );
    return rows;
  }

  /** How many live workspaces are in each state (by the state index, not by reading rows). */
  async stateCounts(opts: { shards?: ShardFilter } = {}): Promise<Partial<Record<LifecycleState, number>>> {
    const params: unknown[] = [];
    const where = shardClause('stateCounts', opts.shards, params);
    const { rows } = await this.engine.query<{ state: LifecycleState; n: string | number }>(
      `SELECT state, count(*) AS n FROM workspaces WHERE destroyed_at IS NULL ${where} GROUP BY state`,
      params,
    );
    return Object.fromEntries(rows.map((r) => [r.state, Number(r.n)]));
  }

  /** Live workspaces that may hold a running slot (starting, running, stopping), with what a quota counts. */
  async holdingRows(opts: { shards?: ShardFilter } = {}): Promise<Array<{ id: string; state: LifecycleState; desired: Desired; spec: Record<string, unknown> }>> {
    const params: unknown[] = [];
    const where = shardClause('holdingRows', opts.shards, params);
    const { rows } = await this.engine.query<{ id: string; state: LifecycleState; desired: Desired; spec: Record<string, unknown> }>(
      `SELECT id, state, desired, spec FROM workspaces WHERE destroyed_at IS NULL AND state IN ('starting', 'running', 'stopping') ${where}`,
      params,
    );
    return rows;
  }

  /**
   * Live workspaces with a due time in (`after`, `before`] (ms), in (due, id) order, after `from` (the last
   * one of the previous page): what the scheduler wakes.
   */
  async dueIds(window: { after: number; before: number; from?: { at: number; id: string } }, opts: { limit?: number; shards?: ShardFilter } = {}): Promise<Array<{ id: string; at: number }>> {
    const from = window.from ?? { at: window.after, id: '' };
    const params: unknown[] = [window.before, Math.max(1, Math.min(opts.limit ?? 1000, 10_000)), window.after, from.at, from.id];
    const where = shardClause('dueIds', opts.shards, params);
    const { rows } = await this.engine.query<{ id: string; at: string | number }>(
      `SELECT id, next_due_at AS at FROM workspaces
       WHERE destroyed_at IS NULL AND next_due_at IS NOT NULL AND next_due_at <= $1 AND next_due_at > $3 AND (next_due_at, id) > ($4::bigint, $5::text) ${where}
       ORDER BY next_due_at, id LIMIT $2`,
      params,
    );
    return rows.map((r) => ({ id: r.id, at: Number(r.at) }));
  }

  /** Which of `ids` have a live row. */
  async liveIds(ids: readonly string[]): Promise<Set<string>> {
    if (ids.length === 0) return new Set();
    const { rows } = await this.engine.query<{ id: string }>('SELECT id FROM workspaces WHERE id = ANY($1::text[]) AND destroyed_at IS NULL', [ids]);
    return new Set(rows.map((r) => r.id));
  }

  /** The server default policy the workspaces of `scope` were last brought up to, or null when never. */
  async policyMark(scope: string): Promise<unknown> {
    const { rows } = await this.engine.query<{ policy: unknown }>('SELECT policy FROM policy_marks WHERE scope = $1', [scope]);
    return rows[0]?.policy ?? null;
  }

  /**
   * Record that every workspace of `scope` has `policy` as its server default (after their writes committed).
   * The node's scope and a replica's shards cover the same rows: marking one drops the other's.
   */
  async setPolicyMark(scope: string, policy: unknown): Promise<void> {
    await this.engine.transaction(async (tx) => {
      await tx.query(`DELETE FROM policy_marks WHERE scope <> $1 AND (scope = 'node') <> ($1 = 'node')`, [scope]);
      await tx.query(
        `INSERT INTO policy_marks (scope, policy) VALUES ($1, $2::jsonb) ON CONFLICT (scope) DO UPDATE SET policy = EXCLUDED.policy, updated_at = now()`,
        [scope, JSON.stringify(policy)],
      );
    });
  }

  /** Forget `scope`'s mark (and the marks covering the same rows): the next start that keeps marks restores all. */
  async dropPolicyMark(scope: string): Promise<void> {
    await this.engine.query(`DELETE FROM policy_marks WHERE scope = $1 OR (scope = 'node') <> ($1 = 'node')`, [scope]);
  }

  /** Whether the workspace has a row (only a live one with `live`). */
  async exists(id: string, opts: { live?: boolean } = {}): Promise<boolean> {
    const { rows } = await this.engine.query(`SELECT 1 FROM workspaces WHERE id = $1 ${opts.live ? 'AND destroyed_at IS NULL' : ''}`, [id]);
    return rows.length > 0;
  }

  /** The data of the first `request` event whose requester starts with `prefix`, or null. */
  async firstRequest(id: string, prefix: string): Promise<Record<string, unknown> | null> {
    const { rows } = await this.engine.query<{ data: Record<string, unknown> }>(
      `SELECT data FROM workspace_events WHERE workspace_id = $1 AND kind = 'request' AND left(data->>'requester', length($2)) = $2 ORDER BY seq LIMIT 1`,
      [id, prefix],
    );
    return rows[0]?.data ?? null;
  }

  /** Wait for commits in flight, then close the engine (if the store opened it). Idempotent. */
  close(): Promise<void> {
    return (this.closing ??= (async () => {
      await this.committer.drain();
      if (this.ownsEngine) await this.engine.close();
    })());
  }
}

/** Most workspaces per statement: keeps a huge single write under PostgreSQL's 65,535 parameters. */
const WORKSPACES_PER_STATEMENT = 2048;

/**
 * The rows of one workspace statement, for up to `slots` workspaces (parameters from `workspaceParams`):
 * small columns as arrays (`WORKSPACE_WRITE_COLUMNS`, $1..$W), each snapshot as its own text parameter (from `$first`). Text, not
 * json or jsonb: only wsup reads the snapshot, whole, and JSON.stringify made it, so the server stores it
 * as it comes instead of lexing ~1 KB per transition (json_in was a tenth of the server's CPU per batch);
 * `readRow` parses it on load. Unused slots are NULL, and unnest pads the arrays with NULL rows (id NULL),
 * which match nothing and are never inserted.
 */
function workspaceRows(slots: number, first = W + 1): string {
  const columns = WORKSPACE_WRITE_COLUMNS.map(([, type], i) => `$${i + 1}::${type}[]`).join(', ');
  const snapshots = Array.from({ length: slots }, (_, i) => `$${i + first}::text`).join(',');
  return `unnest(${columns},
    ARRAY[${snapshots}]::text[]) AS x(${WORKSPACE_WRITE_COLUMNS.map(([name]) => name).join(', ')}, snapshot)`;
}

/** How many column arrays a workspace statement takes before its snapshots. */
const W = WORKSPACE_WRITE_COLUMNS.length;

/**
 * Statement texts depend on the number of snapshot slots, so slots come in powers of two: a dozen texts,
 * each prepared once per connection (named), instead of a new text to parse and plan for every batch size.
 */
const slotsFor = (n: number): number => 2 ** Math.ceil(Math.log2(Math.max(1, n)));

/**
 * Update the existing workspaces among the batch rows `x` (from `rows`): what a committed transition sets.
 * Serves both the statement-by-statement path and the one-statement commit, which differ only in `rows`.
 */
const updateFrom = (rows: string): string => `
  UPDATE workspaces w SET
    desired = x.desired, state = x.state, snapshot = x.snapshot,
    spec = COALESCE(x.spec, w.spec), owner = COALESCE(x.owner, w.owner), prebuild = COALESCE(x.prebuild, w.prebuild),
    pool = CASE WHEN x.set_pool THEN x.pool ELSE w.pool END,
    next_due_at = CASE WHEN x.set_due THEN x.next_due_at ELSE w.next_due_at END,
    version = w.version + 1, updated_at = now(),
    destroyed_at = CASE WHEN x.state = 'destroyed' THEN COALESCE(w.destroyed_at, now()) END
  FROM ${rows}
  WHERE w.id = x.id AND w.id = ANY($1::text[])
  RETURNING w.id`;

/**
 * Insert the batch rows `x` (from `rows`) that are new; `owner` is the default owner's parameter,
 * `andWhere` a further condition on `x` (the one-statement commit leaves out the rows its update wrote).
 */
const insertFrom = (rows: string, owner: string, andWhere = ''): string => `
  INSERT INTO workspaces (id, spec, desired, state, owner, prebuild, pool, snapshot, version, destroyed_at, next_due_at)
  SELECT x.id, COALESCE(x.spec, '{}'::jsonb), x.desired, x.state, COALESCE(x.owner, ${owner}), COALESCE(x.prebuild, false),
         x.pool, x.snapshot, 1, CASE WHEN x.state = 'destroyed' THEN now() END, x.next_due_at
  FROM ${rows}
  WHERE x.id IS NOT NULL${andWhere}
  ON CONFLICT (id) DO NOTHING
  RETURNING id`;

const updateWorkspaces = (slots: number): string => updateFrom(workspaceRows(slots));
const insertWorkspaces = (slots: number): string => insertFrom(workspaceRows(slots), `$${W + slots + 1}`);

const statements = new Map<string, string>();
/** The text of a named statement, built once per process. */
const statement = (name: string, build: () => string): string => {
  let text = statements.get(name);
  if (text === undefined) statements.set(name, (text = build()));
  return text;
};

/** The texts of the store's commit statements for `slots` workspaces, for review (a snapshot test holds them). */
export function commitStatements(slots: number): { update: string; insert: string; commit: string; events: string } {
  return { update: updateWorkspaces(slots), insert: insertWorkspaces(slots), commit: commitStatement(slots), events: INSERT_EVENTS };
}

async function writeInto(tx: SqlQueryable, batch: MergedBatch): Promise<void> {
  const sorted = sortedWorkspaces(batch);
  for (let from = 0; from < sorted.length; from += WORKSPACES_PER_STATEMENT) {
    await upsertWorkspaces(tx, sorted.slice(from, from + WORKSPACES_PER_STATEMENT));
  }
  if (batch.events.length > 0) await tx.query(INSERT_EVENTS, eventParams(batch.events), { name: 'wsup_events_insert_columns' });
}

/** Sorted so concurrent writers (several stores, no group commit) lock rows in one order: no deadlock. */
const sortedWorkspaces = (batch: MergedBatch): PreparedWorkspace[] =>
  [...batch.workspaces.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));

/**
 * Events from the `EVENT_COLUMNS` arrays from `$first` on (see `eventParams`), in submission order
 * (ordinality), so `seq` follows the order the writes were made in.
 */
function insertEvents(first: number): string {
  const columns = EVENT_COLUMNS.map(([, type], i) => `$${first + i}::${type}[]`).join(', ');
  return `
  INSERT INTO workspace_events (workspace_id, at, kind, cycle, source, reason, requesters, outcome, state_from, state_to, durations, error, data)
  SELECT e.workspace_id, to_timestamp(e.at_ms / 1000.0), e.kind, e.cycle, e.source, e.reason, e.requesters::jsonb, e.outcome,
         e.state_from, e.state_to, e.durations::jsonb, e.error, e.data::jsonb
  FROM unnest(${columns})
    WITH ORDINALITY AS e(workspace_id, at_ms, kind, cycle, source, reason, requesters, outcome, state_from, state_to, durations, error, data, i)
  ORDER BY e.i`;
}
const INSERT_EVENTS = insertEvents(1);

/** SQLSTATE raised by `wsup_commit_check` (migration 5) when the one-statement upsert lost a race. */
const UPSERT_RACED = 'WS001';

/**
 * A whole batch in ONE statement: update the workspaces that exist, insert the ones that do not, append
 * the events. Parameters: the `WORKSPACE_WRITE_COLUMNS` arrays ($1..$W), how many workspaces ($W+1), the default
 * owner ($W+2), the `EVENT_COLUMNS` arrays, then the snapshots. Data-modifying CTEs share one snapshot, so a workspace another
 * writer inserted meanwhile is neither updated nor inserted (ON CONFLICT DO NOTHING): the count check then
 * fails the statement, nothing of it is written, and the store retries the batch the long way (`writeInto`).
 */
const commitStatement = (slots: number): string => `
  WITH x AS MATERIALIZED (SELECT * FROM ${workspaceRows(slots, W + 3 + EVENT_COLUMNS.length)}),
  u AS (${updateFrom('x')}),
  i AS (${insertFrom('x', `$${W + 2}::text`, ' AND x.id NOT IN (SELECT id FROM u)')}),
  e AS (${insertEvents(W + 3)})
  SELECT wsup_commit_check($${W + 1}::int, ((SELECT count(*) FROM u) + (SELECT count(*) FROM i))::int) AS written`;

async function commitInOneStatement(db: SqlQueryable, batch: MergedBatch): Promise<void> {
  const rows = sortedWorkspaces(batch);
  const slots = slotsFor(rows.length);
  const ws = workspaceParams(rows, slots);
  const params = [...ws.slice(0, W), rows.length, SYSTEM_OWNER, ...eventParams(batch.events), ...ws.slice(W)];
  const name = `wsup_commit_${slots}`;
  await db.query(statement(name, () => commitStatement(slots)), params, { name });
}

/**
 * UPDATE first: in steady state every row exists and this is the only workspace statement. An UPDATE
 * can keep stored fields a write leaves out (owner set by a claim, spec), which INSERT ... ON CONFLICT,
 * seeing only EXCLUDED, cannot. Rows it did not find are inserted; a row another writer inserted in
 * between makes the INSERT skip it, and the next round updates it.
 */
async function upsertWorkspaces(tx: SqlQueryable, rows: readonly PreparedWorkspace[]): Promise<void> {
  let todo = rows;
  for (let round = 0; todo.length > 0; round++) {
    if (round === 10) throw new Error(`workspaces ${todo.map((r) => r.id).join(', ')} could be neither updated nor inserted`);
    const slots = slotsFor(todo.length);
    const params = workspaceParams(todo, slots);
    let done: Array<{ id: string }>;
    if (round % 2 === 0) {
      const name = `wsup_workspaces_update_${slots}`;
      ({ rows: done } = await tx.query<{ id: string }>(statement(name, () => updateWorkspaces(slots)), params, { name }));
    } else {
      const name = `wsup_workspaces_insert_${slots}`;
      params.push(SYSTEM_OWNER);
      ({ rows: done } = await tx.query<{ id: string }>(statement(name, () => insertWorkspaces(slots)), params, { name }));
    }
    if (done.length === todo.length) return;
    const ids = new Set(done.map((r) => r.id));
    todo = todo.filter((r) => !ids.has(r.id));
  }
}

/** `AND <shard test>` for `shards` (checked; parameter appended to `params`), or '' without a filter. */
function shardClause(what: string, shards: ShardFilter | undefined, params: unknown[]): string {
  if (!shards) return '';
  const { count, of } = shards;
  if (!Number.isInteger(count) || count < 1 || count > 65_536) throw new WsupError('WSUP_INVALID_ARGUMENT', `${what}: a shard count is an integer from 1 to 65536, not ${count}`);
  const bad = of.find((s) => !Number.isInteger(s) || s < 0 || s >= count);
  if (bad !== undefined) throw new WsupError('WSUP_INVALID_ARGUMENT', `${what}: shard ${bad} is not one of ${count} shards (0..${count - 1})`);
  // The count is written into the text (an integer, checked above) so the planner matches the index.
  return ` AND (shard_hash % ${count}) = ANY($${params.push(of)}::int[])`;
}

function corruptError(id: string, reason: string): CorruptWorkspace['error'] {
  return new WsupError('WSUP_CORRUPT_STATE', `workspace ${id}: ${reason}: repair or destroy the row; other workspaces are unaffected`, {
    workspaceId: id,
  }) as CorruptWorkspace['error'];
}

/**
 * Parse the row's snapshot (stored as text since migration 6) in place, and say why the row cannot be
 * used, or null when it can. Text that is not JSON makes only this row corrupt.
 */
function readRow(row: WorkspaceRow): string | null {
  if (typeof row.snapshot === 'string') {
    try {
      row.snapshot = JSON.parse(row.snapshot) as unknown;
    } catch {
      return 'stored snapshot is not JSON';
    }
  }
  return rowProblem(row.id, row.state, row.desired, row.snapshot);
}

const ms = (d: Date | null): number | null => (d === null ? null : d.getTime());

function toRecord(row: WorkspaceRow): WorkspaceRecord {
  return {
    id: row.id,
    spec: row.spec,
    desired: row.desired as Desired,
    state: row.state as LifecycleState,
    owner: row.owner,
    prebuild: row.prebuild,
    pool: row.pool,
    snapshot: row.snapshot as PersistedSnapshot | null,
    version: Number(row.version),
    createdAt: row.created_at.getTime(),
    updatedAt: row.updated_at.getTime(),
    destroyedAt: ms(row.destroyed_at),
    nextDueAt: row.next_due_at === null ? null : Number(row.next_due_at),
  };
}

interface EventRow {
  seq: number;
  workspace_id: string;
  at: Date;
  kind: string;
  cycle: number | null;
  source: string | null;
  reason: string | null;
  requesters: unknown;
  outcome: string | null;
  state_from: string | null;
  state_to: string | null;
  durations: Record<string, number | null> | null;
  error: string | null;
  data: unknown;
}

function toEvent(r: EventRow): EventRecord {
  return {
    seq: Number(r.seq),
    workspaceId: r.workspace_id,
    at: r.at.getTime(),
    kind: r.kind,
    cycle: r.cycle,
    source: r.source,
    reason: r.reason,
    requesters: r.requesters,
    outcome: r.outcome,
    stateFrom: r.state_from,
    stateTo: r.state_to,
    durations: r.durations,
    error: r.error,
    data: r.data,
  };
}
