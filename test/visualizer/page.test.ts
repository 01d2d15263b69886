import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_VISUALIZER_DIR, packageRoot, safeFile } from '../../src/server/page.ts';
import { startRig, TOKENS, type ServerRig } from '../server/rig.ts';

/** A raw GET (no URL normalisation, so `..` reaches the server as sent). */
function get(port: number, path: string, headers: Record<string, string> = {}, method = 'GET'): Promise<{ status: number; type: string; cache: string; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method, headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type'] ?? ''), cache: String(res.headers['cache-control'] ?? ''), body }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('where the server finds the built visualizer', () => {
  it('looks in visualizer/dist of the package root, at whatever depth the server module sits', () => {
    expect(DEFAULT_VISUALIZER_DIR).toBe(join(new URL('../..', import.meta.url).pathname, 'visualizer', 'dist'));
    const root = mkdtempSync(join(tmpdir(), 'wsup-root-'));
    try {
      writeFileSync(join(root, 'package.json'), '{}');
      mkdirSync(join(root, 'dist/src/server'), { recursive: true });
      expect(packageRoot(join(root, 'dist/src/server/page.js'))).toBe(root); // compiled, in an installed package
      expect(packageRoot(join(root, '.build/0123abcd/main.js'))).toBe(root); // the dev bundle
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});

describe('serving the built visualizer', () => {
  let dist: string;
  let rig: ServerRig;

  beforeAll(async () => {
    const base = mkdtempSync(join(tmpdir(), 'wsup-page-'));
    dist = join(base, 'dist');
    mkdirSync(join(dist, 'assets'), { recursive: true });
    writeFileSync(join(dist, 'index.html'), '<!doctype html><title>built page</title>');
    writeFileSync(join(dist, 'assets', 'index-abc123.js'), 'console.log("app")');
    writeFileSync(join(dist, 'assets', 'index-abc123.css'), 'body{}');
    writeFileSync(join(dist, 'assets', 'worker.wasm'), 'x');
    writeFileSync(join(dist, 'assets', 'notes.unknownext'), 'x');
    writeFileSync(join(base, 'secret.txt'), 'outside dist');
    rig = await startRig({ server: { visualizerDir: dist } });
  });

  afterAll(async () => {
    await rig.close();
    rmSync(join(dist, '..'), { recursive: true, force: true });
  });

  it('serves index.html at / and hashed assets with their content types', async () => {
    const index = await get(rig.port, '/?token=abc');
    expect(index).toMatchObject({ status: 200, type: 'text/html; charset=utf-8', cache: 'no-cache' });
    expect(index.body).toContain('built page');
    const js = await get(rig.port, '/assets/index-abc123.js');
    expect(js).toMatchObject({ status: 200, type: 'text/javascript; charset=utf-8', body: 'console.log("app")' });
    expect(js.cache).toContain('immutable');
    expect((await get(rig.port, '/assets/index-abc123.css')).type).toBe('text/css; charset=utf-8');
    expect((await get(rig.port, '/assets/worker.wasm')).type).toBe('application/wasm');
  });

  it('answers 404 for unknown files and types, and never serves outside the directory', async () => {
    expect((await get(rig.port, '/assets/missing.js')).status).toBe(404);
    expect((await get(rig.port, '/assets/notes.unknownext')).status).toBe(404);
    for (const path of ['/../secret.txt', '/assets/../../secret.txt', '/%2e%2e/secret.txt', '/assets/%2e%2e%2f%2e%2e%2fsecret.txt', '/..%5csecret.txt', '/%00index.html', '/%E0%A4%A']) {
      const res = await get(rig.port, path);
      expect(res.status, path).toBe(404);
      expect(res.body, path).not.toContain('outside dist');
    }
  });

  it('keeps its own routes and refuses methods other than GET and HEAD on files', async () => {
    expect((await get(rig.port, '/healthz')).body).toBe('ok\n');
    expect((await get(rig.port, '/assets/index-abc123.js', {}, 'HEAD')).status).toBe(200);
    expect((await get(rig.port, '/assets/index-abc123.js', {}, 'POST')).status).toBe(405);
  });

  it('rejects paths that could escape the root before touching the disk', () => {
    expect(safeFile('/srv/dist', '/assets/a.js')).toBe('/srv/dist/assets/a.js');
    expect(safeFile('/srv/dist', '/assets/../a.js')).toBeNull();
    expect(safeFile('/srv/dist', '/.env')).toBeNull();
    expect(safeFile('/srv/dist', '/%2e%2e/x')).toBeNull();
    expect(safeFile('/srv/dist', '/')).toBeNull();
  });
});

describe('the fallback page when the visualizer is not built', () => {
  it('says how to build it', async () => {
    const rig = await startRig({ server: { visualizerDir: join(tmpdir(), 'wsup-no-such-dist') } });
    try {
      const res = await get(rig.port, '/');
      expect(res.status).toBe(200);
      expect(res.body).toContain('npm run build:visualizer');
      expect((await get(rig.port, '/assets/index.js')).status).toBe(404);
    } finally {
      await rig.close();
    }
  });
});

describe('GET /whoami', () => {
  let rig: ServerRig;
  beforeAll(async () => {
    rig = await startRig();
  });
  afterAll(() => rig.close());

  it('tells each token its role, so the page shows controls only to roles allowed to use them', async () => {
    for (const role of ['admin', 'operator', 'viewer'] as const) {
      const res = await get(rig.port, '/whoami', { authorization: `Bearer ${TOKENS[role]}` });
      expect(res.status).toBe(200);
      expect(JSON.parse(res.body)).toEqual({ role });
    }
  });

  it('refuses a missing, unknown or expired token, and a foreign origin', async () => {
    expect((await get(rig.port, '/whoami')).status).toBe(401);
    expect((await get(rig.port, '/whoami', { authorization: 'Bearer nope' })).status).toBe(401);
    expect((await get(rig.port, '/whoami', { authorization: `Bearer ${TOKENS.expired}` })).status).toBe(401);
    expect((await get(rig.port, '/whoami', { authorization: `Bearer ${TOKENS.admin}`, origin: 'https://evil.example' })).status).toBe(403);
  });
});
