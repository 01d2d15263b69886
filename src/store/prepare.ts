/**
 * Turning writes into batch parameters. Each write is validated and serialized when it is submitted, so a
 * bad write (unknown state, a value JSON cannot carry) rejects only its own caller and never poisons the
 * batch it would have joined.
 *
 * Workspaces travel column-wise: one array parameter per small column, expanded server-side by `unnest`,
 * and each snapshot (the ~1 KB blob that is most of the bytes) as its own `json` parameter, so the server
 * never parses it as part of a bigger document and never builds jsonb from it: measured, parsing the
 * snapshots (json_to_recordset, then jsonb_in) was most of the server's CPU per transition. Events travel
 * column-wise too (`eventParams`): no JSON text per event to build here, nor to parse into a record there.
 */
import { LIFECYCLE_STATES } from '../../machines/workspace.types.ts';
import { WsupError, errorMessage } from '../errors.ts';
import { DESIRED_STATES, type CommitWrite, type EventWrite, type WorkspaceWrite } from './types.ts';

/**
 * One workspace upsert, ready for the statement's parameters. Optional keys that are absent mean "keep
 * the stored value" (or the default on insert); `pool` present (even null) means "set it".
 */
export interface PreparedWorkspace {
  id: string;
  state: string;
  desired: string;
  /** JSON text, or null for no snapshot (SQL NULL). */
  snapshot: string | null;
  /** JSON text. */
  spec?: string;
  owner?: string;
  prebuild?: boolean;
  pool?: string | null;
  nextDueAt?: number | null;
}

/** One event row: absent fields are null; the jsonb columns as JSON text. */
export interface PreparedEvent {
  workspaceId: string;
  atMs: number;
  kind: string;
  cycle: number | null;
  source: string | null;
  reason: string | null;
  requesters: string | null;
  outcome: string | null;
  stateFrom: string | null;
  stateTo: string | null;
  durations: string | null;
  error: string | null;
  data: string | null;
}

export interface PreparedCommit {
  workspaces: Map<string, PreparedWorkspace>;
  /** In order. */
  events: PreparedEvent[];
  /** Every workspace id the write touches (upserts and events): what orders it against other writes. */
  keys: string[];
}

/** `jsonb`: the value goes to a jsonb column, which (unlike json) cannot hold a NUL character. */
function json(what: string, value: unknown, jsonb = true): string {
  let text: string | undefined;
  try {
    text = JSON.stringify(value);
  } catch (err) {
    throw new WsupError('WSUP_INVALID_ARGUMENT', `${what} cannot be stored as JSON: ${errorMessage(err)}`, { cause: err });
  }
  // PostgreSQL's jsonb rejects NUL characters; catch it here rather than failing a whole batch.
  if (jsonb && text !== undefined && text.includes('\\u0000')) {
    throw new WsupError('WSUP_INVALID_ARGUMENT', `${what} contains a NUL character, which PostgreSQL cannot store`);
  }
  return text ?? 'null';
}

function prepareWorkspace(w: WorkspaceWrite): PreparedWorkspace {
  const where = `workspace ${JSON.stringify(w.id)}`;
  if (typeof w.id !== 'string' || w.id.length === 0) throw new WsupError('WSUP_INVALID_ID', `commit: ${where} has no id`);
  if (!LIFECYCLE_STATES.includes(w.state)) {
    throw new WsupError('WSUP_INVALID_ARGUMENT', `${where}: unknown state ${JSON.stringify(w.state)}`, { workspaceId: w.id });
  }
  if (!DESIRED_STATES.includes(w.desired)) {
    throw new WsupError('WSUP_INVALID_ARGUMENT', `${where}: unknown desired state ${JSON.stringify(w.desired)}`, { workspaceId: w.id });
  }
  const snapshot = w.snapshot === undefined || w.snapshot === null ? null : json(`${where} snapshot`, w.snapshot, false);
  const row: PreparedWorkspace = { id: w.id, state: w.state, desired: w.desired, snapshot: snapshot === 'null' ? null : snapshot };
  const spec = w.spec === undefined ? undefined : json(`${where} spec`, w.spec);
  if (spec !== undefined && spec !== 'null') row.spec = spec; // JSON null, like absent: keep the stored spec
  if (w.owner !== undefined) row.owner = w.owner;
  if (w.prebuild !== undefined) row.prebuild = Boolean(w.prebuild);
  if (w.pool !== undefined) row.pool = w.pool;
  if (w.nextDueAt !== undefined) {
    if (w.nextDueAt !== null && !Number.isSafeInteger(w.nextDueAt)) throw new WsupError('WSUP_INVALID_ARGUMENT', `${where}: next due time ${String(w.nextDueAt)} is not an integer of ms`, { workspaceId: w.id });
    row.nextDueAt = w.nextDueAt;
  }
  return row;
}

