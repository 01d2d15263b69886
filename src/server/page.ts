/**
 * `GET /` and its assets: the built visualizer from `visualizer/dist` (Vite output: index.html plus hashed
 * files under `assets/`). Only regular files inside that directory are served, with a content type from a
 * fixed table; anything else is not ours (the caller answers 404). When the page has not been built, `/`
 * answers with a fallback page that says how to build it and still lists the workspaces live.
 *
 * @example
 * const site = createVisualizerSite(); // or createVisualizerSite('/path/to/dist')
 * if (!site(req, res, new URL(req.url!, 'http://x').pathname)) res.writeHead(404).end();
 */
import { createReadStream, existsSync, statSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { dirname, extname, join, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The nearest directory above `file` that holds a package.json: wsup's own root, wherever this module runs
 * from (src/server/ in a checkout, the dev bundle in .build/<hash>/, dist/src/server/ in an installed package).
 */
export function packageRoot(file: string): string | null {
  for (let dir = dirname(file); ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    if (dirname(dir) === dir) return null;
  }
}

/** Where `npm run build:visualizer` writes the page: `visualizer/dist` in the package root. */
export const DEFAULT_VISUALIZER_DIR = join(packageRoot(fileURLToPath(import.meta.url)) ?? '.', 'visualizer', 'dist');

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.woff2': 'font/woff2',
  '.wasm': 'application/wasm',
  '.txt': 'text/plain; charset=utf-8',
};

/** Serves one request if the path is the visualizer's; returns false when it is not (the caller 404s). */
export type VisualizerSite = (req: IncomingMessage, res: ServerResponse, pathname: string) => boolean;

/** Resolve a URL path to a file inside `root`, or null for anything that could escape it or is not plain. */
export function safeFile(root: string, pathname: string): string | null {
  let decoded: string;
  try {
    decoded = decodeURIComponent(pathname);
  } catch {
    return null;
  }
  if (decoded.includes('\0') || decoded.includes('\\')) return null;
  const parts = decoded.split('/').filter((p) => p !== '');
  if (parts.some((p) => p === '..' || p === '.' || p.startsWith('.'))) return null;
  const base = resolve(root);
  const file = resolve(base, ...parts);
  return file.startsWith(base + sep) ? file : null;
}

const isFile = (path: string): boolean => {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
};

/**
 * The visualizer as a request handler. `dir` defaults to `visualizer/dist` in the package root. The
 * directory is looked at on every request, so a rebuild is picked up without restarting the server.
 */
export function createVisualizerSite(dir: string = DEFAULT_VISUALIZER_DIR): VisualizerSite {
  return (req, res, pathname) => {
    const index = pathname === '/' || pathname === '/index.html';
    const file = safeFile(dir, index ? '/index.html' : pathname);
    const method = req.method ?? 'GET';
    if (file === null || !isFile(file)) {
      if (!index) return false;
      res.writeHead(200, { 'content-type': CONTENT_TYPES['.html']!, 'cache-control': 'no-store' }).end(method === 'HEAD' ? undefined : FALLBACK_PAGE);
      return true;
    }
    const type = CONTENT_TYPES[extname(file).toLowerCase()];
    if (type === undefined) return false;
    if (method !== 'GET' && method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain; charset=utf-8' }).end(`${method} not allowed on ${pathname}\n`);
      return true;
    }
    // Vite puts a content hash in every asset name, so assets never change; index.html always may.
    const immutable = pathname.startsWith('/assets/');
    res.writeHead(200, {
      'content-type': type,
      'cache-control': immutable ? 'public, max-age=31536000, immutable' : 'no-cache',
      'x-content-type-options': 'nosniff',
    });
    if (method === 'HEAD') {
      res.end();
      return true;
    }
    createReadStream(file)
      .on('error', (err) => res.destroy(err))
      .pipe(res);
    return true;
  };
}

/** `GET /` when `visualizer/dist` is missing: says how to build it, and proves the token reaches /control. */
export const FALLBACK_PAGE = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>wsup</title>
<style>body{font:14px system-ui;margin:2rem;max-width:60rem}pre{background:#f4f4f4;padding:1rem;overflow:auto}</style>
</head><body>
<h1>wsup</h1>
<p><strong>The visualizer is not built.</strong> Build it with <code>npm run build:visualizer</code>
(<code>npm install</code> and <code>npm ci</code> also build it), then reload this page.
Until then, the live workspaces straight from <code>/control</code>:</p>
<pre id="out">connecting…</pre>
<script type="module">
const token = new URLSearchParams(location.search).get('token') ?? '';
const url = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/control?token=' + encodeURIComponent(token);
const out = document.getElementById('out');
const ws = new WebSocket(url);
ws.onopen = () => ws.send(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'workspace.list', params: {} }));
ws.onmessage = (m) => { out.textContent = JSON.stringify(JSON.parse(m.data), null, 2); };
ws.onclose = (e) => { out.textContent += '\\nclosed: ' + e.code + ' ' + e.reason; };
</script>
</body></html>
`;
