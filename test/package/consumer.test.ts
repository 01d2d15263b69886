/**
 * The package as its users get it: `npm pack` (prepack builds dist/ and the visualizer), the tarball
 * installed from the registry's dependencies into scratch projects, then used the way the README says:
 *
 * - a plain JavaScript project runs the embedding example (derived from examples/embedded.ts: its import of
 *   the sources becomes `wsup`, its types are stripped) under plain `node`, with `/healthz`, the built
 *   visualizer at `/` and a `/control` call through `wsup/client`;
 * - a strict TypeScript project (`module: nodenext`, no `allowImportingTsExtensions`) typechecks the same
 *   example and a consumer of `wsup`, `wsup/client` and `wsup/agent` against the shipped declarations
 *   (skipLibCheck off, so the declarations themselves are checked under the consumer's settings);
 * - `wsup serve` from the installed bin reaches ready with its install dir read-only, run as an unprivileged
 *   user when the test runs as root (root ignores the mode bits), and leaves that dir exactly as it was.
 *
 * The pack runs on a copy of this tree, so its build never rewrites the visualizer/dist other suites serve.
 */
import { execFile, spawn } from 'node:child_process';
import { chmodSync, chownSync, cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { promisify } from 'node:util';
import ts from 'typescript';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const exec = promisify(execFile);
const REPO = new URL('../..', import.meta.url).pathname.replace(/\/$/, '');
const TSC = join(REPO, 'node_modules/typescript/bin/tsc');
/** Not part of a source tree: what the copy to pack from leaves out. */
const NOT_COPIED = new Set(['node_modules', '.git', 'dist', '.build', '.wsup', 'test-output']);
/** An unprivileged user to run the bin as when we are root. */
const NOBODY = 65534;
const isRoot = process.getuid?.() === 0;

/** The environment without the npm_* variables of the `npm test` we may run under (they would steer the inner npm). */
function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!/^npm_/i.test(k)) env[k] = v;
  delete env.DATABASE_URL;
  return { ...env, PATH: `${dirname(process.execPath)}:${process.env.PATH ?? ''}`, ...extra };
}

async function npm(cwd: string, args: string[]): Promise<string> {
  try {
    return (await exec('npm', args, { cwd, env: cleanEnv(), timeout: 400_000, maxBuffer: 64 << 20 })).stdout;
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string };
    throw new Error(`npm ${args.join(' ')} in ${cwd} failed:\n${e.stdout ?? ''}\n${e.stderr ?? ''}`, { cause: err });
  }
}

/** Every entry under `dir` with its size and mtime: what "nothing was written here" is checked against. */
function listing(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      const s = statSync(p);
      out.push(`${relative(dir, p)} ${e.isDirectory() ? 'dir' : s.size} ${s.mtimeMs}`);
      if (e.isDirectory()) walk(p);
    }
  };
  walk(dir);
  return out.sort();
}

/** `chmod -R a-w` (writable false) or `u+w` (true). */
function writableTree(path: string, writable: boolean) {
  const s = statSync(path);
  chmodSync(path, writable ? (s.mode & 0o7777) | 0o200 : s.mode & 0o7777 & ~0o222);
  if (s.isDirectory()) for (const name of readdirSync(path)) writableTree(join(path, name), writable);
}

const EXAMPLE_IMPORT = "from '../src/index.ts'";
/** examples/embedded.ts as a user of the package writes it: imports from `wsup`. */
function exampleForConsumers(): string {
  const source = readFileSync(join(REPO, 'examples/embedded.ts'), 'utf8');
  expect(source, 'the example imports the library from the sources').toContain(EXAMPLE_IMPORT);
  return source.replace(EXAMPLE_IMPORT, "from 'wsup'");
}

