/**
 * The store contract: every engine must pass the same suite. Run by pglite.test.ts (always) and
 * postgres.test.ts (when DATABASE_URL is set).
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { WsupError } from '../../src/errors.ts';
import { shardOf } from '../../src/protocol/shards.ts';
import { migrate, LATEST_SCHEMA_VERSION, MIGRATIONS } from '../../src/store/migrations.ts';
import { WorkspaceStore, type StoreOptions } from '../../src/store/store.ts';
import type { WorkspaceWrite } from '../../src/store/types.ts';
import { counting, type StoreFixture } from './fixtures.ts';

export const snapshotOf = (id: string, lifecycle = 'idle') => ({
  status: 'active' as const,
  value: { lifecycle },
  context: { id, now: 0 },
  children: {},
});

export const ws = (id: string, extra: Partial<WorkspaceWrite> = {}): WorkspaceWrite => ({
  id,
  state: 'idle',
  desired: 'running',
  snapshot: snapshotOf(id, extra.state ?? 'idle'),
  ...extra,
});

export function describeStoreContract(engineName: string, makeFixture: () => Promise<StoreFixture>): void {
  describe(`store contract on ${engineName}`, () => {
    let fx: StoreFixture;
    const stores: WorkspaceStore[] = [];
    const open = async (opts: Omit<StoreOptions, 'engine'> = {}) => {
      const store = await WorkspaceStore.open({ ...opts, engine: await fx.engine() });
      stores.push(store);
      return store;
    };
    beforeEach(async () => {
      fx = await makeFixture();
    });
    afterEach(async () => {
      await Promise.all(stores.splice(0).map((s) => s.close()));
      await fx.dispose();
    });

    describe('migrations', () => {
      it('apply once on a fresh database and are a no-op on every later open', async () => {
        const first = await open();
        expect(first.migration).toEqual({ from: 0, to: LATEST_SCHEMA_VERSION, applied: MIGRATIONS.map((m) => m.version) });
        const second = await open();
        expect(second.migration).toEqual({ from: LATEST_SCHEMA_VERSION, to: LATEST_SCHEMA_VERSION, applied: [] });
        expect((await migrate(first.engine)).applied).toEqual([]);
      });

      it('apply each migration exactly once when several processes open at the same moment', async () => {
        const opened = await Promise.all([open(), open(), open()]);
        expect(opened.flatMap((s) => s.migration.applied).sort((a, b) => a - b)).toEqual(MIGRATIONS.map((m) => m.version));
        const { rows } = await opened[0].engine.query('SELECT version FROM schema_migrations');
        expect(rows).toHaveLength(MIGRATIONS.length);
      });

      it('refuse a database written by a newer wsup, naming both versions', async () => {
        const store = await open();
        await store.engine.query("INSERT INTO schema_migrations (version, name) VALUES (999, 'from the future')");
        const err = await WorkspaceStore.open({ engine: store.engine }).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(WsupError);
        expect(err).toMatchObject({ code: 'WSUP_STORE' });
        expect((err as Error).message).toBe(
          `database schema version 999 is newer than this wsup (knows up to ${LATEST_SCHEMA_VERSION}): upgrade wsup`,
        );
      });
    });

    describe('workspace upserts', () => {
      it('insert at version 1, bump the version on every write, and keep fields a write leaves out', async () => {
        const store = await open();
        await store.commit({ workspaces: [ws('a', { spec: { image: 'x' }, prebuild: true, pool: 'p1' })] });
        expect(await store.getWorkspace('a')).toMatchObject({ version: 1, owner: 'system', spec: { image: 'x' }, prebuild: true, pool: 'p1' });
        await store.commit({ workspaces: [ws('a', { state: 'starting' })] });
        const a = await store.getWorkspace('a');
        expect(a).toMatchObject({ version: 2, state: 'starting', spec: { image: 'x' }, prebuild: true, pool: 'p1', destroyedAt: null });
        expect(a!.snapshot).toEqual(snapshotOf('a', 'starting'));
        expect(await store.getWorkspace('missing')).toBeNull();
      });

      it('load one shard by the stored hash: the same shards as shardOf, for any shard count', async () => {
        const store = await open();
        // ASCII, BMP beyond Latin-1, an astral code point (two UTF-16 units) and quotes.
        const ids = [...Array.from({ length: 150 }, (_, i) => `ws-${i}`), 'wörk-ß', '工作区-1', 'emoji-\u{1F680}-x', 'q"uote\'s'];
        await store.commit({ workspaces: ids.map((id) => ws(id)) });
        for (const count of [64, 7, 1]) {
          const sql = await store.engine.query<{ id: string; h: string }>('SELECT id, shard_hash::text AS h FROM workspaces');
          for (const r of sql.rows) expect(Number(r.h) % count, `${r.id} in ${count} shards`).toBe(shardOf(r.id, count));
          const of = count === 1 ? [0] : [0, 3];
          const loaded = (await store.loadWorkspaces({ shards: { count, of } })).workspaces.map((w) => w.id);
          expect([...loaded].sort()).toEqual(ids.filter((id) => of.includes(shardOf(id, count))).sort());
        }
        await expect(store.loadWorkspaces({ shards: { count: 64, of: [64] } })).rejects.toMatchObject({ code: 'WSUP_INVALID_ARGUMENT' });
        await expect(store.loadWorkspaces({ shards: { count: 0, of: [] } })).rejects.toMatchObject({ code: 'WSUP_INVALID_ARGUMENT' });
      });

      it('stamp destroyed workspaces and leave them out of a default load', async () => {
        const store = await open();
        await store.commit({ workspaces: [ws('a'), ws('b')] });
        await store.commit({ workspaces: [ws('b', { state: 'destroyed', desired: 'destroyed' })] });
        expect((await store.loadWorkspaces()).workspaces.map((w) => w.id)).toEqual(['a']);
        const all = await store.loadWorkspaces({ includeDestroyed: true });
        expect(typeof all.workspaces.find((w) => w.id === 'b')?.destroyedAt).toBe('number');
      });

      it('reject a write that cannot be stored without touching anyone else', async () => {
        const store = await open();
        const bad = store.commit({ workspaces: [ws('a', { state: 'exploded' as never })] });
        const good = store.commit({ workspaces: [ws('b')] });
        await expect(bad).rejects.toMatchObject({ code: 'WSUP_INVALID_ARGUMENT', workspaceId: 'a' });
        await expect(good).resolves.toBeUndefined();
      });
    });

    describe('group commit', () => {
      it('carries many concurrent commits in few transactions and resolves each only after COMMIT', async () => {
        const engine = counting(await fx.engine());
        const store = await WorkspaceStore.open({ engine });
        stores.push(store);
        const before = engine.counts.transactions;
        const seen: number[] = [];
        await Promise.all(
          Array.from({ length: 100 }, (_, i) =>
            store
              .commit({ workspaces: [ws(`w${i}`)], events: [{ workspaceId: `w${i}`, at: 1_000 + i, kind: 'created' }] })
              .then(() => seen.push(engine.counts.committed)),
          ),
        );
        const used = engine.counts.transactions - before;
        expect(used).toBeLessThanOrEqual(2);
        expect(store.stats).toMatchObject({ writes: 100, transactions: used, failed: 0 });
        expect(seen.every((committed) => committed > before)).toBe(true);
        expect((await store.loadWorkspaces()).workspaces).toHaveLength(100);
      });

      it('coalesces upserts of one workspace to the last and keeps every event in order', async () => {
        const store = await open();
        await Promise.all(
          ['idle', 'starting', 'running'].map((state, i) =>
            store.commit({
              workspaces: [ws('a', { state: state as WorkspaceWrite['state'] })],
              events: [{ workspaceId: 'a', at: 1_000 + i, kind: 'transition', stateTo: state }],
            }),
          ),
        );
        expect(store.stats.transactions).toBe(1);
        expect(await store.getWorkspace('a')).toMatchObject({ state: 'running', version: 1 });
        expect((await store.events('a')).map((e) => e.stateTo)).toEqual(['idle', 'starting', 'running']);
      });

      it('without group commit uses one transaction per commit', async () => {
        const store = await open({ groupCommit: false });
        await Promise.all(Array.from({ length: 10 }, (_, i) => store.commit({ workspaces: [ws(`w${i}`)] })));
        expect(store.stats).toMatchObject({ writes: 10, transactions: 10 });
      });

      it('rejects every caller of a failing batch and loses nothing committed before it', async () => {
        const store = await open();
        await store.commit({ workspaces: [ws('kept')], events: [{ workspaceId: 'kept', at: 1, kind: 'created' }] });
        // A real database failure mid-transaction, on either engine: a trigger that rejects one id.
        await store.engine.exec(`
          CREATE FUNCTION reject_poison() RETURNS trigger LANGUAGE plpgsql AS $$
          BEGIN IF NEW.id = 'poison' THEN RAISE EXCEPTION 'poisoned row'; END IF; RETURN NEW; END $$;
          CREATE TRIGGER reject_poison BEFORE INSERT OR UPDATE ON workspaces FOR EACH ROW EXECUTE FUNCTION reject_poison();`);
        const results = await Promise.allSettled([
          store.commit({ workspaces: [ws('kept', { state: 'starting' })] }),
          store.commit({ workspaces: [ws('poison')] }),
          store.commit({ workspaces: [ws('other')], events: [{ workspaceId: 'other', at: 2, kind: 'created' }] }),
        ]);
        expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected', 'rejected']);
        const reason = (results[0] as PromiseRejectedResult).reason as WsupError;
        expect(reason.code).toBe('WSUP_STORE');
        expect(reason.message).toMatch(/rolled back: .*poisoned row/);
        expect(await store.getWorkspace('kept')).toMatchObject({ state: 'idle', version: 1 });
        expect(await store.getWorkspace('other')).toBeNull();
        expect(await store.events('other')).toEqual([]);
        await store.commit({ workspaces: [ws('after')] });
        expect(await store.getWorkspace('after')).toMatchObject({ version: 1 });
      });

      // PGlite is one session: no other writer can slip in between. On PostgreSQL a batch is one statement
      // (update, insert, events) that must fail whole when another writer inserted one of its new rows.
      it.runIf(engineName === 'PostgreSQL')('writes a batch whose new workspace another writer inserted meanwhile once, whole', async () => {
        const store = await open();
        const other = await fx.engine();
        let inserted!: (pid: number) => void;
        let release!: () => void;
        const didInsert = new Promise<number>((resolve) => (inserted = resolve));
        const held = new Promise<void>((resolve) => (release = resolve));
        const writer = other.transaction(async (tx) => {
          await tx.query(`INSERT INTO workspaces (id, desired, state, owner) VALUES ('z', 'running', 'idle', 'elsewhere')`);
          inserted((await tx.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid);
          await held;
        });
        const blocker = await didInsert;
        const commit = store.commit({ workspaces: [ws('z', { state: 'starting' })], events: [{ workspaceId: 'z', at: 1, kind: 'transition' }] });
        // The batch's INSERT now waits for the other writer's uncommitted row; then let that one commit.
        const waiting = 'SELECT 1 FROM pg_stat_activity WHERE $1::int = ANY (pg_blocking_pids(pid))';
        await expect.poll(async () => (await other.query(waiting, [blocker])).rows, { timeout: 5_000, interval: 10 }).toHaveLength(1);
        release();
        await writer;
        await commit;
        expect(await store.getWorkspace('z')).toMatchObject({ state: 'starting', owner: 'elsewhere', version: 2 });
        expect((await store.events('z')).map((e) => e.kind)).toEqual(['transition']);
      });
    });

    describe('event log', () => {
      it('stores text and JSON with quotes, backslashes, braces and commas exactly', async () => {
        const odd = 'say "hi", {back}\\slash\\" NULL';
        const store = await open();
        await store.commit({
          workspaces: [ws(odd, { spec: { image: odd }, pool: odd })],
          events: [{ workspaceId: odd, at: 1_500, kind: odd, reason: odd, requesters: [odd], data: { odd } }],
        });
        expect(await store.getWorkspace(odd)).toMatchObject({ id: odd, spec: { image: odd }, pool: odd });
        expect(await store.events(odd)).toMatchObject([{ workspaceId: odd, at: 1_500, kind: odd, reason: odd, requesters: [odd], data: { odd } }]);
      });

      it('returns events oldest first, pages backwards by seq, and refuses to be rewritten', async () => {
        const store = await open();
        for (let batch = 0; batch < 3; batch++) {
          await Promise.all(
            [0, 1, 2].map((i) =>
              store.commit({
                events: [{ workspaceId: 'a', at: 10 * batch + i, kind: 'request', cycle: batch, requesters: [`r${batch}.${i}`], outcome: 'queued', durations: { totalMs: i } }],
              }),
            ),
          );
        }
        const all = await store.events('a', { limit: 100 });
        expect(all.map((e) => e.at)).toEqual([0, 1, 2, 10, 11, 12, 20, 21, 22]);
        expect(all.every((e, i) => i === 0 || e.seq > all[i - 1]!.seq)).toBe(true);
        expect(all[4]).toMatchObject({ kind: 'request', cycle: 1, requesters: ['r1.1'], outcome: 'queued', durations: { totalMs: 1 } });
        const last = await store.events('a', { limit: 4 });
        expect(last.map((e) => e.at)).toEqual([12, 20, 21, 22]);
        const before = await store.events('a', { limit: 4, beforeSeq: last[0]!.seq });
        expect(before.map((e) => e.at)).toEqual([1, 2, 10, 11]);
        await expect(store.engine.query('UPDATE workspace_events SET kind = $1', ['forged'])).rejects.toThrow(/append-only/);
        await expect(store.engine.query('DELETE FROM workspace_events')).rejects.toThrow(/append-only/);
      });
    });

    describe('claims', () => {
      it('let exactly one of many concurrent claimers win a prebuild', async () => {
        const store = await open();
        await store.commit({ workspaces: [ws('pb', { prebuild: true, pool: 'p' })] });
        const attempts = await Promise.all(
          Array.from({ length: 10 }, (_, i) => store.claims.claim({ workspaceId: 'pb', ownerId: `user${i}`, claimBuildId: `b${i}` })),
        );
        const winners = attempts.filter((a) => a.won);
        expect(winners).toHaveLength(1);
        const winner = winners[0]!.won ? winners[0]!.claim : null;
        expect(attempts.filter((a) => !a.won)).toEqual(Array(9).fill({ won: false, currentOwner: winner!.ownerId }));
        expect(await store.getWorkspace('pb')).toMatchObject({ owner: winner!.ownerId, version: 2 });
        expect(await store.claims.get('pb')).toEqual(winner);
      });

      it('hand out each prebuild of a pool once, and refuse regular workspaces', async () => {
        const store = await open();
        await store.commit({ workspaces: [1, 2, 3].map((i) => ws(`pb${i}`, { prebuild: true, pool: 'p' })).concat(ws('regular')) });
        const got = await Promise.all(Array.from({ length: 5 }, (_, i) => store.claims.claimFromPool({ pool: 'p', ownerId: `u${i}`, claimBuildId: `b${i}` })));
        expect(got.filter((c) => c === null)).toHaveLength(2);
        expect(new Set(got.filter((c) => c !== null).map((c) => c.workspaceId))).toEqual(new Set(['pb1', 'pb2', 'pb3']));
        expect(await store.claims.claim({ workspaceId: 'regular', ownerId: 'u', claimBuildId: 'b' })).toEqual({ won: false, currentOwner: null });
      });

      it('claim a build id once: a second prebuild claimed under it answers with the first claim and wins nothing', async () => {
        const store = await open();
        await store.commit({ workspaces: ['pb1', 'pb2', 'pb3'].map((id) => ws(id, { prebuild: true, pool: 'p' })) });
        const first = await store.claims.claim({ workspaceId: 'pb1', ownerId: 'ann', claimBuildId: 'req-1' });
        expect(first).toMatchObject({ won: true, claim: { workspaceId: 'pb1', claimBuildId: 'req-1' } });
        // The same request again, aimed at other prebuilds (by id, and through the pool).
        const again = await store.claims.claim({ workspaceId: 'pb2', ownerId: 'ann', claimBuildId: 'req-1' });
        expect(again).toMatchObject({ won: true, claim: { workspaceId: 'pb1', claimBuildId: 'req-1', already: true } });
        expect(await store.claims.claimFromPool({ pool: 'p', ownerId: 'ann', claimBuildId: 'req-1' })).toMatchObject({ workspaceId: 'pb1', already: true });
        expect((await store.getWorkspace('pb2'))?.owner).toBe('system');
        expect((await store.getWorkspace('pb3'))?.owner).toBe('system');
        expect(await store.claims.get('pb2')).toBeNull();
      });

      it('record build completion and the agent ack only for the current claim build', async () => {
        const store = await open();
        await store.commit({ workspaces: [ws('pb', { prebuild: true })] });
        await store.claims.claim({ workspaceId: 'pb', ownerId: 'alice', claimBuildId: 'b1' });
        expect(await store.claims.ack('pb', 'stale')).toBe(false);
        expect(await store.claims.markBuildCompleted('pb', 'b1')).toBe(true);
        expect(await store.claims.ack('pb', 'b1')).toBe(true);
        const claim = await store.claims.get('pb');
        expect(typeof claim?.buildCompletedAt).toBe('number');
        expect(typeof claim?.ackedAt).toBe('number');
      });
    });

    describe('corrupt rows', () => {
      it('report a bad snapshot by workspace id and still load every other workspace', async () => {
        const store = await open();
        await store.commit({ workspaces: [ws('a'), ws('b'), ws('c'), ws('d'), ws('e')] });
        await store.engine.query(`UPDATE workspaces SET snapshot = '"garbage"'::jsonb WHERE id = 'b'`);
        await store.engine.query(`UPDATE workspaces SET snapshot = '{"status":"active","value":"x","context":{"id":"zzz"}}'::jsonb WHERE id = 'd'`);
        await store.engine.query(`UPDATE workspaces SET snapshot = '{"status": "act' WHERE id = 'e'`); // text, not JSON
        const { workspaces, corrupt } = await store.loadWorkspaces();
        expect(workspaces.map((w) => w.id)).toEqual(['a', 'c']);
        expect(corrupt.map((c) => c.id)).toEqual(['b', 'd', 'e']);
        expect(corrupt[2]!.reason).toBe('stored snapshot is not JSON');
        expect(corrupt[0]!.error).toMatchObject({ code: 'WSUP_CORRUPT_STATE', workspaceId: 'b' });
        expect(corrupt[0]!.error.message).toMatch(/^workspace b: stored snapshot is unreadable \(/);
        expect(corrupt[1]!.reason).toBe('stored snapshot belongs to workspace zzz');
        await expect(store.getWorkspace('b')).rejects.toMatchObject({ code: 'WSUP_CORRUPT_STATE', workspaceId: 'b' });
      });
    });

    describe('tokens and process records', () => {
      it('store agent and api tokens as hashes only and find them by the token', async () => {
        const store = await open();
        await store.tokens.setAgentToken('a', 'secret-agent-token');
        expect(await store.tokens.agentTokenWorkspace('secret-agent-token')).toBe('a');
        const dump = JSON.stringify((await store.engine.query('SELECT * FROM agent_tokens')).rows);
        expect(dump).not.toContain('secret-agent-token');
        await store.tokens.setAgentToken('a', 'rotated');
        expect(await store.tokens.agentTokenWorkspace('secret-agent-token')).toBeNull();
        await store.tokens.addApiToken('api-1', 'admin');
        await store.tokens.addApiToken('api-old', 'viewer', Date.now() - 60_000);
        expect(await store.tokens.findApiToken('api-1')).toMatchObject({ role: 'admin', expiresAt: null });
        expect(await store.tokens.findApiToken('api-old')).toBeNull();
        expect(await store.tokens.revokeApiToken('api-1')).toBe(true);
        expect(await store.tokens.findApiToken('api-1')).toBeNull();
      });

      it('keep process records for the local-process provider', async () => {
        const store = await open();
        await store.processes.put('a', { pid: 42, port: 8080 });
        await store.processes.put('a', { pid: 43, port: 8080 });
        expect(await store.processes.get('a')).toEqual({ pid: 43, port: 8080 });
        expect(await store.processes.list()).toEqual([{ workspaceId: 'a', data: { pid: 43, port: 8080 } }]);
        await store.processes.delete('a');
        expect(await store.processes.get('a')).toBeNull();
      });
    });
  });
}
