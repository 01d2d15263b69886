/**
 * Test helpers for the visualizer in a real browser: the built page (`visualizer/dist` when it is newer
 * than every source it is built from, else a fresh build into a temporary directory, so a stale build is
 * never what is tested) and Chromium (found by `chromiumPath` in test/helpers/require.ts) through
 * playwright-core.
 *
 * @example
 * const { dir, built } = await visualizerDist();
 * const browser = await launchChromium(chromiumPath()!);
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { build } from 'vite';

/** Flags that keep Chromium from reaching for the network this machine does not have. */
const ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

export function launchChromium(executablePath: string): Promise<Browser> {
  return chromium.launch({ executablePath, headless: true, args: ARGS });
}

const ROOT = join(import.meta.dirname, '../..');
/** What the page is built from: a change to any of these makes `visualizer/dist` stale. */
const SOURCES = ['visualizer/index.html', 'visualizer/vite.config.ts', 'visualizer/src', 'src/client', 'src/protocol', 'package-lock.json'];

function newestMtime(path: string): number {
  const st = statSync(path);
  if (!st.isDirectory()) return st.mtimeMs;
  return Math.max(st.mtimeMs, ...readdirSync(path).map((name) => newestMtime(join(path, name))));
}

/** The built page to serve: `visualizer/dist` if fresh (`npm ci` builds it), else a fresh temp build. */
export async function visualizerDist(): Promise<{ dir: string; built: boolean }> {
  const dist = join(ROOT, 'visualizer/dist');
  const index = join(dist, 'index.html');
  if (existsSync(index) && statSync(index).mtimeMs > Math.max(...SOURCES.map((s) => newestMtime(join(ROOT, s))))) return { dir: dist, built: false };
  return { dir: await buildVisualizer(), built: true };
}

/** `vite build` of visualizer/ into a fresh temp dir; returns the dir. */
export async function buildVisualizer(): Promise<string> {
  const outDir = await mkdtemp(join(tmpdir(), 'wsup-visualizer-'));
  await build({
    configFile: join(ROOT, 'visualizer/vite.config.ts'),
    logLevel: 'error',
    build: { outDir, emptyOutDir: true },
  });
  if (!existsSync(join(outDir, 'index.html'))) throw new Error(`vite build wrote no index.html into ${outDir}`);
  return outDir;
}
