/**
 * The supervisor process is SIGKILLed (no graceful anything) and restarted on the same PGlite data dir and
 * port, while a real agent SDK keeps reconnecting. Its backoff sleeps run on a manual scheduler that the
 * test releases once the new process listens: no test sleeps.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { WsupClient } from '../../src/client/index.ts';
import { ManualScheduler, runAgent, type RunningAgent } from './helpers.ts';

const CHILD = fileURLToPath(new URL('./child.ts', import.meta.url));
const ROOT = fileURLToPath(new URL('../..', import.meta.url));

class ServerProcess {
  readonly port: Promise<number>;
  readonly exited: Promise<void>;
  private readonly proc: ChildProcess;
  constructor(env: Record<string, string>) {
    this.proc = spawn(process.execPath, ['--import', 'tsx', CHILD], { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
    this.exited = new Promise((r) => this.proc.once('exit', () => r()));
    this.port = new Promise((resolve, reject) => {
      createInterface({ input: this.proc.stdout! }).on('line', (l) => {
        const m = /^READY (\d+)$/.exec(l);
        if (m) resolve(Number(m[1]));
      });
      void this.exited.then(() => reject(new Error('server process exited before READY')));
    });
  }
  async kill(): Promise<void> {
    this.proc.kill('SIGKILL');
    await this.exited;
  }
}

describe('agent reinit across supervisor crashes (SIGKILL, PGlite data dir)', () => {
  let dir: string;
  let latencyFile: string;
  let port = 0;
  let current: ServerProcess | null = null;
  const agents: RunningAgent[] = [];

  const start = async (extra: Record<string, string> = {}) => {
    current = new ServerProcess({ WSUP_AGENT_TEST_DIR: join(dir, 'pglite'), WSUP_AGENT_TEST_PORT: String(port), WSUP_AGENT_TEST_LATENCY_FILE: latencyFile, ...extra });
    port = await current.port;
    return current;
  };
  const control = () => new WsupClient({ url: `ws://127.0.0.1:${port}/control`, token: 'tok-admin', WebSocket, reconnect: false });
  const latency = (ms: number) => writeFileSync(latencyFile, String(ms));

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'wsup-agent-crash-'));
    latencyFile = join(dir, 'latency');
    latency(0);
  });
  afterEach(async () => {
    await Promise.all(agents.splice(0).map((a) => a.stop()));
  });
  afterAll(async () => {
    await current?.kill();
    rmSync(dir, { recursive: true, force: true });
  });

  /**
   * Kill the server (unless it already died), start a new one on the same data and port, and let the
   * agents reconnect to it once it listens.
   */
  const crashAndRestart = async (all: RunningAgent[], scheduler: ManualScheduler, extra: Record<string, string> = {}, kill = true) => {
    const connected = all.map((a) => a.count('connected'));
    if (kill) await current!.kill();
    else await current!.exited;
    await Promise.all(all.map((a) => a.until(() => a.statuses.at(-1)?.type === 'disconnected', 'agent backing off')));
    await start(extra);
    scheduler.release();
    await Promise.all(all.map((a, i) => a.until(() => a.count('connected') > connected[i]!, 'agent reconnected')));
  };

  it('killed between claim and delivery, and right after a claim commit: each delivered once; acked claims never replay across 3 crashes', async () => {
    await start();
    const c = control();
    for (const id of ['pb-k', 'pb-d']) {
      await c.call('workspace.create', { id, prebuild: true, pool: 'crash', spec: { agentToken: `tok-${id}` } });
      await c.call('workspace.ensure', { id }); // the start registers the agent token (the claim service's prepareSpec)
    }
    latency(600_000); // pb-k's claim build hangs until the process dies
    const claimK = await c.call('workspace.claim', { id: 'pb-k', userId: 'alice' });
    c.close();

    const scheduler = new ManualScheduler();
    const k = runAgent({ url: `http://127.0.0.1:${port}`, token: 'tok-pb-k', scheduler, workspaceId: 'pb-k' });
    const d = runAgent({ url: `http://127.0.0.1:${port}`, token: 'tok-pb-d', scheduler, workspaceId: 'pb-d' });
    agents.push(k, d);
    await k.until(() => k.statuses.some((s) => s.type === 'waiting' && s.why === 'claim_build_running'), 'pb-k waiting for its claim build');
    await d.until(() => d.statuses.some((s) => s.type === 'waiting' && s.why === 'unclaimed'), 'pb-d waiting unclaimed');

    // Crash 1 with pb-k's build in flight: recovery re-runs the interrupted build, then delivers it once.
    latency(0);
    await crashAndRestart([k, d], scheduler, { WSUP_AGENT_TEST_DIE_AFTER_COMMIT: '1' });
    await k.until(() => k.count('acked') === 1, 'pb-k reinit + ack after the restart');
    expect(k.yielded).toEqual([{ workspaceId: 'pb-k', ownerId: 'alice', claimBuildId: claimK.claimBuildId, reason: 'prebuild_claimed' }]);

    // Crash 2 right after pb-d's claim commits, before its build was even asked for: the restart resumes it.
    const dying = control();
    await expect(dying.call('workspace.claim', { id: 'pb-d', userId: 'bob' })).rejects.toThrow();
    dying.close();
    await crashAndRestart([k, d], scheduler, {}, false);
    await d.until(() => d.count('acked') === 1, 'pb-d reinit + ack after the restart');
    expect(d.yielded).toHaveLength(1);
    expect(d.yielded[0]).toMatchObject({ workspaceId: 'pb-d', ownerId: 'bob', reason: 'prebuild_claimed' });

    // Crashes 3 and 4: both claims are acknowledged, nothing is replayed.
    for (let i = 0; i < 2; i++) await crashAndRestart([k, d], scheduler);
    for (const a of [k, d]) {
      await a.until(() => a.statuses.at(-1)?.type === 'waiting', 'told to wait');
      expect(a.statuses.at(-1)).toEqual({ type: 'waiting', why: 'acknowledged' });
      expect(a.yielded).toHaveLength(1);
      expect(a.count('duplicate')).toBe(0); // not even re-sent: the server never replayed the claim
      expect(a.count('acked')).toBe(1);
    }
    // pb-k's ack survived 3 supervisor deaths (crash 2, 3, 4) and 3 reconnects.
    expect(k.count('connected')).toBe(5);
  }, 90_000);
});
