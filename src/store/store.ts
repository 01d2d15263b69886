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
import { ClaimStore } from './claims.ts';
import type { EngineOptions, SqlEngine, SqlQueryable } from './engine.ts';
import { openEngine } from './open.ts';
import { GroupCommitter, type GroupCommitStats } from './group-commit.ts';
import { migrate, type MigrationResult } from './migrations.ts';
import { merge, prepare, toJsonArray, type PreparedCommit } from './prepare.ts';
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
}

const WORKSPACE_COLUMNS = 'id, spec, desired, state, owner, prebuild, pool, snapshot, version, created_at, updated_at, destroyed_at';
const LOAD_PAGE = 2000;

export class WorkspaceStore {
  readonly claims: ClaimStore;
  readonly tokens: TokenStore;
  readonly processes: ProcessRecordStore;
  private readonly committer: GroupCommitter<PreparedCommit>;
  private closing: Promise<void> | null = null;

  private constructor(
    readonly engine: SqlEngine,
    readonly migration: MigrationResult,
    private readonly ownsEngine: boolean,
    opts: StoreOptions,
  ) {
    this.committer = new GroupCommitter((batch) => this.writeBatch(merge(batch)), {
      enabled: opts.groupCommit ?? true,
      ...(opts.maxBatch !== undefined ? { maxBatch: opts.maxBatch } : {}),
    });
    this.claims = new ClaimStore(engine);
    this.tokens = new TokenStore(engine);
    this.processes = new ProcessRecordStore(engine);
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

  private async writeBatch(batch: PreparedCommit): Promise<void> {
    try {
      await this.engine.transaction((tx) => writeInto(tx, batch));
    } catch (err) {
      const n = batch.workspaces.size + batch.events.length;
      throw new WsupError('WSUP_STORE', `commit of ${n} rows on ${this.engine.description} rolled back: ${errorMessage(err)}`, { cause: err });
    }
  }

  /** Every workspace (live ones by default), split into readable rows and corrupt ones. */
  async loadWorkspaces(opts: { includeDestroyed?: boolean } = {}): Promise<LoadResult> {
    const result: LoadResult = { workspaces: [], corrupt: [] };
    const live = opts.includeDestroyed ? '' : 'AND destroyed_at IS NULL';
    // Keyset pages keep 100,000 snapshots from arriving as one result set.
    for (let after = ''; ; ) {
      const { rows } = await this.engine.query<WorkspaceRow>(
        `SELECT ${WORKSPACE_COLUMNS} FROM workspaces WHERE id > $1 ${live} ORDER BY id LIMIT ${LOAD_PAGE}`,
        [after],
      );
      for (const row of rows) {
        const problem = rowProblem(row.id, row.state, row.desired, row.snapshot);
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
    const problem = rowProblem(row.id, row.state, row.desired, row.snapshot);
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

  /** Wait for commits in flight, then close the engine (if the store opened it). Idempotent. */
  close(): Promise<void> {
    return (this.closing ??= (async () => {
      await this.committer.drain();
      if (this.ownsEngine) await this.engine.close();
    })());
  }
}

const UPDATE_WORKSPACES = `
  UPDATE workspaces w SET
    desired = x.desired, state = x.state, snapshot = x.snapshot,
    spec = COALESCE(x.spec, w.spec), owner = COALESCE(x.owner, w.owner), prebuild = COALESCE(x.prebuild, w.prebuild),
    pool = CASE WHEN x.set_pool THEN x.pool ELSE w.pool END,
    version = w.version + 1, updated_at = now(),
    destroyed_at = CASE WHEN x.state = 'destroyed' THEN COALESCE(w.destroyed_at, now()) END
  FROM json_to_recordset($1::json) AS x(id text, desired text, state text, snapshot jsonb, spec jsonb,
    owner text, prebuild boolean, pool text, set_pool boolean)
  WHERE w.id = x.id
  RETURNING w.id`;

const INSERT_WORKSPACES = `
  INSERT INTO workspaces (id, spec, desired, state, owner, prebuild, pool, snapshot, version, destroyed_at)
  SELECT x.id, COALESCE(x.spec, '{}'::jsonb), x.desired, x.state, COALESCE(x.owner, $2), COALESCE(x.prebuild, false),
         x.pool, x.snapshot, 1, CASE WHEN x.state = 'destroyed' THEN now() END
  FROM json_to_recordset($1::json) AS x(id text, desired text, state text, snapshot jsonb, spec jsonb,
    owner text, prebuild boolean, pool text)
  ON CONFLICT (id) DO NOTHING
  RETURNING id`;

async function writeInto(tx: SqlQueryable, batch: PreparedCommit): Promise<void> {
  // Sorted so concurrent writers (several stores, no group commit) lock rows in one order: no deadlock.
  let todo = [...batch.workspaces.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  // UPDATE first: in steady state every row exists and this is the only workspace statement. An UPDATE
  // can keep stored fields a write leaves out (owner set by a claim, spec), which INSERT ... ON CONFLICT,
  // seeing only EXCLUDED, cannot. Rows it did not find are inserted; a row another writer inserted in
  // between makes the INSERT skip it, and the next round updates it.
  for (let round = 0; todo.length > 0; round++) {
    if (round === 10) throw new Error(`workspaces ${todo.map(([id]) => id).join(', ')} could be neither updated nor inserted`);
    const rowsJson = toJsonArray(todo.map(([, r]) => r));
    const { rows } = round % 2 === 0
      ? await tx.query<{ id: string }>(UPDATE_WORKSPACES, [rowsJson])
      : await tx.query<{ id: string }>(INSERT_WORKSPACES, [rowsJson, SYSTEM_OWNER]);
    const done = new Set(rows.map((r) => r.id));
    todo = todo.filter(([id]) => !done.has(id));
  }
  if (batch.events.length > 0) {
    await tx.query(
      `INSERT INTO workspace_events (workspace_id, at, kind, cycle, source, reason, requesters, outcome, state_from, state_to, durations, error, data)
       SELECT x.workspace_id, to_timestamp(x.at_ms / 1000.0), x.kind, x.cycle, x.source, x.reason, x.requesters, x.outcome,
              x.state_from, x.state_to, x.durations, x.error, x.data
       FROM json_to_recordset($1::json) AS x(i integer, workspace_id text, at_ms double precision, kind text, cycle integer,
         source text, reason text, requesters jsonb, outcome text, state_from text, state_to text, durations jsonb, error text, data jsonb)
       ORDER BY x.i`,
      [toJsonArray(batch.events, true)],
    );
  }
}

function corruptError(id: string, reason: string): CorruptWorkspace['error'] {
  return new WsupError('WSUP_CORRUPT_STATE', `workspace ${id}: ${reason}: repair or destroy the row; other workspaces are unaffected`, {
    workspaceId: id,
  }) as CorruptWorkspace['error'];
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
