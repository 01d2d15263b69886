/**
 * The store's commit statements as text, and the parameters they take: a change to either shows up here
 * in review. One column table drives both (`WORKSPACE_WRITE_COLUMNS`, `EVENT_COLUMNS`), so the placeholders,
 * the unnest column list and the parameter arrays cannot drift apart.
 */
import { expect, it } from 'vitest';
import { EVENT_COLUMNS, eventParams, WORKSPACE_WRITE_COLUMNS, workspaceParams } from '../../src/store/prepare.ts';
import { commitStatements } from '../../src/store/store.ts';

const squash = (sql: string) => sql.replace(/\s+/g, ' ').trim();

it('builds the workspace statements for two snapshot slots', () => {
  const s = commitStatements(2);
  expect(squash(s.update)).toMatchInlineSnapshot(`"UPDATE workspaces w SET desired = x.desired, state = x.state, snapshot = x.snapshot, spec = COALESCE(x.spec, w.spec), owner = COALESCE(x.owner, w.owner), prebuild = COALESCE(x.prebuild, w.prebuild), pool = CASE WHEN x.set_pool THEN x.pool ELSE w.pool END, next_due_at = CASE WHEN x.set_due THEN x.next_due_at ELSE w.next_due_at END, version = w.version + 1, updated_at = now(), destroyed_at = CASE WHEN x.state = 'destroyed' THEN COALESCE(w.destroyed_at, now()) END FROM unnest($1::text[], $2::text[], $3::text[], $4::jsonb[], $5::text[], $6::boolean[], $7::text[], $8::boolean[], $9::bigint[], $10::boolean[], ARRAY[$11::text,$12::text]::text[]) AS x(id, desired, state, spec, owner, prebuild, pool, set_pool, next_due_at, set_due, snapshot) WHERE w.id = x.id AND w.id = ANY($1::text[]) RETURNING w.id"`);
  expect(squash(s.insert)).toMatchInlineSnapshot(`"INSERT INTO workspaces (id, spec, desired, state, owner, prebuild, pool, snapshot, version, destroyed_at, next_due_at) SELECT x.id, COALESCE(x.spec, '{}'::jsonb), x.desired, x.state, COALESCE(x.owner, $13), COALESCE(x.prebuild, false), x.pool, x.snapshot, 1, CASE WHEN x.state = 'destroyed' THEN now() END, x.next_due_at FROM unnest($1::text[], $2::text[], $3::text[], $4::jsonb[], $5::text[], $6::boolean[], $7::text[], $8::boolean[], $9::bigint[], $10::boolean[], ARRAY[$11::text,$12::text]::text[]) AS x(id, desired, state, spec, owner, prebuild, pool, set_pool, next_due_at, set_due, snapshot) WHERE x.id IS NOT NULL ON CONFLICT (id) DO NOTHING RETURNING id"`);
  expect(squash(s.commit)).toMatchInlineSnapshot(`"WITH x AS MATERIALIZED (SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::jsonb[], $5::text[], $6::boolean[], $7::text[], $8::boolean[], $9::bigint[], $10::boolean[], ARRAY[$26::text,$27::text]::text[]) AS x(id, desired, state, spec, owner, prebuild, pool, set_pool, next_due_at, set_due, snapshot)), u AS ( UPDATE workspaces w SET desired = x.desired, state = x.state, snapshot = x.snapshot, spec = COALESCE(x.spec, w.spec), owner = COALESCE(x.owner, w.owner), prebuild = COALESCE(x.prebuild, w.prebuild), pool = CASE WHEN x.set_pool THEN x.pool ELSE w.pool END, next_due_at = CASE WHEN x.set_due THEN x.next_due_at ELSE w.next_due_at END, version = w.version + 1, updated_at = now(), destroyed_at = CASE WHEN x.state = 'destroyed' THEN COALESCE(w.destroyed_at, now()) END FROM x WHERE w.id = x.id AND w.id = ANY($1::text[]) RETURNING w.id), i AS ( INSERT INTO workspaces (id, spec, desired, state, owner, prebuild, pool, snapshot, version, destroyed_at, next_due_at) SELECT x.id, COALESCE(x.spec, '{}'::jsonb), x.desired, x.state, COALESCE(x.owner, $12::text), COALESCE(x.prebuild, false), x.pool, x.snapshot, 1, CASE WHEN x.state = 'destroyed' THEN now() END, x.next_due_at FROM x WHERE x.id IS NOT NULL AND x.id NOT IN (SELECT id FROM u) ON CONFLICT (id) DO NOTHING RETURNING id), e AS ( INSERT INTO workspace_events (workspace_id, at, kind, cycle, source, reason, requesters, outcome, state_from, state_to, durations, error, data) SELECT e.workspace_id, to_timestamp(e.at_ms / 1000.0), e.kind, e.cycle, e.source, e.reason, e.requesters::jsonb, e.outcome, e.state_from, e.state_to, e.durations::jsonb, e.error, e.data::jsonb FROM unnest($13::text[], $14::float8[], $15::text[], $16::int4[], $17::text[], $18::text[], $19::text[], $20::text[], $21::text[], $22::text[], $23::text[], $24::text[], $25::text[]) WITH ORDINALITY AS e(workspace_id, at_ms, kind, cycle, source, reason, requesters, outcome, state_from, state_to, durations, error, data, i) ORDER BY e.i) SELECT wsup_commit_check($11::int, ((SELECT count(*) FROM u) + (SELECT count(*) FROM i))::int) AS written"`);
  expect(squash(s.events)).toMatchInlineSnapshot(`"INSERT INTO workspace_events (workspace_id, at, kind, cycle, source, reason, requesters, outcome, state_from, state_to, durations, error, data) SELECT e.workspace_id, to_timestamp(e.at_ms / 1000.0), e.kind, e.cycle, e.source, e.reason, e.requesters::jsonb, e.outcome, e.state_from, e.state_to, e.durations::jsonb, e.error, e.data::jsonb FROM unnest($1::text[], $2::float8[], $3::text[], $4::int4[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[]) WITH ORDINALITY AS e(workspace_id, at_ms, kind, cycle, source, reason, requesters, outcome, state_from, state_to, durations, error, data, i) ORDER BY e.i"`);
});

