/**
 * Versioned schema migrations, applied on open. Append new migrations; never edit a released one.
 *
 * Each migration runs in its own transaction that first takes a transaction-scoped advisory lock keyed by
 * the schema, then re-reads the version: two processes opening one database at once apply each migration
 * exactly once, and a crash mid-migration leaves the previous version intact.
 */
import { WsupError, errorMessage } from '../errors.ts';
import type { SqlEngine } from './engine.ts';

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

/** Arbitrary constant naming "wsup migrations" in pg_advisory_xact_lock's (int, int) key space. */
const MIGRATION_LOCK = 0x77737570;

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'workspaces, events, claims, tokens, process records',
    sql: `
      CREATE TABLE workspaces (
        id           text PRIMARY KEY,
        spec         jsonb NOT NULL DEFAULT '{}'::jsonb,
        desired      text NOT NULL,
        state        text NOT NULL,
        owner        text NOT NULL,
        prebuild     boolean NOT NULL DEFAULT false,
        pool         text,
        snapshot     jsonb,
        version      bigint NOT NULL DEFAULT 1,
        created_at   timestamptz NOT NULL DEFAULT now(),
        updated_at   timestamptz NOT NULL DEFAULT now(),
        destroyed_at timestamptz
      );
      -- Claiming from a pool scans only unclaimed live prebuilds.
      CREATE INDEX workspaces_pool_idx ON workspaces (pool, created_at)
        WHERE prebuild AND destroyed_at IS NULL;

      CREATE TABLE workspace_events (
        seq          bigserial PRIMARY KEY,
        workspace_id text NOT NULL,
        at           timestamptz NOT NULL,
        kind         text NOT NULL,
        cycle        integer,
        source       text,
        reason       text,
        requesters   jsonb,
        outcome      text,
        state_from   text,
        state_to     text,
        durations    jsonb,
        error        text,
        data         jsonb
      );
      CREATE INDEX workspace_events_workspace_seq_idx ON workspace_events (workspace_id, seq);
      -- The log is evidence ("why did this restart?"): the database refuses to rewrite it.
      CREATE FUNCTION workspace_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        RAISE EXCEPTION 'workspace_events is append-only: % is not allowed', TG_OP;
      END $$;
      CREATE TRIGGER workspace_events_append_only BEFORE UPDATE OR DELETE ON workspace_events
        FOR EACH ROW EXECUTE FUNCTION workspace_events_append_only();

      CREATE TABLE claims (
        workspace_id       text PRIMARY KEY REFERENCES workspaces (id),
        owner_id           text NOT NULL,
        claim_build_id     text NOT NULL,
        claimed_at         timestamptz NOT NULL DEFAULT now(),
        build_completed_at timestamptz,
        acked_at           timestamptz
      );

      -- Hashes only (sha256 hex): a database dump must not hand out working tokens.
      CREATE TABLE agent_tokens (
        workspace_id text PRIMARY KEY,
        token_hash   text NOT NULL UNIQUE,
        created_at   timestamptz NOT NULL DEFAULT now(),
        rotated_at   timestamptz
      );
      CREATE TABLE api_tokens (
        hash       text PRIMARY KEY,
        role       text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        expires_at timestamptz
      );

      CREATE TABLE process_records (
        workspace_id text PRIMARY KEY,
        data         jsonb NOT NULL
      );
    `,
  },
  {
    version: 2,
    name: 'claims: the cycle that is the claim build',
    sql: `
      -- The workspace cycle number the claim's restart got (null until the supervisor answered it): the
      -- claim build is complete when a cycle numbered at least this one completes.
      ALTER TABLE claims ADD COLUMN claim_cycle integer;
      -- Restart recovery looks for claims whose build has not completed yet.
      CREATE INDEX claims_build_pending_idx ON claims (workspace_id) WHERE build_completed_at IS NULL;
    `,
  },
  {
    version: 3,
    name: 'workspaces: snapshot as json, free space for HOT updates',
    sql: `
      -- Every transition rewrites its workspace's row, a ~1 KB snapshot included. Only wsup reads the
      -- snapshot, and always whole: json keeps the checked text, where jsonb parsed, key-sorted and
      -- rebuilt it on every write (measured: most of the server's CPU per transition).
      -- fillfactor 50 leaves room on each page for the row's next version: the update stays on the page
      -- (HOT) instead of adding an entry to every index of the table per transition.
      ALTER TABLE workspaces SET (fillfactor = 50), ALTER COLUMN snapshot TYPE json USING snapshot::json;
    `,
  },
  {
    version: 4,
    name: 'cluster: shard leases with fencing epochs, members, the forwarding inbox',
    sql: `
      -- One row per shard. A replica owns a shard while owner = it and expires_at > now() (database time);
      -- every takeover increments epoch, and every write for the shard's workspaces checks it.
      CREATE TABLE shard_leases (
        shard      integer PRIMARY KEY,
        owner      text,
        epoch      bigint NOT NULL DEFAULT 0,
        expires_at timestamptz NOT NULL DEFAULT '-infinity'
      );
      CREATE TABLE cluster_members (
        replica      text PRIMARY KEY,
        heartbeat_at timestamptz NOT NULL,
        leaving      boolean NOT NULL DEFAULT false
      );
      -- Commands for a workspace another replica owns: the owner drains its shards' rows and answers each.
      CREATE TABLE cluster_inbox (
        id           bigserial PRIMARY KEY,
        shard        integer NOT NULL,
        workspace_id text NOT NULL,
        method       text NOT NULL,
        params       jsonb NOT NULL,
        origin       text NOT NULL,
        created_at   timestamptz NOT NULL DEFAULT now(),
        done_at      timestamptz,
        result       jsonb,
        error        jsonb
      );
      CREATE INDEX cluster_inbox_open_idx ON cluster_inbox (shard, id) WHERE done_at IS NULL;
    `,
  },
  {
    version: 5,
    name: 'commit check: a one-statement group commit that lost an upsert race fails whole',
    sql: `
      -- A group commit is one statement (update, insert, append events). When a workspace it meant to
      -- insert was inserted by another writer meanwhile, this fails it, so nothing of it is written and the
      -- store retries the batch statement by statement. WS001 is what the store looks for.
      CREATE FUNCTION wsup_commit_check(expected integer, written integer) RETURNS integer LANGUAGE plpgsql AS $$
      BEGIN
        IF written <> expected THEN
          RAISE EXCEPTION 'wrote % of % workspaces: another writer inserted the rest meanwhile', written, expected
            USING ERRCODE = 'WS001';
        END IF;
        RETURN written;
      END $$;
    `,
  },
  {
    version: 6,
    name: 'workspaces: snapshot as text',
    sql: `
      -- Only wsup reads the snapshot, whole, and it writes JSON.stringify output: json's check lexed ~1 KB
      -- per transition, a tenth of the server's CPU per group commit. The store parses it on load, and a
      -- row whose text is not JSON is reported as corrupt by id like any other unreadable row.
      ALTER TABLE workspaces ALTER COLUMN snapshot TYPE text USING snapshot::text;
    `,
  },
  {
    version: 7,
    name: 'prebuild pools',
    sql: `
      -- What each pool keeps (desired prebuilds of one spec) and how its template has been doing: the
      -- reconciler's failure count and backoff survive a restart. Times from the supervisor's clock are
      -- epoch ms, so a simulated clock's values come back exactly.
      CREATE TABLE pools (
        pool          text PRIMARY KEY,
        desired       integer NOT NULL CHECK (desired >= 0),
        template      text,
        params        jsonb,
        spec          jsonb NOT NULL,
        policy        jsonb,
        failures      integer NOT NULL DEFAULT 0,
        last_error    jsonb,
        backoff_until bigint,
        created_at    timestamptz NOT NULL DEFAULT now(),
        updated_at    timestamptz NOT NULL DEFAULT now()
      );
    `,
  },
  {
    version: 8,
    name: 'api tokens: one set per cluster, with labels and revocation',
    sql: `
      -- API tokens live here when the server runs as a cluster (wsup serve --cluster): every replica
      -- verifies against one set. Hashes only. A revoked token keeps its row (revoked_at set), so a
      -- list shows what was revoked and when. id names a token in lists and revocations.
      ALTER TABLE api_tokens ADD COLUMN id bigserial, ADD COLUMN label text, ADD COLUMN revoked_at timestamptz;
      ALTER TABLE api_tokens ADD CONSTRAINT api_tokens_id_key UNIQUE (id);
      -- At most one live default admin token: two replicas starting at once cannot both mint one.
      CREATE UNIQUE INDEX api_tokens_default_admin_idx ON api_tokens (label) WHERE label = 'default-admin' AND revoked_at IS NULL;
    `,
  },
  {
    version: 9,
    name: 'cluster members: the URL each replica serves clients on',
    sql: `
      -- Where a routing client reaches the replica (wsup serve --advertise-url, default from --host/--port);
      -- null until the replica's server listens. cluster.members reads it with the shards' owners.
      ALTER TABLE cluster_members ADD COLUMN url text;
    `,
  },
  {
    version: 10,
    name: 'workspaces: the hash that places each in a shard, indexed for the default shard count',
    sql: `
      -- shardOf (src/protocol/shards.ts) before its modulo: FNV-1a (32 bit) over the id's UTF-16 code units
      -- (a code point above U+FFFF counts as its two surrogates, as in JavaScript). The shard of a workspace
      -- in a cluster of n shards is shard_hash % n; a replica loads its shards by it instead of reading every
      -- workspace id. Stored as the hash, not the shard, so a cluster with another shard count reads it too.
      CREATE FUNCTION wsup_id_hash(id text) RETURNS bigint LANGUAGE plpgsql IMMUTABLE STRICT AS $$
      DECLARE
        h bigint := 2166136261;
        c text;
        u bigint;
      BEGIN
        FOREACH c IN ARRAY string_to_array(id, NULL) LOOP
          u := ascii(c);
          IF u > 65535 THEN
            h := ((h # (55296 + ((u - 65536) >> 10))) * 16777619) & 4294967295;
            h := ((h # (56320 + ((u - 65536) & 1023))) * 16777619) & 4294967295;
          ELSE
            h := ((h # u) * 16777619) & 4294967295;
          END IF;
        END LOOP;
        RETURN h;
      END $$;
      ALTER TABLE workspaces ADD COLUMN shard_hash bigint;
      UPDATE workspaces SET shard_hash = wsup_id_hash(id);
      -- Every writer's new row gets its hash (the store's commits, a prebuild's registration, a hand-written
      -- INSERT): a row without one would be loaded by no owner.
      CREATE FUNCTION wsup_fill_shard_hash() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        NEW.shard_hash := wsup_id_hash(NEW.id);
        RETURN NEW;
      END $$;
      CREATE TRIGGER workspaces_shard_hash BEFORE INSERT ON workspaces FOR EACH ROW EXECUTE FUNCTION wsup_fill_shard_hash();
      ALTER TABLE workspaces ALTER COLUMN shard_hash SET NOT NULL;
      -- The default 64 shards: a shard's load is an index range scan, in id order (its keyset pages).
      CREATE INDEX workspaces_shard64_idx ON workspaces ((shard_hash % 64), id);
    `,
  },
  {
    version: 11,
    name: 'claims: found by their build id',
    sql: `
      -- A pool claim sent again under the same request id has the same build id: the claim it already made
      -- is found by it, and no second prebuild is claimed — unique, so that a re-send racing the first
      -- attempt (still queued for another prebuild's owner) cannot win a second one either.
      CREATE UNIQUE INDEX claims_build_id_idx ON claims (claim_build_id);
    `,
  },
  {
    version: 12,
    name: 'open file-write bursts',
    sql: `
      -- A file-write burst that was acknowledged and has not restarted its workspace yet, under the label its
      -- restart will carry: when its owner dies first, the next owner finds it here and restarts it once.
      CREATE TABLE open_bursts (
        workspace_id text PRIMARY KEY,
        label        text NOT NULL,
        opened_at    timestamptz NOT NULL DEFAULT now()
      );
    `,
  },
  {
    version: 13,
    name: 'workspaces: next due time and state, indexed',
    sql: `
      -- A workspace's next due time (ms since the epoch: a policy deadline, a deferred restart, a backoff's
      -- end), so that one scheduler finds what is due without every workspace's actor in memory.
      ALTER TABLE workspaces ADD COLUMN next_due_at bigint;
      -- Snapshots of today's shape carry their due times; an older one is due at once (0), so the next
      -- start restores it and writes its true time.
      UPDATE workspaces w SET next_due_at = CASE
          WHEN (s.j -> 'context') ? 'timing' THEN LEAST(
            round((s.j #>> '{context,timing,dueAt}')::numeric)::bigint,
            round((s.j #>> '{context,deferred,until}')::numeric)::bigint,
            CASE WHEN w.state = 'failed' THEN round((s.j #>> '{context,backoffUntil}')::numeric)::bigint END)
          ELSE 0 END
        FROM (SELECT id, snapshot::jsonb AS j FROM workspaces WHERE destroyed_at IS NULL AND snapshot IS NOT NULL) s
        WHERE w.id = s.id;
      CREATE INDEX workspaces_next_due_idx ON workspaces (next_due_at, id) WHERE destroyed_at IS NULL AND next_due_at IS NOT NULL;
      -- Counts by state, the running ones, the ones with a provider call in flight: read at start, not every row.
      CREATE INDEX workspaces_live_state_idx ON workspaces (state, id) WHERE destroyed_at IS NULL;
      -- The server default policy the stored workspaces were last brought up to, per supervisor (a node, or
      -- one cluster shard): a start with another default restores them all once, so that the new default
      -- reaches every due time in the index.
      CREATE TABLE policy_marks (
        scope      text PRIMARY KEY,
        policy     jsonb NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT now()
      );
    `,
  },
];