/** Runs the derived example, calls it over HTTP and /control, and prints what it saw as one JSON line. */
const DRIVER = `import WebSocket from 'ws';
import { WsupClient } from 'wsup/client';
import { embed } from './embedded.js';

const { app, token, close } = await embed(process.argv[2]);
const base = 'http://127.0.0.1:' + app.address().port;
const seen = {};
try {
  seen.app = await (await fetch(base + '/anything')).text();
  seen.healthz = (await fetch(base + '/healthz')).status;
  seen.page = await (await fetch(base + '/')).text();
  const asset = seen.page.match(/assets\\/[^"]+\\.js/)?.[0];
  const res = asset ? await fetch(base + '/' + asset) : null;
  seen.asset = res && { status: res.status, type: res.headers.get('content-type') };
  const client = new WsupClient({ url: base.replace('http', 'ws') + '/control', token, WebSocket, reconnect: false });
  try {
    seen.ensure = await client.call('workspace.ensure', { id: 'consumer-1' });
    seen.agent = (await fetch(seen.ensure.endpoint + '/healthz')).status;
    await client.call('workspace.destroy', { id: 'consumer-1' });
  } finally {
    client.close();
  }
} finally {
  await close();
}
console.log(JSON.stringify(seen));
`;

/** Uses every entry point; each @ts-expect-error fails the typecheck if the shipped types were missing or \`any\`. */
const CONSUMER_TS = `import { FakeProvider, Supervisor, createServer, type RestartResult, type WorkspaceView } from 'wsup';
import { WsupClient, WsupRpcError } from 'wsup/client';
import { AGENT_PATH, waitForReinit } from 'wsup/agent';

const sup = new Supervisor({ provider: new FakeProvider({ latencyMs: 1 }) });
const restarted: RestartResult = await sup.restart('ws-1', { source: 'file-write', reason: '1 file written' });
const outcome: 'started' | 'joined' | 'queued' | 'deferred' = restarted.outcome;
// @ts-expect-error an unknown restart source is refused by the shipped types
await sup.restart('ws-1', { source: 'no-such-source', reason: 'x' });
// @ts-expect-error a misspelt option is refused
new Supervisor({ provder: new FakeProvider() });
const views: WorkspaceView[] = [];
export const used = [outcome, views, createServer, WsupClient, WsupRpcError, waitForReinit, AGENT_PATH.length];
await sup.shutdown({ deadlineMs: 1000 });
`;
const DEEP_IMPORT_TS = `// @ts-expect-error only the entry points in \`exports\` resolve, not the files behind them
import type {} from 'wsup/dist/src/index.js';
`;

