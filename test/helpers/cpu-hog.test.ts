/**
 * The CPU hog really burns CPU, dies on dispose, and dies with its parent when nobody disposes it.
 */
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { afterEach, describe, expect, it } from 'vitest';
import { CpuHog } from './cpu-hog.ts';

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe('CpuHog', () => {
  let hog: CpuHog | null = null;
  afterEach(async () => {
    await hog?.dispose();
    hog = null;
  });

  it('spins one child per requested core until disposed', async () => {
    hog = await CpuHog.start(2);
    const pids = hog.pids();
    expect(pids).toHaveLength(2);
    const before = hog.cpuMs()!;
    // Both children burn CPU while the test waits (on a busy machine they still get some).
    await expect.poll(() => hog!.cpuMs()! - before, { timeout: 20_000, interval: 100 }).toBeGreaterThanOrEqual(200);
    await hog.dispose();
    expect(hog.pids()).toEqual([]);
    expect(pids.filter(alive)).toEqual([]);
  });

  it('refuses a count that is not a positive integer', async () => {
    await expect(CpuHog.start(0)).rejects.toThrow(/positive integer, got 0/);
  });

  it('its children exit when the parent is SIGKILLed without disposing', async () => {
    const parent = spawn(process.execPath, ['--import', 'tsx', '-e', `
      const { CpuHog } = await import(${JSON.stringify(new URL('./cpu-hog.ts', import.meta.url).href)});
      const hog = await CpuHog.start(1);
      console.log('PIDS ' + hog.pids().join(','));
    `], { stdio: ['ignore', 'pipe', 'inherit'] });
    const exited = new Promise<void>((r) => parent.once('exit', () => r()));
    const pids = await new Promise<number[]>((resolve) =>
      createInterface({ input: parent.stdout }).on('line', (l) => {
        const m = /^PIDS (.+)$/.exec(l);
        if (m) resolve(m[1]!.split(',').map(Number));
      }),
    );
    expect(pids.every(alive)).toBe(true);
    parent.kill('SIGKILL');
    await exited;
    await expect.poll(() => pids.filter(alive), { timeout: 20_000, interval: 100 }).toEqual([]);
  });
});
