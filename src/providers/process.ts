/**
 * Local-process provider, the embedded default: each workspace is a detached child process (by default
 * the built-in HTTP agent from process-agent.ts) on a free loopback port; the endpoint is its URL.
 *
 * @example
 * const local = createProcessProvider({ dataDir: '.wsup' });
 * const endpoint = await local.start({ id: 'ws1' }, signal); // 'http://127.0.0.1:41234'
 *
 * Every child is recorded (pid, kernel start time, nonce, port, command) through `ProcessRecords` before
 * its health check, so a supervisor that comes back after kill -9 finds the record, sees the same process
 * alive and adopts it instead of spawning a duplicate. The start time and the nonce in the health answer
 * defeat pid and port reuse. Stop tears down every process of the workspace (see `workspaceProcesses`).
 *
 * Modules: records in process-records.ts, /proc in proc.ts, the health probe in health.ts.
 */
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import net from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { assertWorkspaceId, ProviderTimeoutError, WsupError } from '../errors.ts';
import { healthPid, probeHealth } from './health.ts';
import { defaultAgentCommand } from './process-agent.ts';
import { JsonFileProcessRecords, type ProcessRecord, type ProcessRecords } from './process-records.ts';
import { findByEnv, isAlive, processStartTime, signalAll, workspaceProcesses, type ProcessIdentity } from './proc.ts';
import type { Endpoint, Provider, ProviderEvent, ProviderResource, WorkspaceSpec } from './types.ts';

/** The process fields of a `WorkspaceSpec`: checked at the edge, unknown fields ignored. */
const specSchema = z.object({
  command: z.array(z.string()).min(1).optional(),
  env: z.record(z.string(), z.string()).optional(),
  agentToken: z.string().optional(),
});

export interface ProcessProviderOptions {
  /** Root for records (`<dataDir>/processes/<id>.json`) and logs (`<id>.log`). Default `.wsup`. */
  dataDir?: string;
  /** Where records live; default the JSON files above. The supervisor may pass a store-backed one. */
  records?: ProcessRecords;
  /** argv of every workspace unless its spec has `command`. Default: the built-in agent. */
  command?: string[];
  /** Loopback address the child listens on. Default 127.0.0.1. */
  host?: string;
  /** How long start waits for `GET /healthz`. Default 10 000 ms. */
  healthTimeoutMs?: number;
  /** Between SIGTERM and SIGKILL of the process group on stop. Default 5 000 ms. */
  stopGraceMs?: number;
  /**
   * Pass the supervisor's whole environment to workspaces. Default false: only PATH, HOME, locale, TZ and
   * TMPDIR, so credentials (DATABASE_URL, AWS_*) do not leak into every workspace.
   */
  inheritEnv?: boolean;
  /** Liveness poll of `watch`, and the timer functions it uses (tests pass their own). */
  watchIntervalMs?: number;
  timers?: { setInterval(fn: () => void, ms: number): unknown; clearInterval(handle: unknown): void };
}

/** The workspace's process exited before it answered its health check (bad command, port taken...). */
export class ProcessExitedError extends WsupError {
  constructor(id: string, detail: string) {
    super('WSUP_INVALID_ARGUMENT', `workspace ${id}: process exited before its health check answered (${detail}); check the command and its log`, { workspaceId: id });
  }
}

export class ProcessProvider implements Provider {
  readonly kind = 'process';
  readonly records: ProcessRecords;
  /** Children spawned by this instance (adoptions do not count): counts duplicates in tests. */
  spawned = 0;
  private readonly opts: ProcessProviderOptions;
  private readonly dataDir: string;
  /** Workspaces being stopped here: their exit is not drift. */
  private readonly stopping = new Set<string>();
  /** Ids this instance is forking right now: their pending records are not resolved behind its back. */
  private readonly spawning = new Set<string>();
  private readonly unwatchers = new Set<() => void>();

  constructor(opts: ProcessProviderOptions = {}) {
    this.opts = opts;
    this.dataDir = join(opts.dataDir ?? '.wsup', 'processes');
    this.records = opts.records ?? new JsonFileProcessRecords(this.dataDir);
  }

  async start(spec: WorkspaceSpec, signal: AbortSignal): Promise<Endpoint> {
    assertWorkspaceId(spec.id);
    signal.throwIfAborted();
    const want = this.resolve(spec);
    const existing = await this.load(spec.id);
    if (existing !== null) {
      // Same process, same spec (token included): adopt it once it answers; anything else is replaced.
      if (existing.specHash === want.specHash && isAlive(existing)) {
        const healthy = await waitFor(() => probeHealth(existing), this.healthTimeout(), signal);
        if (healthy) return endpointOf(existing);
      }
      await this.terminate(existing, signal);
      await this.records.delete(spec.id);
    }
    // One retry covers the rare port taken between freePort() and the child's listen().
    for (let attempt = 0; ; attempt++) {
      const rec = await this.spawn(spec.id, want);
      try {
        const exited = () => !isAlive(rec);
        const healthy = await waitFor(async () => (exited() ? 'exited' : probeHealth(rec)), this.healthTimeout(), signal);
        if (healthy === true) return endpointOf(rec);
        throw healthy === 'exited' ? new ProcessExitedError(spec.id, tail(rec.logPath)) : new ProviderTimeoutError(spec.id, 'start (health check)', this.healthTimeout());
      } catch (err) {
        // Leave nothing half-started behind: no process, no record, so the next start begins clean.
        signalAll(workspaceProcesses(rec, marker(rec)), 'SIGKILL');
        await this.records.delete(spec.id);
        if (!(err instanceof ProcessExitedError) || attempt >= 1) throw err;
      }
    }
  }