describe('the packed package, installed', () => {
  let work: string;
  let tarball: string;
  let jsProject: string;
  let tsProject: string;

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), 'wsup-consumer-'));
    chmodSync(work, 0o755); // the unprivileged run must reach the install
    const tree = join(work, 'tree');
    cpSync(REPO, tree, { recursive: true, filter: (src) => !(NOT_COPIED.has(src.slice(REPO.length + 1)) || src.endsWith('/visualizer/dist')) });
    symlinkSync(join(REPO, 'node_modules'), join(tree, 'node_modules'));
    await npm(tree, ['pack', '--silent', '--pack-destination', work]);
    tarball = join(work, readdirSync(work).find((f) => f.endsWith('.tgz'))!);

    jsProject = join(work, 'js');
    tsProject = join(work, 'ts');
    for (const dir of [jsProject, tsProject]) {
      mkdirSync(dir);
      writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: `consumer-${dir.slice(-2)}`, private: true, type: 'module' }));
    }
    const install = ['install', '--prefer-offline', '--no-audit', '--no-fund'];
    await Promise.all([npm(jsProject, [...install, tarball, 'ws']), npm(tsProject, [...install, tarball, '@types/node@^22'])]);
  }, 900_000);

  afterAll(() => {
    if (!work) return;
    writableTree(join(jsProject, 'node_modules/wsup'), true); // the read-only test took it away
    rmSync(work, { recursive: true, force: true });
  });

  it('ships the build, the types, the visualizer and the bin, and no tests, CI or configs', async () => {
    const entries = (await exec('tar', ['-tzf', tarball])).stdout.trim().split('\n').map((e) => e.replace(/^package\//, ''));
    const top = new Set(entries.map((e) => e.split('/')[0]));
    expect([...top].sort()).toEqual(['README.md', 'bin', 'dist', 'machines', 'package.json', 'src', 'visualizer']);
    expect(entries.filter((e) => e.startsWith('visualizer/') && !e.startsWith('visualizer/dist/'))).toEqual([]);
    expect(entries.filter((e) => e.startsWith('bin/'))).toEqual(['bin/wsup.js']);
    for (const f of ['dist/src/index.js', 'dist/src/index.d.ts', 'dist/src/index.d.ts.map', 'dist/src/client/index.d.ts', 'dist/src/agent/index.js', 'dist/machines/workspace.machine.js', 'visualizer/dist/index.html']) {
      expect(entries, f).toContain(f);
    }
    expect(entries.filter((e) => /\.test\.ts$|tsconfig|eslint|vite\.config|\.ci\//.test(e))).toEqual([]);
  });

  it('runs the embedding example under plain node: its routes, /healthz, the visualizer and /control through wsup/client', async () => {
    const { outputText } = ts.transpileModule(exampleForConsumers(), { compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022, verbatimModuleSyntax: true } });
    writeFileSync(join(jsProject, 'embedded.js'), outputText);
    writeFileSync(join(jsProject, 'driver.js'), DRIVER);
    const dataDir = mkdtempSync(join(work, 'embed-'));
    const { stdout } = await exec(process.execPath, ['driver.js', dataDir], { cwd: jsProject, env: cleanEnv(), timeout: 120_000 });
    const seen = JSON.parse(stdout.trim().split('\n').at(-1)!) as Record<string, unknown>;
    expect(seen.app).toBe('my app\n');
    expect(seen.healthz).toBe(200);
    expect(seen.page).not.toContain('The visualizer is not built'); // the built page from the installed package
    expect(seen.asset).toEqual({ status: 200, type: 'text/javascript; charset=utf-8' });
    expect(seen.ensure).toMatchObject({ id: 'consumer-1', started: true, state: 'running' });
    expect(seen.agent).toBe(200);
  }, 180_000);

  it('typechecks a strict nodenext consumer of wsup, wsup/client and wsup/agent, and the example, against the shipped types', async () => {
    writeFileSync(join(tsProject, 'consumer.ts'), CONSUMER_TS);
    writeFileSync(join(tsProject, 'deep-import.ts'), DEEP_IMPORT_TS);
    writeFileSync(join(tsProject, 'embedded.ts'), exampleForConsumers());
    writeFileSync(
      join(tsProject, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: { module: 'nodenext', moduleResolution: 'nodenext', target: 'es2022', strict: true, noEmit: true, skipLibCheck: false, types: ['node'] },
        files: ['consumer.ts', 'deep-import.ts', 'embedded.ts'],
      }),
    );
    const r = await exec(process.execPath, [TSC, '-p', tsProject], { cwd: tsProject, timeout: 180_000 }).then(
      (ok) => ({ code: 0, out: ok.stdout }),
      (err: { code?: number; stdout?: string }) => ({ code: err.code ?? 1, out: err.stdout ?? '' }),
    );
    expect(r.out).toBe('');
    expect(r.code).toBe(0);
  }, 240_000);

  it('starts `wsup serve` from the installed bin with its install dir read-only, writing nothing there', async () => {
    const installed = join(jsProject, 'node_modules/wsup');
    writableTree(installed, false);
    const before = listing(installed);
    const dataDir = mkdtempSync(join(work, 'serve-'));
    if (isRoot) chownSync(dataDir, NOBODY, NOBODY);
    const child = spawn(join(jsProject, 'node_modules/.bin/wsup'), ['serve', '--port', '0', '--data-dir', dataDir], {
      cwd: dataDir,
      env: cleanEnv({ HOME: dataDir }),
      stdio: ['ignore', 'pipe', 'pipe'],
      ...(isRoot ? { uid: NOBODY, gid: NOBODY } : {}),
    });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
    // The ready line, or the reason there will be none: the process exiting first.
    const ready = new Promise<string>((resolve, reject) => {
      let out = '';
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        const m = /wsup ready on (http:\/\/\S+)/.exec(out);
        if (m) resolve(m[1]!);
      });
      void exited.then((code) => reject(new Error(`wsup serve exited ${code} before ready:\n${err}`)));
    });
    try {
      const url = await ready;
      expect((await fetch(`${url}/healthz`)).status).toBe(200);
      expect(await (await fetch(`${url}/`)).text()).not.toContain('The visualizer is not built');
    } finally {
      child.kill('SIGINT');
    }
    expect(await exited).toBe(0);
    expect(listing(installed)).toEqual(before);
  }, 120_000);
});
