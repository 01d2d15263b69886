/**
 * The local-process provider against real child processes. No component is needed, so nothing skips.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { defaultAgentCommand } from '../../src/providers/process-agent.ts';
import { createProcessProvider, isAlive, ProcessExitedError, type ProcessProvider, type ProcessProviderOptions } from '../../src/providers/process.ts';
import type { ProviderEvent } from '../../src/providers/types.ts';
import { describeProviderConformance } from './conformance.ts';

const root = mkdtempSync(join(tmpdir(), 'wsup-process-'));
const providers: ProcessProvider[] = [];
const foreignPids: number[] = [];
const never = () => new AbortController().signal;
const make = (opts: ProcessProviderOptions = {}): ProcessProvider => {
  const p = createProcessProvider({ dataDir: opts.dataDir ?? mkdtempSync(join(root, 'data-')), ...opts });
  providers.push(p);
  return p;
};

/** Pids of live processes whose environment says they are workspace `id`: the ground truth for "no duplicate". */
function processesOf(id: string): number[] {
  const pids: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      if (readFileSync(`/proc/${name}/environ`, 'utf8').split('\0').includes(`WSUP_WORKSPACE_ID=${id}`)) pids.push(Number(name));
    } catch {
      // exited while we looked, or not ours to read
    }
  }
  return pids.filter((pid) => isAlive({ pid, startTime: null }));
}

/** Waits on real processes, bounded. */
const POLL = { timeout: 10_000, interval: 25 };

