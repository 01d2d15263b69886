import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { openPglite } from '../../src/store/pglite-engine.ts';
import { WorkspaceStore } from '../../src/store/store.ts';
import { describeStoreContract, ws } from './contract.ts';
import { pgliteFixture, pgliteTemplate } from './fixtures.ts';

describeStoreContract('PGlite', pgliteFixture);

describe('store on PGlite with a data directory', () => {
  it('keeps workspaces and events across close and reopen', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'wsup-store-'));
    try {
      const first = await WorkspaceStore.open({ dataDir: dir });
      await first.commit({ workspaces: [ws('a', { spec: { image: 'x' } })], events: [{ workspaceId: 'a', at: 5, kind: 'created' }] });
      await first.close();
      await first.close(); // idempotent
      await expect(first.commit({ workspaces: [ws('b')] })).rejects.toMatchObject({ code: 'WSUP_STORE' });

      const second = await WorkspaceStore.open({ dataDir: dir });
      try {
        expect(second.migration.applied).toEqual([]);
        expect(await second.getWorkspace('a')).toMatchObject({ spec: { image: 'x' }, version: 1 });
        expect((await second.events('a')).map((e) => e.kind)).toEqual(['created']);
      } finally {
        await second.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('PGlite engine', () => {
  it('runs with 16 MB of shared buffers and keeps PGlite\'s own start parameters', async () => {
    const engine = await openPglite({ dataDir: 'memory://', loadDataDir: await pgliteTemplate() });
    try {
      const setting = async (name: string) => ((await engine.query<{ setting: string }>(`SELECT current_setting('${name}') AS setting`)).rows[0]?.setting);
      expect(await setting('shared_buffers')).toBe('16MB');
      expect(await setting('search_path')).toBe('public'); // one of PGlite's defaults, still passed
    } finally {
      await engine.close();
    }
  });
});
