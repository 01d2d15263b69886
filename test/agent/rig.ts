/**
 * A real control server with the `/agent` channel over a durable supervisor on a real store (PGlite from
 * the template, or PostgreSQL), a FakeProvider whose latency runs on a manual clock (a claim build
 * completes when the test says so), and a TCP proxy in front of the server for cutting agent connections.
 */
import WebSocket from 'ws';
import { WsupClient } from '../../src/client/index.ts';
import type { ReinitEvent } from '../../src/protocol/index.ts';
import { FakeProvider, type FakeClock } from '../../src/providers/fake.ts';
import { createServer, staticTokens, type WsupServer } from '../../src/server/index.ts';
import type { SqlEngine } from '../../src/store/engine.ts';
import { WorkspaceStore } from '../../src/store/index.ts';
import { ClaimService } from '../../src/supervisor/claims.ts';
import { openDurableSupervisor } from '../../src/supervisor/durable.ts';
import type { Supervisor } from '../../src/supervisor/supervisor.ts';
import { CutProxy } from './helpers.ts';

export const ADMIN = 'tok-admin';
export const agentToken = (id: string) => `agent-token-of-${id}`;

/** setTimeout on a clock that moves only when the test calls `advance`. */
export class StepClock implements FakeClock {
  private t = 0;
  private timers = new Map<number, { at: number; fn: () => void }>();
  private seq = 0;
  now = () => this.t;
  setTimeout = (fn: () => void, ms: number) => {
    this.timers.set(++this.seq, { at: this.t + ms, fn });
    return this.seq;
  };
  clearTimeout = (id: unknown) => void this.timers.delete(id as number);
  get pending(): number {
    return this.timers.size;
  }
  advance(ms: number): void {
    this.t += ms;
    for (const [id, timer] of [...this.timers].sort((a, b) => a[1].at - b[1].at)) {
      if (timer.at > this.t) continue;
      this.timers.delete(id);
      timer.fn();
    }
  }
}

export interface ClaimRig {
  store: WorkspaceStore;
  supervisor: Supervisor;
  claims: ClaimService;
  server: WsupServer;
  provider: FakeProvider;
  buildClock: StepClock;
  proxy: CutProxy;
  /** The server's own base URL (no proxy), for control clients such as the CLI. */
  controlUrl: string;
  /** Base URL of the agent channel through the proxy. */
  agentUrl: string;
  control: WsupClient;
  /** Reinits the server was about to write, in order. */
  delivered: ReinitEvent[];
  onDeliver: ((id: string, ev: ReinitEvent) => void | Promise<void>) | null;
  prebuild(id: string, pool?: string): Promise<void>;
  regular(id: string): Promise<void>;
  close(): Promise<void>;
}

export async function startClaimRig(engine: SqlEngine, opts: { buildMs?: number } = {}): Promise<ClaimRig> {
  const buildClock = new StepClock();
  const provider = new FakeProvider({ clock: buildClock, latencyMs: opts.buildMs ?? 0 });
  const store = await WorkspaceStore.open({ engine });
  const claims = new ClaimService({ store });
  await claims.load();
  const { supervisor } = await openDurableSupervisor({ store, provider, beforeRecovery: (s) => claims.attach(s) });
  await claims.reconcile();
  const delivered: ReinitEvent[] = [];
  const rig = {} as ClaimRig;
  const server = createServer({
    supervisor,
    claims,
    tokens: staticTokens([{ token: ADMIN, role: 'admin' }]),
    port: 0,
    beforeAgentDeliver: async (id, ev) => {
      delivered.push(ev);
      await rig.onDeliver?.(id, ev);
    },
  });
  const { port } = await server.listen();
  const proxy = await CutProxy.start(port);
  const control = new WsupClient({ url: `ws://127.0.0.1:${port}/control`, token: ADMIN, WebSocket, reconnect: false });
  return Object.assign(rig, {
    store,
    supervisor,
    claims,
    server,
    provider,
    buildClock,
    proxy,
    controlUrl: `http://127.0.0.1:${port}`,
    agentUrl: `http://127.0.0.1:${proxy.port}`,
    control,
    delivered,
    onDeliver: null,
    async prebuild(id: string, pool = 'default') {
      await control.call('workspace.create', { id, prebuild: true, pool });
      await store.tokens.setAgentToken(id, agentToken(id));
    },
    async regular(id: string) {
      await control.call('workspace.create', { id });
      await store.tokens.setAgentToken(id, agentToken(id));
    },
    async close() {
      control.close();
      await proxy.close();
      await server.close();
      claims.close();
      await supervisor.shutdown({ deadlineMs: 0 });
      await store.close();
    },
  });
}