  async stop(id: string, signal: AbortSignal): Promise<void> {
    assertWorkspaceId(id);
    signal.throwIfAborted();
    const rec = await this.load(id);
    if (rec === null) return;
    this.stopping.add(id);
    try {
      await this.terminate(rec, signal);
      await this.records.delete(id);
    } finally {
      this.stopping.delete(id);
    }
  }

  async inspect(id: string): Promise<ProviderResource | null> {
    assertWorkspaceId(id);
    const rec = await this.load(id);
    return rec === null ? null : this.describe(rec);
  }

  async list(): Promise<ProviderResource[]> {
    const recs = await Promise.all((await this.records.all()).map((rec) => this.settle(rec)));
    return Promise.all(recs.flatMap((rec) => (rec === null ? [] : [this.describe(rec)])));
  }

  private async load(id: string): Promise<ProcessRecord | null> {
    const rec = await this.records.get(id);
    return rec === null ? null : this.settle(rec);
  }

  /**
   * Resolve a record left pending by a supervisor that died between writing it and learning the child's
   * pid: find the child by the nonce in its environment (or its health answer). None found means the fork
   * never happened or the child is gone, so the record goes.
   */
  private async settle(rec: ProcessRecord): Promise<ProcessRecord | null> {
    if (rec.pid > 0 || this.spawning.has(rec.id)) return rec;
    const pid = findByEnv(marker(rec)) ?? (await healthPid(rec));
    if (pid === null) {
      await this.records.delete(rec.id);
      return null;
    }
    const found = { ...rec, pid, startTime: processStartTime(pid) };
    await this.records.put(rec.id, found);
    return found;
  }

  /** Polls liveness (pid + start time, no HTTP) and reports each recorded process that died once. */
  watch(onEvent: (event: ProviderEvent) => void): () => void {
    const timers = this.opts.timers ?? { setInterval, clearInterval: (h: unknown) => clearInterval(h as NodeJS.Timeout) };
    const reported = new Set<string>();
    let busy = false;
    const tick = async () => {
      if (busy) return;
      busy = true;
      try {
        for (const rec of await this.records.all()) {
          if (rec.pid === 0 || this.stopping.has(rec.id) || reported.has(rec.nonce) || isAlive(rec)) continue;
          reported.add(rec.nonce);
          onEvent({ id: rec.id, alive: false, detail: `process ${rec.pid} of workspace ${rec.id} is gone` });
        }
      } finally {
        busy = false;
      }
    };
    const handle = timers.setInterval(() => void tick().catch(() => undefined), this.opts.watchIntervalMs ?? 1_000);
    const unwatch = () => {
      timers.clearInterval(handle);
      this.unwatchers.delete(unwatch);
    };
    this.unwatchers.add(unwatch);
    return unwatch;
  }

  async close(): Promise<void> {
    // Children are deliberately left running: they belong to the workspaces, not to this supervisor.
    for (const unwatch of [...this.unwatchers]) unwatch();
  }

  private resolve(spec: WorkspaceSpec): { command: string[]; env: Record<string, string>; token: string | undefined; specHash: string } {
    const parsed = specSchema.safeParse(spec);
    if (!parsed.success) {
      throw new WsupError('WSUP_INVALID_ARGUMENT', `workspace ${spec.id} has an invalid process spec: ${parsed.error.message}`, { workspaceId: spec.id });
    }
    const s = parsed.data;
    const command = s.command ?? this.opts.command ?? defaultAgentCommand();
    if (command.length === 0 || command[0] === '') {
      throw new WsupError('WSUP_INVALID_ARGUMENT', `workspace ${spec.id}: empty command: pass spec.command or the provider's command`, { workspaceId: spec.id });
    }
    const env = s.env ?? {};
    const specHash = createHash('sha256').update(JSON.stringify({ command, env, token: s.agentToken ?? null })).digest('hex').slice(0, 16);
    return { command, env, token: s.agentToken, specHash };
  }

  private async spawn(id: string, want: ReturnType<ProcessProvider['resolve']>): Promise<ProcessRecord> {
    const host = this.opts.host ?? '127.0.0.1';
    const port = await freePort(host);
    const nonce = randomBytes(12).toString('hex');
    const logPath = join(this.dataDir, `${id}.log`);
    await mkdir(this.dataDir, { recursive: true, mode: 0o700 });
    const [file, ...args] = want.command as [string, ...string[]];
    // Write ahead: the record exists before the child does, so no crash can leave an unrecorded child.
    const pending: ProcessRecord = { id, pid: 0, startTime: null, nonce, port, host, command: want.command, specHash: want.specHash, startedAt: Date.now(), logPath };
    this.spawning.add(id);
    try {
      await this.records.put(id, pending);
      return await this.fork(pending, file, args, openSync(logPath, 'a', 0o600), want);
    } finally {
      this.spawning.delete(id);
    }
  }

