/**
 * scripts/wsup-dev.js, the repo's launcher behind `npm start`: it bundles src/ into .build/<hash>/ and runs
 * that. Tested on a scratch tree (a copy of the launcher, a two-line src/cli/main.ts, node_modules linked)
 * so it can edit sources freely: an edit must rebuild, an unchanged tree must not, and launches racing on an
 * empty .build/ must all run the same complete build.
 */
import { execFile } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const repo = new URL('../..', import.meta.url).pathname;
const roots: string[] = [];

function scratch(): string {
  const root = mkdtempSync(join(tmpdir(), 'wsup-launcher-'));
  roots.push(root);
  mkdirSync(join(root, 'scripts'));
  mkdirSync(join(root, 'src/cli'), { recursive: true });
  mkdirSync(join(root, 'machines'));
  copyFileSync(join(repo, 'scripts/wsup-dev.js'), join(root, 'scripts/wsup-dev.js'));
  symlinkSync(join(repo, 'node_modules'), join(root, 'node_modules'));
  writeFileSync(join(root, 'package.json'), JSON.stringify({ type: 'module' }));
  return root;
}

const main = (root: string, text: string) =>
  writeFileSync(join(root, 'src/cli/main.ts'), `import { greeting } from './greeting.ts';\nconst n: number = 1;\nconsole.log(greeting(${JSON.stringify(text)}), n);\n`);
const launch = async (root: string) => (await run(process.execPath, [join(root, 'scripts/wsup-dev.js')], { cwd: root, timeout: 30_000 })).stdout.trim();
const builds = (root: string) => readdirSync(join(root, '.build')).filter((d) => !d.startsWith('tmp-'));

afterEach(() => {
  for (const r of roots.splice(0)) rmSync(r, { recursive: true, force: true });
});

describe('scripts/wsup-dev.js', () => {
  it('runs the bundled TypeScript, reuses the build while nothing changes and rebuilds after an edit', async () => {
    const root = scratch();
    writeFileSync(join(root, 'src/cli/greeting.ts'), 'export const greeting = (s: string): string => `hello ${s}`;\n');
    main(root, 'one');
    expect(await launch(root)).toBe('hello one 1');
    expect(builds(root)).toHaveLength(1);
    expect(await launch(root)).toBe('hello one 1');
    expect(builds(root)).toHaveLength(1); // unchanged sources: the same build

    // An edit to an imported module (not only the entry) must be picked up.
    writeFileSync(join(root, 'src/cli/greeting.ts'), 'export const greeting = (s: string): string => `bye ${s}`;\n');
    expect(await launch(root)).toBe('bye one 1');
    expect(builds(root)).toHaveLength(2);
  });

  it('gives launches racing on an empty .build/ one complete build between them', async () => {
    const root = scratch();
    writeFileSync(join(root, 'src/cli/greeting.ts'), 'export const greeting = (s: string): string => `hi ${s}`;\n');
    main(root, 'race');
    const outs = await Promise.all(Array.from({ length: 6 }, () => launch(root)));
    expect(outs).toEqual(Array.from({ length: 6 }, () => 'hi race 1'));
    expect(builds(root)).toHaveLength(1);
    expect(readdirSync(join(root, '.build')).filter((d) => d.startsWith('tmp-'))).toEqual([]); // no leftovers
  });
});
