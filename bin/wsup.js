#!/usr/bin/env node
// `wsup`, the package's command: runs the compiled CLI in dist/, which `npm pack` builds. Nothing is built,
// transpiled or written next to it at run time, so it runs from a read-only install. In a checkout, where
// dist/ is missing or older than src/, `npm start` runs the sources (scripts/wsup-dev.js).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const main = new URL('../dist/src/cli/main.js', import.meta.url);
if (!existsSync(fileURLToPath(main))) {
  process.stderr.write(`wsup: ${fileURLToPath(main)} is missing: this copy is not built (npm run build:lib), or run the sources with npm start\n`);
  process.exit(1);
}
await import(main.href);
