#!/usr/bin/env node
// `npm run check:package`: packs the package as `npm publish` would (prepack builds dist/ and the visualizer)
// and checks that tarball with publint (package.json fields against the files shipped) and
// @arethetypeswrong/cli (each entry point resolves to JavaScript and matching types). Fails on an error of
// either. attw runs with its esm-only profile: wsup ships ESM only (exports have no `require` condition and
// there is no CommonJS build), so node10 resolution and `require` from CommonJS are not supported by design
// and not reported; what is checked is how Node (node16/nodenext) and bundlers resolve `import`.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const bin = (name) => join(root, 'node_modules', '.bin', name);

function run(file, args, cwd = root) {
  const r = spawnSync(file, args, { cwd, stdio: 'inherit' });
  if (r.error) throw r.error;
  return r.status ?? 1;
}

const dir = mkdtempSync(join(tmpdir(), 'wsup-pack-'));
let failed = false;
try {
  // npm prints the lifecycle scripts' output on stdout too, so the tarball is found in its directory.
  if (run('npm', ['pack', '--silent', '--pack-destination', dir]) !== 0) throw new Error('npm pack failed');
  const tgz = readdirSync(dir).find((f) => f.endsWith('.tgz'));
  if (!tgz) throw new Error(`npm pack left no tarball in ${dir}`);
  const file = join(dir, tgz);
  process.stdout.write(`\n${tgz}: ${(statSync(file).size / 1024).toFixed(0)} kB\n`);
  if (run(bin('publint'), [file]) !== 0) failed = true;
  if (run(bin('attw'), [file, '--profile', 'esm-only']) !== 0) failed = true;
} finally {
  rmSync(dir, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