export const LATEST_SCHEMA_VERSION = MIGRATIONS.reduce((max, m) => Math.max(max, m.version), 0);

export interface MigrationResult {
  from: number;
  to: number;
  applied: number[];
}

export function newerSchemaError(found: number, known: number): WsupError {
  return new WsupError(
    'WSUP_STORE',
    `database schema version ${found} is newer than this wsup (knows up to ${known}): upgrade wsup`,
  );
}

/** Bring the schema up to the latest version; refuse a database written by a newer wsup. */
export async function migrate(engine: SqlEngine, migrations: readonly Migration[] = MIGRATIONS): Promise<MigrationResult> {
  const ordered = [...migrations].sort((a, b) => a.version - b.version);
  const known = ordered.at(-1)?.version ?? 0;
  const applied: number[] = [];
  let from: number | null = null;
  for (;;) {
    const step = await engine.transaction(async (tx) => {
      await tx.query('SELECT pg_advisory_xact_lock($1, hashtext(current_schema()))', [MIGRATION_LOCK]);
      await tx.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (
        version    integer PRIMARY KEY,
        name       text NOT NULL,
        applied_at timestamptz NOT NULL DEFAULT now()
      )`);
      const { rows } = await tx.query<{ v: number | null }>('SELECT max(version) AS v FROM schema_migrations');
      const current = rows[0]?.v ?? 0;
      if (current > known) throw newerSchemaError(current, known);
      const next = ordered.find((m) => m.version > current);
      if (!next) return { current, done: true as const };
      try {
        await tx.exec(next.sql);
      } catch (err) {
        throw new WsupError('WSUP_STORE', `migration ${next.version} (${next.name}) failed on ${engine.description}: ${errorMessage(err)}`, { cause: err });
      }
      await tx.query('INSERT INTO schema_migrations (version, name) VALUES ($1, $2)', [next.version, next.name]);
      return { current, done: false as const, version: next.version };
    });
    from ??= step.current;
    if (step.done) return { from, to: step.current, applied };
    applied.push(step.version);
  }
}