it('numbers every placeholder once, from the column tables', () => {
  const slots = 4;
  const { update, insert, commit } = commitStatements(slots);
  const placeholders = (sql: string) => [...new Set([...sql.matchAll(/\$(\d+)/g)].map((m) => Number(m[1])))].sort((a, b) => a - b);
  const w = WORKSPACE_WRITE_COLUMNS.length;
  expect(placeholders(update)).toEqual(Array.from({ length: w + slots }, (_, i) => i + 1));
  expect(placeholders(insert)).toEqual(Array.from({ length: w + slots + 1 }, (_, i) => i + 1));
  expect(placeholders(commit)).toEqual(Array.from({ length: w + 2 + EVENT_COLUMNS.length + slots }, (_, i) => i + 1));
});

it('passes the columns as array literals, one per column, then one snapshot per slot', () => {
  const rows = [
    { id: 'ws-"1"', desired: 'running', state: 'starting', snapshot: '{"a":1}', spec: '{"image":"x"}', pool: 'py' },
    { id: 'ws-2', desired: 'stopped', state: 'idle', snapshot: '{}', owner: 'alice', prebuild: true },
  ] as Parameters<typeof workspaceParams>[0];
  const params = workspaceParams(rows, 4);
  expect(params).toHaveLength(WORKSPACE_WRITE_COLUMNS.length + 4);
  expect(params).toMatchInlineSnapshot(`
    [
      "{"ws-\\"1\\"","ws-2"}",
      "{"running","stopped"}",
      "{"starting","idle"}",
      "{"{\\"image\\":\\"x\\"}",NULL}",
      "{NULL,"alice"}",
      "{NULL,t}",
      "{"py",NULL}",
      "{t,f}",
      "{NULL,NULL}",
      "{f,f}",
      "{"a":1}",
      "{}",
      null,
      null,
    ]
  `);
  expect(eventParams([])).toHaveLength(EVENT_COLUMNS.length);
});
