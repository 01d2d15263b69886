/**
 * A damaged PGlite store fails `wsup serve` at start, naming the data dir, the failing check and the
 * recovery step, instead of starting ready and failing requests.
 */
import { mkdtempSync, rmSync, truncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { WorkspaceStore } from '../../src/store/index.ts';
import { runCli } from './run-cli.ts';

const root = mkdtempSync(join(tmpdir(), 'wsup-corrupt-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('wsup serve on a damaged store', () => {
  it('refuses to start when the events table file is truncated', async () => {
    const dataDir = mkdtempSync(join(root, 'data-'));
    const pglite = join(dataDir, 'pglite');
    const store = await WorkspaceStore.open({ dataDir: pglite });
    const at = Date.now();
    await store.commit({ events: Array.from({ length: 500 }, (_, i) => ({ workspaceId: `ws-${i % 5}`, at, kind: 'transition', reason: 'x'.repeat(100) })) });
    const { rows } = await store.engine.query<{ path: string }>(`SELECT pg_relation_filepath('workspace_events') AS path`);
    await store.close();
    truncateSync(join(pglite, rows[0]!.path), 0);

    const r = await runCli(['serve', '--port', '0', '--data-dir', dataDir], { DATABASE_URL: '' });
    expect(r.stdout).not.toContain('ready on');
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(pglite);
    expect(r.stderr).toContain('table workspace_events cannot be read');
    expect(r.stderr).toContain('move it away to start with an empty store');
  }, 90_000);

  it('refuses to start when PGlite cannot open the data dir at all', async () => {
    const dataDir = mkdtempSync(join(root, 'data-'));
    const pglite = join(dataDir, 'pglite');
    await (await WorkspaceStore.open({ dataDir: pglite })).close();
    truncateSync(join(pglite, 'global', 'pg_control'), 100);

    const r = await runCli(['serve', '--port', '0', '--data-dir', dataDir], { DATABASE_URL: '' });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`PGlite data dir ${pglite} cannot be opened`);
    expect(r.stderr).toContain('move it away to start with an empty store');
  }, 90_000);
});
