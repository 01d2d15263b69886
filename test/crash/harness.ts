/**
 * Helpers of the crash test: the supervisor child process, the ground truth about agent processes
 * (/proc), and a seeded PRNG so a failing script can be replayed (timing still varies).
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { vi } from 'vitest';
import type { RecoveryReport } from '../../src/supervisor/durable.ts';
import type { ChildCommand, ChildReply } from './protocol.ts';

const CHILD = fileURLToPath(new URL('./child.ts', import.meta.url));

/** mulberry32: small, fast, good enough to pick commands and delays. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * One supervisor process. `send` resolves with the answer, or with `null` when the process died first
 * (the command was not acknowledged). Only `kill()` is an expected death; anything else is recorded.
 */
export class SupervisorChild {
  readonly ready: Promise<RecoveryReport>;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  readonly spawnedAt = Date.now();
  readyAt: number | null = null;
  killedAt: number | null = null;
  private readonly proc: ChildProcessWithoutNullStreams;
  private readonly waiting = new Map<number, (reply: ChildReply | null) => void>();
  private stderrTail: string[] = [];
  private dead = false;

  constructor(env: Record<string, string>) {
    this.proc = spawn(process.execPath, ['--import', 'tsx', CHILD], {
      cwd: fileURLToPath(new URL('../..', import.meta.url)),
      env: { ...process.env, ...env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    calibrate(this.proc.pid!, this.spawnedAt);
    this.proc.stdin.on('error', () => undefined); // EPIPE after a kill
    createInterface({ input: this.proc.stderr }).on('line', (l) => {
      this.stderrTail.push(l);
      if (this.stderrTail.length > 40) this.stderrTail.shift();
    });
    let onReady!: (r: RecoveryReport) => void;
    let onNotReady!: (e: Error) => void;
    this.ready = new Promise<RecoveryReport>((resolve, reject) => {
      onReady = resolve;
      onNotReady = reject;
    });
    this.ready.catch(() => undefined);
    createInterface({ input: this.proc.stdout }).on('line', (line) => {
      if (line.startsWith('READY ')) {
        this.readyAt = Date.now();
        onReady(JSON.parse(line.slice(6)) as RecoveryReport);
        return;
      }
      let reply: ChildReply;
      try {
        reply = JSON.parse(line) as ChildReply;
      } catch {
        this.stderrTail.push(`stdout: ${line}`);
        return;
      }
      const done = this.waiting.get(reply.seq);
      this.waiting.delete(reply.seq);
      done?.(reply);
    });
    this.exited = new Promise((resolve) => {
      this.proc.once('exit', (code, signal) => {
        this.dead = true;
        onNotReady(new Error(`supervisor child exited (code ${code}, signal ${signal}) before READY:\n${this.stderr()}`));
        for (const done of this.waiting.values()) done(null);
        this.waiting.clear();
        resolve({ code, signal });
      });
    });
  }

  get pid(): number {
    return this.proc.pid!;
  }

  get alive(): boolean {
    return !this.dead;
  }

  stderr(): string {
    return this.stderrTail.join('\n');
  }

  send(cmd: ChildCommand): Promise<ChildReply | null> {
    if (this.dead) return Promise.resolve(null);
    return new Promise((resolve) => {
      this.waiting.set(cmd.seq, resolve);
      this.proc.stdin.write(`${JSON.stringify(cmd)}\n`);
    });
  }

  /** Ask and insist on an answer (for probes after the script: the child must be up). */
  async ask<T>(cmd: ChildCommand): Promise<T> {
    const reply = await this.send(cmd);
    if (reply === null) throw new Error(`supervisor child died answering ${JSON.stringify(cmd)}:\n${this.stderr()}`);
    if (!reply.ok) throw Object.assign(new Error(reply.error.message), { code: reply.error.code });
    return reply.result as T;
  }

  /** SIGKILL, and wait until the process is gone. */
  async kill(): Promise<void> {
    if (!this.dead) {
      this.killedAt = Date.now();
      this.proc.kill('SIGKILL');
    }
    await this.exited;
  }
}

function parentOf(pid: string): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return null;
  }
}

function readCmdline(pid: string): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8');
  } catch {
    return '';
  }
}