afterAll(async () => {
  for (const p of providers) for (const r of await p.list()) await p.stop(r.id, never());
  for (const pid of foreignPids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  rmSync(root, { recursive: true, force: true });
}, 60_000);

describeProviderConformance('process', () => make(), {
  idPrefix: 'p',
  createForeign: async (id) => {
    // The same agent with the same workspace id, but started by someone else: no record, so not ours.
    const [file, ...args] = defaultAgentCommand() as [string, ...string[]];
    const child = spawn(file, args, { stdio: 'ignore', env: { ...process.env, WSUP_WORKSPACE_ID: id, WSUP_PORT: '0' } });
    foreignPids.push(child.pid!);
    return { cleanup: async () => void child.kill('SIGKILL') };
  },
});

describe('process provider', () => {
  describe('adoption: the supervisor dies while a workspace runs, and a new one comes up on the same data dir', () => {
    it('adopts the live process after an in-process owner is dropped without stopping', async () => {
      const dataDir = mkdtempSync(join(root, 'seed1-'));
      const a = make({ dataDir });
      const endpoint = await a.start({ id: 'seed1' }, never());
      const pid = (await a.inspect('seed1'))!.ref;
      const b = make({ dataDir }); // a is simply forgotten: no stop, no close
      expect(await b.start({ id: 'seed1' }, never())).toBe(endpoint);
      expect(b.spawned).toBe(0);
      expect(await b.list()).toEqual([expect.objectContaining({ id: 'seed1', status: 'running', ref: pid, endpoint })]);
      expect(processesOf('seed1')).toEqual([Number(pid)]);
    });

    it('adopts the live process after its owner is killed with SIGKILL', async () => {
      const dataDir = mkdtempSync(join(root, 'seed1k-'));
      const script = join(dataDir, 'owner.mts'); // .mts: ESM (top-level await) outside any package.json
      writeFileSync(script, [
        `import { createProcessProvider } from ${JSON.stringify(resolve('src/providers/process.ts'))};`,
        `const p = createProcessProvider({ dataDir: ${JSON.stringify(dataDir)} });`,
        `console.log(await p.start({ id: 'seed1k' }, new AbortController().signal));`,
        `setInterval(() => {}, 1000);`, // stay alive, like a running supervisor
      ].join('\n'));
      const owner = spawn(process.execPath, ['--import', 'tsx', script], { stdio: ['ignore', 'pipe', 'inherit'] });
      let out = '';
      owner.stdout.on('data', (c: Buffer) => (out += c.toString()));
      const endpoint = await vi.waitFor(
        () => {
          if (owner.exitCode !== null) throw new Error(`owner exited with ${owner.exitCode} before starting the workspace`);
          const printed = out.match(/http:\/\/\S+/)?.[0];
          if (printed === undefined) throw new Error(`the owner has not printed its endpoint yet: ${JSON.stringify(out)}`);
          return printed;
        },
        { ...POLL, timeout: 30_000 },
      );
      owner.kill('SIGKILL');
      await expect.poll(() => owner.signalCode ?? owner.exitCode, { ...POLL, message: 'the owner to die' }).not.toBeNull();
      const b = make({ dataDir });
      expect(await b.start({ id: 'seed1k' }, never())).toBe(endpoint);
      expect(b.spawned).toBe(0);
      expect(processesOf('seed1k')).toHaveLength(1);
    }, 60_000);
  });

  describe('pid reuse', () => {
    it('treats a recorded pid with another start time as gone and never signals it', async () => {
      const p = make();
      const endpoint = await p.start({ id: 'reuse' }, never());
      const rec = (await p.records.get('reuse'))!;
      // Point the record at a live process that is not ours (this test runner), as after a pid reuse.
      await p.records.put('reuse', { ...rec, pid: process.pid, startTime: '1' });
      expect((await p.inspect('reuse'))?.status).toBe('stopped');
      const again = await p.start({ id: 'reuse' }, never());
      expect(again).not.toBe(endpoint);
      expect(p.spawned).toBe(2);
      // The original still carries the record's marker in its environment, so the replacement tore it down.
      expect(isAlive({ pid: rec.pid, startTime: rec.startTime })).toBe(false);
    });
  });

  describe('stop', () => {
    it('kills a process that ignores SIGTERM once the grace period ends', async () => {
      const p = make({ stopGraceMs: 200 });
      const stubborn = [process.execPath, '-e', `process.on('SIGTERM', () => {}); require('node:http').createServer((q, s) => s.end('ok')).listen(Number(process.env.WSUP_PORT), '127.0.0.1');`];
      await p.start({ id: 'stubborn', command: stubborn }, never());
      const pid = Number((await p.inspect('stubborn'))!.ref);
      await p.stop('stubborn', never());
      expect(isAlive({ pid, startTime: null })).toBe(false);
      expect(await p.inspect('stubborn')).toBeNull();
    });
  });

  describe('start failures', () => {
    it('rejects with ProcessExitedError when the command exits at once, and leaves no record', async () => {
      const p = make();
      await expect(p.start({ id: 'bad', command: ['sh', '-c', 'echo broken >&2; exit 3'] }, never())).rejects.toBeInstanceOf(ProcessExitedError);
      expect(await p.inspect('bad')).toBeNull();
    });

    it('rejects with the abort reason while waiting for health, and leaves no process', async () => {
      const p = make();
      const ac = new AbortController();
      const started = p.start({ id: 'mute', command: ['sleep', '60'] }, ac.signal);
      await expect.poll(() => p.inspect('mute'), { ...POLL, message: 'the process to be recorded' }).not.toBeNull();
      const reason = new Error('caller gave up');
      ac.abort(reason);
      await expect(started).rejects.toBe(reason);
      expect(await p.inspect('mute')).toBeNull();
      await expect.poll(() => processesOf('mute'), { ...POLL, message: 'the process to be gone' }).toHaveLength(0);
    });
  });

  describe('watch', () => {
    it('reports a process killed out of band once, and not one the provider stopped', async () => {
      let tick: (() => void) | undefined;
      const p = make({ timers: { setInterval: (fn) => (tick = fn), clearInterval: () => (tick = undefined) } });
      const events: ProviderEvent[] = [];
      const unwatch = p.watch((e) => events.push(e));
      await p.start({ id: 'victim' }, never());
      await p.start({ id: 'calm' }, never());
      await p.stop('calm', never());
      const pid = Number((await p.inspect('victim'))!.ref);
      process.kill(pid, 'SIGKILL');
      await expect.poll(() => isAlive({ pid, startTime: null }), { ...POLL, message: 'the kill to land' }).toBe(false);
      // Each poll runs the provider's liveness check once, as its interval would.
      const seen = () => {
        tick!();
        return events;
      };
      await expect.poll(seen, { ...POLL, message: 'a drift event' }).not.toHaveLength(0);
      expect(events).toEqual([{ id: 'victim', alive: false, detail: expect.stringContaining(String(pid)) as string }]);
      unwatch();
      expect(tick).toBeUndefined();
    });
  });
});