/** A text column's value: PostgreSQL text cannot hold a NUL character, so refuse it here, not in the batch. */
function text(where: () => string, column: string, value: string | null | undefined): string | null {
  if (value === undefined || value === null) return null;
  const t = String(value);
  if (t.includes('\0')) throw new WsupError('WSUP_INVALID_ARGUMENT', `${where()} ${column} contains a NUL character, which PostgreSQL cannot store`);
  return t;
}

/** A jsonb column's value as JSON text (null when absent). */
const jsonb = (where: () => string, column: string, value: unknown): string | null =>
  value === undefined || value === null ? null : json(`${where()} ${column}`, value);

function prepareEvent(e: EventWrite): PreparedEvent {
  const where = () => `event ${JSON.stringify(e.kind)} of workspace ${JSON.stringify(e.workspaceId)}`;
  if (typeof e.workspaceId !== 'string' || typeof e.kind !== 'string' || !Number.isFinite(e.at)) {
    throw new WsupError('WSUP_INVALID_ARGUMENT', `${where()}: needs workspaceId, kind and a finite at (ms)`);
  }
  const cycle = e.cycle ?? null;
  if (cycle !== null && !Number.isInteger(cycle)) throw new WsupError('WSUP_INVALID_ARGUMENT', `${where()}: cycle ${String(cycle)} is not an integer`);
  return {
    workspaceId: text(where, 'workspaceId', e.workspaceId)!,
    atMs: e.at,
    kind: text(where, 'kind', e.kind)!,
    cycle,
    source: text(where, 'source', e.source),
    reason: text(where, 'reason', e.reason),
    requesters: jsonb(where, 'requesters', e.requesters),
    outcome: text(where, 'outcome', e.outcome),
    stateFrom: text(where, 'state_from', e.stateFrom),
    stateTo: text(where, 'state_to', e.stateTo),
    durations: jsonb(where, 'durations', e.durations),
    error: text(where, 'error', e.error),
    data: jsonb(where, 'data', e.data),
  };
}

/** Validate and serialize one caller's write. Throws `WSUP_INVALID_ARGUMENT`. */
export function prepare(write: CommitWrite): PreparedCommit {
  const workspaces = new Map<string, PreparedWorkspace>();
  for (const w of write.workspaces ?? []) add(workspaces, prepareWorkspace(w));
  const events = (write.events ?? []).map(prepareEvent);
  const keys = new Set(workspaces.keys());
  for (const e of write.events ?? []) keys.add(e.workspaceId);
  return { workspaces, events, keys: [...keys] };
}

/** What one transaction writes: the merged rows of its writes. */
export type MergedBatch = Pick<PreparedCommit, 'workspaces' | 'events'>;

/**
 * Merge writes in submission order: a later upsert of the same workspace overrides the fields it sets
 * (ON CONFLICT cannot touch one row twice in a statement), events are kept in order, all of them.
 */
export function merge(batch: readonly PreparedCommit[]): MergedBatch {
  if (batch.length === 1) return batch[0]!;
  const workspaces = new Map<string, PreparedWorkspace>();
  const events: PreparedEvent[] = [];
  for (const c of batch) {
    for (const row of c.workspaces.values()) add(workspaces, row);
    for (const e of c.events) events.push(e);
  }
  return { workspaces, events };
}