/** `/proc/<pid>/stat` state is not a zombie. */
function running(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0] !== 'Z';
  } catch {
    return false;
  }
}

/**
 * Live processes whose environment carries `WSUP_WORKSPACE_ID=<id>` with `id` starting with `prefix`:
 * the agents of our workspaces, whoever started them. The ground truth for "duplicated or orphaned".
 */
export function agentProcesses(prefix: string): Map<string, number[]> {
  const found = new Map<string, number[]>();
  const marker = `WSUP_WORKSPACE_ID=${prefix}`;
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let environ: string;
    try {
      environ = readFileSync(`/proc/${name}/environ`, 'utf8');
    } catch {
      continue; // gone meanwhile, or not ours to read
    }
    const entry = environ.split('\0').find((e) => e.startsWith(marker));
    if (entry === undefined || !running(Number(name))) continue;
    const id = entry.slice('WSUP_WORKSPACE_ID='.length);
    found.set(id, [...(found.get(id) ?? []), Number(name)].sort((a, b) => a - b));
  }
  return found;
}

/** Kernel start time of a process, in clock ticks since boot (/proc/<pid>/stat field 22). */
function startTicks(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]);
  } catch {
    return null;
  }
}

/** Wall-clock ms of tick 0, calibrated on a child we spawned (btime in /proc/stat is whole seconds only). */
let tickZeroMs: number | null = null;

function calibrate(pid: number, spawnedAt: number): void {
  const ticks = tickZeroMs === null ? startTicks(pid) : null;
  if (ticks !== null) tickZeroMs = spawnedAt - ticks * 10; // USER_HZ is 100 on Linux
}

/** Wall-clock start of a process (±10 ms), for telling which supervisor life spawned an agent. */
export function processStartMs(pid: number): number | null {
  const ticks = startTicks(pid);
  return ticks === null || tickZeroMs === null ? null : tickZeroMs + ticks * 10;
}

/**
 * Poll /proc (only processes that appeared since the call) until an agent of ours is born; resolve with it,
 * or null after `ms`. Lets the test SIGKILL the supervisor right after it forked an agent.
 */
export async function nextAgent(prefix: string, ms: number, parentPid?: number): Promise<{ id: string; pid: number } | null> {
  const marker = `WSUP_WORKSPACE_ID=${prefix}`;
  const seen = new Set(readdirSync('/proc'));
  const look = (): { id: string; pid: number } => {
    for (const name of readdirSync('/proc')) {
      if (seen.has(name) || !/^\d+$/.test(name)) continue;
      // Quickest sign: a new child of the supervisor, caught between its fork and the agent's exec.
      if (parentPid !== undefined && parentOf(name) === parentPid) return { id: '(forking)', pid: Number(name) };
      let environ: string;
      try {
        environ = readFileSync(`/proc/${name}/environ`, 'utf8');
      } catch {
        continue; // may still be execing: look again next round
      }
      const entry = environ.split('\0').find((e) => e.startsWith(marker));
      // A fork of the supervisor shows the supervisor's environment until it execs the agent: look again.
      if (entry === undefined && readCmdline(name).includes(CHILD)) continue;
      seen.add(name);
      if (entry !== undefined) return { id: entry.slice('WSUP_WORKSPACE_ID='.length), pid: Number(name) };
    }
    throw new Error('no agent of ours born yet');
  };
  // The fork→record window is a few ms wide: poll every millisecond. Not being born in time is an answer.
  return vi.waitFor(look, { timeout: ms, interval: 1 }).catch(() => null);
}

/** SIGKILL every agent of ours (their process groups: the agent leads its own). */
export function killAgents(prefix: string): number {
  let n = 0;
  for (const pids of agentProcesses(prefix).values()) {
    for (const pid of pids) {
      for (const target of [-pid, pid]) {
        try {
          process.kill(target, 'SIGKILL');
          n++;
          break;
        } catch {
          // no such group: try the pid; gone already is fine
        }
      }
    }
  }
  return n;
}