  private async fork(pending: ProcessRecord, file: string, args: string[], out: number, want: ReturnType<ProcessProvider['resolve']>): Promise<ProcessRecord> {
    const { id, host, port, nonce } = pending;
    const child = spawn(file, args, {
      detached: true, // own process group: stop signals the group, and the child outlives us
      stdio: ['ignore', out, out],
      env: { ...this.baseEnv(), ...want.env, WSUP_WORKSPACE_ID: id, WSUP_HOST: host, WSUP_PORT: String(port), WSUP_AGENT_NONCE: nonce, WSUP_AGENT_TOKEN: want.token ?? randomBytes(24).toString('hex') },
    });
    closeSync(out);
    await new Promise<void>((resolve, reject) => child.once('spawn', resolve).once('error', reject)).catch(async (err: unknown) => {
      await this.records.delete(id);
      throw new ProcessExitedError(id, `spawn ${file}: ${String(err)}`);
    });
    child.unref();
    const pid = child.pid!;
    const rec: ProcessRecord = { ...pending, pid, startTime: processStartTime(pid) };
    await this.records.put(id, rec);
    this.spawned++;
    return rec;
  }

  /**
   * Tear the whole workspace down: SIGTERM every process of it (leader, session, and whatever carries its
   * marker, see `workspaceProcesses`), wait the grace period, SIGKILL what is left. Nothing left is success.
   */
  private async terminate(rec: ProcessRecord, signal: AbortSignal): Promise<void> {
    // Members found once stay members: when the leader exits, its children are re-parented and a child
    // found by parentage alone would otherwise drop out of later scans while it ignores SIGTERM.
    const members = new Map<number, ProcessIdentity>();
    const procs = () => {
      for (const p of workspaceProcesses(rec, marker(rec))) members.set(p.pid, p);
      return [...members.values()].filter(isAlive);
    };
    const first = procs();
    if (first.length === 0) return;
    signalAll(first, 'SIGTERM');
    if (await waitFor(() => procs().length === 0, this.opts.stopGraceMs ?? 5_000, signal)) return;
    signalAll(procs(), 'SIGKILL');
    if (!(await waitFor(() => procs().length === 0, 5_000, signal))) throw new ProviderTimeoutError(rec.id, 'stop (SIGKILL)', 5_000);
  }

  private async describe(rec: ProcessRecord): Promise<ProviderResource> {
    const alive = isAlive(rec);
    const healthy = alive && (await probeHealth(rec));
    const detail = { pid: rec.pid, port: rec.port, startedAt: rec.startedAt, logPath: rec.logPath };
    if (!alive) return { id: rec.id, status: 'stopped', ref: String(rec.pid), detail };
    return healthy
      ? { id: rec.id, status: 'running', endpoint: endpointOf(rec), ref: String(rec.pid), detail }
      : { id: rec.id, status: 'starting', ref: String(rec.pid), detail };
  }

  private baseEnv(): NodeJS.ProcessEnv {
    if (this.opts.inheritEnv === true) return process.env;
    const keep = ['PATH', 'HOME', 'LANG', 'LC_ALL', 'TZ', 'TMPDIR', 'USER'];
    return Object.fromEntries(keep.flatMap((k) => (process.env[k] === undefined ? [] : [[k, process.env[k]]])));
  }

  private healthTimeout(): number {
    return this.opts.healthTimeoutMs ?? 10_000;
  }
}

export { isAlive } from './proc.ts';
export { JsonFileProcessRecords, parseProcessRecord, type ProcessRecord, type ProcessRecords } from './process-records.ts';

export function createProcessProvider(opts: ProcessProviderOptions = {}): ProcessProvider {
  return new ProcessProvider(opts);
}

const endpointOf = (rec: ProcessRecord): Endpoint => `http://${rec.host}:${rec.port}`;

/** Every process of one spawn inherits this from the environment the provider gives the leader. */
const marker = (rec: ProcessRecord): string => `WSUP_AGENT_NONCE=${rec.nonce}`;

function tail(path: string): string {
  try {
    return readFileSync(path, 'utf8').trim().split('\n').slice(-5).join(' | ') || 'no output';
  } catch {
    return 'no log';
  }
}

async function freePort(host: string): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, host, resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/**
 * Poll a check of the real world until it is truthy or `ms` pass (then `false`). Rejects with the
 * signal's reason on abort.
 */
async function waitFor<T>(check: () => T | Promise<T>, ms: number, signal: AbortSignal): Promise<T | false> {
  const deadline = Date.now() + ms;
  for (;;) {
    signal.throwIfAborted();
    const v = await check();
    if (v) return v;
    if (Date.now() >= deadline) return false;
    await sleep(25, undefined, { signal }).catch(() => signal.throwIfAborted());
  }
}
