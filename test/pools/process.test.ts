/** Pools against the real local-process provider: real child processes, real health checks. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe } from 'vitest';
import { createProcessProvider, type ProcessProvider } from '../../src/providers/process.ts';
import { killAgents } from '../crash/harness.ts';
import { realPoolSuite } from './real.ts';

const dir = mkdtempSync(join(tmpdir(), 'wsup-pools-process-'));
const prefix = `pp${process.pid.toString(36)}${Math.random().toString(36).slice(2, 6)}`;
afterAll(() => {
  killAgents(prefix); // anything a failed assertion left running
  rmSync(dir, { recursive: true, force: true });
});

describe('pools on the local-process provider', () => {
  realPoolSuite({
    prefix,
    provider: () => createProcessProvider({ dataDir: dir, stopGraceMs: 1_000 }),
    good: {},
    // Exits before it could answer its health check.
    bad: { command: [process.execPath, '-e', 'process.exit(3)'] },
    resources: async (p) => (await (p as ProcessProvider).list()).filter((r) => r.status === 'running').map((r) => r.id),
  });
});
