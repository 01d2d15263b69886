/** A real control server with pools over a durable supervisor on PGlite and a FakeProvider (real time). */
import { FakeProvider } from '../../src/providers/fake.ts';
import type { Role } from '../../src/protocol/index.ts';
import { createServer, staticTokens, type WsupServer } from '../../src/server/index.ts';
import { WorkspaceStore } from '../../src/store/index.ts';
import { ClaimService } from '../../src/supervisor/claims.ts';
import { openDurableSupervisor } from '../../src/supervisor/durable.ts';
import { PoolService } from '../../src/supervisor/pools.ts';
import type { Supervisor } from '../../src/supervisor/supervisor.ts';
import { pgliteFixture } from '../store/fixtures.ts';

export const tokenOf = (role: Role) => `tok-${role}`;

export interface PoolServer {
  store: WorkspaceStore;
  sup: Supervisor;
  claims: ClaimService;
  pools: PoolService;
  server: WsupServer;
  /** http://127.0.0.1:<port> */
  url: string;
  close(): Promise<void>;
}

export async function startPoolServer(): Promise<PoolServer> {
  const fx = await pgliteFixture();
  const store = await WorkspaceStore.open({ engine: await fx.engine() });
  const claims = new ClaimService({ store });
  await claims.load();
  const { supervisor: sup } = await openDurableSupervisor({ store, provider: new FakeProvider({ latencyMs: 5 }), beforeRecovery: (s) => claims.attach(s) });
  const pools = new PoolService({ store, claims, supervisor: sup });
  await pools.start();
  const server = createServer({
    supervisor: sup,
    claims,
    pools,
    tokens: staticTokens((['viewer', 'operator', 'admin'] as const).map((role) => ({ token: tokenOf(role), role }))),
    port: 0,
  });
  const { port } = await server.listen();
  return {
    store,
    sup,
    claims,
    pools,
    server,
    url: `http://127.0.0.1:${port}`,
    async close() {
      await server.close();
      await pools.close();
      claims.close();
      await sup.shutdown({ deadlineMs: 0 });
      await store.close();
      await fx.dispose();
    },
  };
}
