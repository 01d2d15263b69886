/**
 * A real `wsup serve` stack on loopback for the template tests: the runtime `serve` builds (real provider,
 * PGlite store in a temp dir), the control server with a `--config`-style template set, and typed clients
 * for each role. The store is opened here so tests can look into it.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { buildRuntime, type ProviderKind, type Runtime, type RuntimeOptions } from '../../src/cli/runtime.ts';
import { openStore } from '../../src/cli/open-store.ts';
import { WsupClient, WsupRpcError } from '../../src/client/index.ts';
import type { Role } from '../../src/protocol/index.ts';
import { createServer, silentLogger, staticTokens, type WsupServer } from '../../src/server/index.ts';
import type { WorkspaceStore } from '../../src/store/index.ts';
import { AutoUpdate, parseConfig, providerDefaultTemplate, TemplateSet, type AutoUpdateOptions } from '../../src/templates/index.ts';

const TOKENS: Record<Role, string> = { admin: 'tmpl-admin', operator: 'tmpl-operator', viewer: 'tmpl-viewer' };

export interface TemplateRig {
  dir: string;
  rt: Runtime;
  store: WorkspaceStore;
  server: WsupServer;
  /** The server's templates: `replace` them to change what workspaces are outdated against. */
  templates: TemplateSet;
  client(role: Role): WsupClient;
  close(): Promise<void>;
}

export async function startTemplateRig(o: { provider: ProviderKind; config: unknown; runtime?: Partial<RuntimeOptions>; autoUpdate?: AutoUpdateOptions }): Promise<TemplateRig> {
  const dir = mkdtempSync(join(tmpdir(), 'wsup-tmpl-'));
  const store = await openStore({ dataDir: dir });
  const templates = TemplateSet.fromConfig(parseConfig('test config', o.config, { provider: o.provider }), providerDefaultTemplate(o.provider));
  // As `wsup serve` wires it: re-render outdated workspaces that opted in, before the claim service's token.
  const auto = o.autoUpdate ? new AutoUpdate(templates, o.autoUpdate) : null;
  const rt = await buildRuntime({ provider: o.provider, dataDir: dir, store, logger: silentLogger, ...(auto ? { prepareSpec: auto.prepareSpec } : {}), ...o.runtime });
  auto?.attach(rt.supervisor);
  const tokens = staticTokens((Object.keys(TOKENS) as Role[]).map((role) => ({ token: TOKENS[role], role })));
  const server = createServer({ supervisor: rt.supervisor, tokens, port: 0, templates, ...(rt.claims ? { claims: rt.claims } : {}) });
  const { port } = await server.listen();
  const clients: WsupClient[] = [];
  return {
    dir,
    rt,
    store,
    server,
    templates,
    client(role) {
      const c = new WsupClient({ url: `ws://127.0.0.1:${port}/control`, token: TOKENS[role], WebSocket, reconnect: false });
      clients.push(c);
      return c;
    },
    async close() {
      for (const c of clients) c.close();
      await server.close();
      await rt.close(); // closes the store too
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The rejection of `p` as a WsupRpcError (fails the test when `p` resolves or rejects otherwise). */
export async function refusal(p: Promise<unknown>): Promise<WsupRpcError> {
  const err = await p.then(
    (v) => new Error(`expected a refusal, got ${JSON.stringify(v)}`),
    (e: unknown) => e,
  );
  if (!(err instanceof WsupRpcError)) throw err;
  return err;
}
