#!/usr/bin/env node
// `wsup` entry point: registers tsx's ESM loader, then runs the TypeScript CLI unchanged (no build step).
import { register } from 'tsx/esm/api';

register();
await import('../src/cli/main.ts');
