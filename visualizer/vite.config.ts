/**
 * Vite config of the visualizer: `npm run build:visualizer` writes `visualizer/dist`, which the wsup
 * server serves at `/`. For development against a running `wsup serve` on :7070:
 * `npx vite --config visualizer/vite.config.ts` proxies /control and /whoami to it.
 */
import { defineConfig } from 'vite';

export default defineConfig({
  root: import.meta.dirname,
  base: './',
  logLevel: 'warn',
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    target: 'es2022',
    rollupOptions: {
      // zod's sources carry `@__PURE__` comments Rollup cannot place; harmless, and not ours to fix.
      onwarn(warning, warn) {
        if (warning.code === 'INVALID_ANNOTATION' && warning.id?.includes('node_modules')) return;
        warn(warning);
      },
    },
  },
  server: {
    proxy: {
      '/control': { target: 'ws://127.0.0.1:7070', ws: true },
      '/whoami': 'http://127.0.0.1:7070',
    },
  },
});