/** A later upsert of a workspace overrides the fields it sets and keeps the ones it leaves out. */
function add(into: Map<string, PreparedWorkspace>, row: PreparedWorkspace): void {
  const earlier = into.get(row.id);
  into.set(row.id, earlier ? { ...earlier, ...row } : row);
}

/**
 * The workspace columns in the order a workspace statement unnests them: the name each has in the batch
 * rows `x`, the array type it travels as, and how a prepared row gives it (null where a write leaves the
 * field out). `set_pool` says whether the write sets `pool` at all (a null pool is a value), `set_due` the same of `next_due_at`. Both
 * `workspaceParams` and the statements in store.ts are built from this table.
 */
export const WORKSPACE_WRITE_COLUMNS: ReadonlyArray<readonly [name: string, type: string, get: (r: PreparedWorkspace) => ArrayElement]> = [
  ['id', 'text', (r) => r.id],
  ['desired', 'text', (r) => r.desired],
  ['state', 'text', (r) => r.state],
  ['spec', 'jsonb', (r) => r.spec ?? null],
  ['owner', 'text', (r) => r.owner ?? null],
  ['prebuild', 'boolean', (r) => r.prebuild ?? null],
  ['pool', 'text', (r) => r.pool ?? null],
  ['set_pool', 'boolean', (r) => r.pool !== undefined],
  ['next_due_at', 'bigint', (r) => r.nextDueAt ?? null],
  ['set_due', 'boolean', (r) => r.nextDueAt !== undefined],
];

/**
 * The parameters of one workspace statement: one array literal per `WORKSPACE_WRITE_COLUMNS` entry, then `slots`
 * (≥ rows) text parameters, one per row for its snapshot and null for the unused rest. See
 * `workspaceRows` in store.ts.
 */
export function workspaceParams(rows: readonly PreparedWorkspace[], slots = rows.length): unknown[] {
  const n = rows.length;
  const columns = WORKSPACE_WRITE_COLUMNS.map(() => new Array<ArrayElement>(n));
  for (let c = 0; c < columns.length; c++) {
    const get = WORKSPACE_WRITE_COLUMNS[c]![2];
    const column = columns[c]!;
    for (let i = 0; i < n; i++) column[i] = get(rows[i]!);
  }
  const params: unknown[] = columns.map(arrayLiteral);
  for (const r of rows) params.push(r.snapshot);
  for (let i = rows.length; i < slots; i++) params.push(null);
  return params;
}

type ArrayElement = string | number | boolean | null;

/**
 * A PostgreSQL array literal (`{"a",NULL,"b"}`), passed as text for a `$n::type[]` parameter: every string
 * element double-quoted, so only `"` and `\` need escaping (rarely present; checked before replacing).
 * Both drivers pass a string through as is; building it here costs a fraction of the drivers' per-element
 * escaping, which ran two regular expressions on every element.
 */
export function arrayLiteral(values: readonly ArrayElement[]): string {
  let out = '{';
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (i > 0) out += ',';
    if (v === null || v === undefined) out += 'NULL';
    else if (typeof v === 'string') out += `"${v.includes('"') || v.includes('\\') ? v.replace(/["\\]/g, '\\$&') : v}"`;
    else out += typeof v === 'boolean' ? (v ? 't' : 'f') : String(v);
  }
  return `${out}}`;
}

/**
 * The event columns in the order the events statement unnests them, with the array type each travels as
 * (`insertEvents` builds its parameter list from this; the jsonb columns travel as text and are cast there).
 */
export const EVENT_COLUMNS = [
  ['workspaceId', 'text'], ['atMs', 'float8'], ['kind', 'text'], ['cycle', 'int4'], ['source', 'text'],
  ['reason', 'text'], ['requesters', 'text'], ['outcome', 'text'], ['stateFrom', 'text'], ['stateTo', 'text'],
  ['durations', 'text'], ['error', 'text'], ['data', 'text'],
] as const satisfies ReadonlyArray<readonly [keyof PreparedEvent, string]>;

/** The column arrays (literals) of an events statement, one per `EVENT_COLUMNS` entry, in that order. */
export function eventParams(events: readonly PreparedEvent[]): string[] {
  return EVENT_COLUMNS.map(([field]) => arrayLiteral(events.map((e) => e[field])));
}
