/**
 * The package's public entry points: `exports` maps `wsup`, `wsup/client` and `wsup/agent` to compiled
 * modules in dist/ and their declarations, each the build of one module in src/, and those modules carry
 * what the README shows. The sources are imported here (dist/ exists only after a build);
 * test/package/consumer.test.ts resolves the same names from an installed tarball.
 */
import { existsSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

const ROOT = new URL('..', import.meta.url).pathname;
const pkg = JSON.parse(readFileSync(`${ROOT}package.json`, 'utf8')) as {
  exports: Record<string, string | Record<string, string>>;
  files: string[];
  bin: Record<string, string>;
};

/** Subpath → the src/ module it is built from. */
const ENTRIES = { '.': 'index', './client': 'client/index', './agent': 'agent/index' } as const;

describe('package exports', () => {
  it('maps each entry point to types first, then ESM, both built from its src/ module', () => {
    expect(Object.keys(pkg.exports)).toEqual([...Object.keys(ENTRIES), './package.json']);
    for (const [subpath, module] of Object.entries(ENTRIES)) {
      const target = pkg.exports[subpath];
      expect(target, subpath).toEqual({ types: `./dist/src/${module}.d.ts`, import: `./dist/src/${module}.js` });
      expect(Object.keys(target as object)[0], `${subpath}: TypeScript takes the first condition that matches`).toBe('types');
      expect(existsSync(`${ROOT}src/${module}.ts`), module).toBe(true);
    }
    expect(pkg.files).toEqual(expect.arrayContaining(['dist/', 'visualizer/dist/', 'bin/wsup.js']));
    expect(pkg.files.filter((f) => /^(test|\.ci|examples)\b|config|tsconfig/.test(f))).toEqual([]);
    expect(pkg.bin).toEqual({ wsup: 'bin/wsup.js' });
    expect(readFileSync(`${ROOT}bin/wsup.js`, 'utf8')).toContain("'../dist/src/cli/main.js'");
  });

  it('exposes the library, the client SDK and the agent SDK under their documented names', async () => {
    const lib = await import('../src/index.ts');
    const client = await import('../src/client/index.ts');
    const agent = await import('../src/agent/index.ts');
    for (const name of ['Supervisor', 'FakeProvider', 'WorkspaceStore', 'openDurableSupervisor', 'createServer', 'createBus', 'ClaimService', 'ClaimConflictError'] as const) {
      expect(typeof lib[name], name).toBe('function');
    }
    expect(typeof client.WsupClient).toBe('function');
    expect(typeof agent.waitForReinit).toBe('function');
    expect(agent.AGENT_PATH).toBe('/agent');
  });
});
