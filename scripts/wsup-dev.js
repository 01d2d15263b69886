#!/usr/bin/env node
// The repo's own launcher behind `npm start` and the CLI tests: runs the TypeScript CLI from src/ with no
// build step to remember. It is not shipped; the installed package's bin (bin/wsup.js) runs the compiled
// dist/ that `npm pack` builds.
//
// src/ is bundled by esbuild into .build/<hash>/ (code-split, so the Docker, AWS and pg clients still load
// only when used) the first time and again whenever a source file changes; Node then loads plain JS. Going
// through tsx's loader hooks instead costs every module a round trip to the hooks thread: ~1 s of a warm
// `npm start` on a 2-core machine, and an incremental `tsc` of an unchanged tree takes ~4 s. <hash> names the
// sources' paths, sizes and mtimes, and a build is renamed into place whole, so concurrent launches (two
// `wsup ensure` at once) never read a half-written build. If esbuild cannot run, the CLI runs through tsx.
import { mkdirSync, readdirSync, renameSync, rmSync, statSync, existsSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const ENTRY = 'src/cli/main.ts';

/** Every source the bundle is made of (ours, not node_modules), as "path size mtime" lines. */
function fingerprint() {
  const h = createHash('sha256');
  const walk = (rel) => {
    for (const e of readdirSync(join(root, rel), { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const p = `${rel}/${e.name}`;
      if (e.isDirectory()) walk(p);
      else if (/\.(ts|js|json)$/.test(e.name)) {
        const s = statSync(join(root, p));
        h.update(`${p} ${s.size} ${s.mtimeMs}\n`);
      }
    }
  };
  for (const dir of ['src', 'machines']) walk(dir);
  for (const f of ['package.json', 'tsconfig.json']) {
    const s = statSync(join(root, f), { throwIfNoEntry: false });
    if (s) h.update(`${f} ${s.size} ${s.mtimeMs}\n`);
  }
  return h.digest('hex').slice(0, 16);
}

async function built() {
  const dir = join(root, '.build', fingerprint());
  const main = join(dir, 'main.js');
  if (existsSync(main)) return main;
  const { build } = await import('esbuild');
  const tmp = join(root, '.build', `tmp-${process.pid}-${Date.now()}`);
  mkdirSync(tmp, { recursive: true });
  try {
    await build({
      entryPoints: { main: join(root, ENTRY) },
      bundle: true,
      splitting: true,
      format: 'esm',
      platform: 'node',
      target: 'node20',
      packages: 'external',
      sourcemap: true,
      outdir: tmp,
      logLevel: 'silent',
    });
    try {
      renameSync(tmp, dir);
    } catch (err) {
      if (!existsSync(main)) throw err; // a concurrent launch put the same build in place first: use it
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  prune(dir);
  return main;
}

/** Builds of sources that changed more than a day ago (a running server may still load chunks from a recent one). */
function prune(keep) {
  const base = join(root, '.build');
  for (const name of readdirSync(base)) {
    const p = join(base, name);
    if (p === keep) continue;
    try {
      if (Date.now() - statSync(p).mtimeMs > 86_400_000) rmSync(p, { recursive: true, force: true });
    } catch {
      // another launch pruned it
    }
  }
}

let main = null;
try {
  main = await built();
} catch (err) {
  if (process.env.WSUP_DEBUG) process.stderr.write(`wsup: bundling failed, running through tsx: ${err?.message ?? err}\n`);
}
if (main) {
  process.setSourceMapsEnabled(true);
  await import(pathToFileURL(main).href);
} else {
  const { register } = await import('tsx/esm/api');
  register();
  await import('../src/cli/main.ts');
}
