/**
 * Turning writes into batch parameters. Each write is validated and serialized when it is submitted, so a
 * bad write (unknown state, a value JSON cannot carry) rejects only its own caller and never poisons the
 * batch it would have joined. A batch then travels as ONE json parameter per table, expanded server-side
 * by `json_to_recordset` (json, not jsonb: only the snapshot fields need converting to jsonb): two
 * statements per transaction in steady state, whatever the batch size.
 */
import { LIFECYCLE_STATES } from '../../machines/workspace.types.ts';
import { WsupError, errorMessage } from '../errors.ts';
import { DESIRED_STATES, type CommitWrite, type EventWrite, type WorkspaceWrite } from './types.ts';

/** Column name → JSON text of its value. Absent keys mean "keep the stored value". */
type RawRow = Record<string, string>;

export interface PreparedCommit {
  workspaces: Map<string, RawRow>;
  events: RawRow[];
}

function json(what: string, value: unknown): string {
  let text: string | undefined;
  try {
    text = JSON.stringify(value);
  } catch (err) {
    throw new WsupError('WSUP_INVALID_ARGUMENT', `${what} cannot be stored as JSON: ${errorMessage(err)}`, { cause: err });
  }
  // PostgreSQL's jsonb rejects NUL characters; catch it here rather than failing a whole batch.
  if (text !== undefined && text.includes('\\u0000')) {
    throw new WsupError('WSUP_INVALID_ARGUMENT', `${what} contains a NUL character, which PostgreSQL cannot store`);
  }
  return text ?? 'null';
}

function prepareWorkspace(w: WorkspaceWrite): RawRow {
  const where = `workspace ${JSON.stringify(w.id)}`;
  if (typeof w.id !== 'string' || w.id.length === 0) throw new WsupError('WSUP_INVALID_ID', `commit: ${where} has no id`);
  if (!LIFECYCLE_STATES.includes(w.state)) {
    throw new WsupError('WSUP_INVALID_ARGUMENT', `${where}: unknown state ${JSON.stringify(w.state)}`, { workspaceId: w.id });
  }
  if (!DESIRED_STATES.includes(w.desired)) {
    throw new WsupError('WSUP_INVALID_ARGUMENT', `${where}: unknown desired state ${JSON.stringify(w.desired)}`, { workspaceId: w.id });
  }
  const row: RawRow = {
    id: JSON.stringify(w.id),
    state: JSON.stringify(w.state),
    desired: JSON.stringify(w.desired),
    snapshot: json(`${where} snapshot`, w.snapshot ?? null),
  };
  if (w.spec !== undefined) row.spec = json(`${where} spec`, w.spec);
  if (w.owner !== undefined) row.owner = JSON.stringify(w.owner);
  if (w.prebuild !== undefined) row.prebuild = JSON.stringify(Boolean(w.prebuild));
  if (w.pool !== undefined) {
    row.pool = JSON.stringify(w.pool);
    row.set_pool = 'true';
  }
  return row;
}

function prepareEvent(e: EventWrite): RawRow {
  const where = `event ${JSON.stringify(e.kind)} of workspace ${JSON.stringify(e.workspaceId)}`;
  if (typeof e.workspaceId !== 'string' || typeof e.kind !== 'string' || !Number.isFinite(e.at)) {
    throw new WsupError('WSUP_INVALID_ARGUMENT', `${where}: needs workspaceId, kind and a finite at (ms)`);
  }
  const row: RawRow = {
    workspace_id: JSON.stringify(e.workspaceId),
    at_ms: JSON.stringify(e.at),
    kind: JSON.stringify(e.kind),
  };
  const optional: Array<[string, unknown]> = [
    ['cycle', e.cycle], ['source', e.source], ['reason', e.reason], ['requesters', e.requesters],
    ['outcome', e.outcome], ['state_from', e.stateFrom], ['state_to', e.stateTo],
    ['durations', e.durations], ['error', e.error], ['data', e.data],
  ];
  for (const [key, value] of optional) if (value !== undefined && value !== null) row[key] = json(`${where} ${key}`, value);
  return row;
}

/** Validate and serialize one caller's write. Throws `WSUP_INVALID_ARGUMENT`. */
export function prepare(write: CommitWrite): PreparedCommit {
  const workspaces = new Map<string, RawRow>();
  for (const w of write.workspaces ?? []) workspaces.set(w.id, { ...workspaces.get(w.id), ...prepareWorkspace(w) });
  return { workspaces, events: (write.events ?? []).map(prepareEvent) };
}

/**
 * Merge writes in submission order: a later upsert of the same workspace overrides the fields it sets
 * (ON CONFLICT cannot touch one row twice in a statement), events are kept in order, all of them.
 */
export function merge(batch: readonly PreparedCommit[]): PreparedCommit {
  if (batch.length === 1) return batch[0]!;
  const workspaces = new Map<string, RawRow>();
  const events: RawRow[] = [];
  for (const c of batch) {
    for (const [id, row] of c.workspaces) workspaces.set(id, { ...workspaces.get(id), ...row });
    for (const e of c.events) events.push(e);
  }
  return { workspaces, events };
}

/** A JSON array of rows, built from already-serialized values; `i` carries the order for events. */
export function toJsonArray(rows: Iterable<RawRow>, withIndex = false): string {
  const parts: string[] = [];
  let i = 0;
  for (const row of rows) {
    const fields = Object.entries(row).map(([k, v]) => `"${k}":${v}`);
    if (withIndex) fields.push(`"i":${i++}`);
    parts.push(`{${fields.join(',')}}`);
  }
  return `[${parts.join(',')}]`;
}
