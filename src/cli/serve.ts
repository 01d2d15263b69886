/**
 * `wsup serve`: build the runtime, make sure an admin token exists, listen, print where to connect, and
 * shut down gracefully on SIGINT/SIGTERM (server drains first, then the supervisor).
 */
import { mkdirSync } from 'node:fs';
import { resolve } from 'node:path';
import type { ServerOptions, WsupServer } from '../server/index.ts';
import type { ProviderCallTap } from '../server/metrics.ts';
import type { Logger } from '../server/logger.ts';
import type { ProviderKind } from './runtime.ts';

export interface ServeFlags {
  port: string;
  host: string;
  dataDir: string;
  provider: string;
  databaseUrl?: string;
  origin?: string[];
  allowedOrigin?: string[];
  metricsToken?: string;
  headersTimeout?: string;
  upgradeTimeout?: string;
  maxUpgradesPerAddress?: string;
  maxConnectionsPerAddress?: string;
  image?: string;
  cmd?: string;
  ami?: string;
  instanceType?: string;
  orphans: string;
  memory?: boolean;
  cluster?: boolean;
  replicaId?: string;
}

const PROVIDERS: ProviderKind[] = ['process', 'docker', 'ec2', 'fake'];

export async function serve(f: ServeFlags): Promise<number> {
  const port = Number(f.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    process.stderr.write(`wsup: --port must be 0-65535, got ${f.port}\n`);
    return 2;
  }
  if (!PROVIDERS.includes(f.provider as ProviderKind)) {
    process.stderr.write(`wsup: --provider must be one of ${PROVIDERS.join(', ')}\n`);
    return 2;
  }
  if (f.orphans !== 'report' && f.orphans !== 'remove') {
    process.stderr.write(`wsup: --orphans must be report or remove, got ${f.orphans}\n`);
    return 2;
  }
  if (f.provider === 'docker' && !f.image) process.stderr.write('wsup: note: no --image; every workspace must be created with a spec naming one\n');
  if (f.provider === 'ec2' && !f.ami) process.stderr.write('wsup: note: no --ami; every workspace must be created with a spec naming one\n');
  const started = performance.now();
  const dataDir = resolve(f.dataDir);
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  // The store opens while the server, supervisor and providers load (PGlite compiles its wasm off the main
  // thread): a warm start is that much shorter.
  const opening = f.cluster || f.memory ? null : import('./open-store.ts').then((m) => m.openStore({ dataDir, ...(f.databaseUrl ? { databaseUrl: f.databaseUrl } : {}) }));
  opening?.catch(() => undefined); // awaited below; not an unhandled rejection in the meantime
  const m = await load().catch(async (err: unknown) => {
    await (await opening?.catch(() => null))?.close();
    throw err;
  });
  // Logs go to stderr so stdout carries only the banner (scripts read the URL from it).
  const logger = m.pino({ level: process.env.WSUP_LOG_LEVEL ?? 'info', base: null }, m.pino.destination(2));
  if (f.cluster) return serveCluster(m, f, port, logger, dataDir, started);
  const store = opening ? await opening : undefined;
  const rt = await m.buildRuntime({
    ...(store ? { store } : {}),
    provider: f.provider as ProviderKind,
    dataDir,
    ...(f.databaseUrl ? { databaseUrl: f.databaseUrl } : {}),
    ...(f.memory ? { memory: true } : {}),
    ...specFlags(f),
    orphans: f.orphans,
    logger,
  });
  const server = (common: CommonServerOptions) =>
    m.createServer({
      ...common,
      supervisor: rt.supervisor,
      onFilesWritten: rt.filesWritten,
      ...(rt.history ? { history: rt.history } : {}),
      ...(rt.claims ? { claims: rt.claims } : {}),
    });
  return run(m, { f, port, dataDir, logger, started, rt, server, closing: 'shutting down' });
}

/** The heavy part of `serve` (server, runtime, logger), loaded while the store opens. */
const load = async () => {
  const [pino, server, runtime] = await Promise.all([import('pino'), import('../server/index.ts'), import('./runtime.ts')]);
  return { pino: pino.default, createServer: server.createServer, TokenFile: server.TokenFile, buildRuntime: runtime.buildRuntime, buildClusterRuntime: runtime.buildClusterRuntime };
};
type Loaded = Awaited<ReturnType<typeof load>>;

async function serveCluster(m: Loaded, f: ServeFlags, port: number, logger: Logger, dataDir: string, started: number): Promise<number> {
  if (f.memory) {
    process.stderr.write('wsup: --cluster keeps its state in PostgreSQL: drop --memory\n');
    return 2;
  }
  const rt = await m.buildClusterRuntime({
    provider: f.provider as ProviderKind,
    dataDir,
    ...(f.databaseUrl ? { databaseUrl: f.databaseUrl } : {}),
    ...(f.replicaId ? { replicaId: f.replicaId } : {}),
    ...specFlags(f),
    logger,
  });
  const server = (common: CommonServerOptions) => m.createServer({ ...common, supervisor: rt.backend });
  return run(m, { f, port, dataDir, logger, started, rt, server, closing: 'leaving the cluster: handing shards over' });
}

type CommonServerOptions = Pick<ServerOptions, 'tokens' | 'host' | 'port' | 'providerCalls' | 'logger' | 'originAllowList' | 'metricsToken' | 'edge'>;

/** Create the server, listen, print where to connect, wait for SIGINT/SIGTERM, drain, close the runtime. */
async function run(m: Loaded, o: {
  f: ServeFlags;
  port: number;
  dataDir: string;
  logger: Logger;
  started: number;
  rt: { providerCalls: ProviderCallTap; wiring: { provider: string; store: string }; close(): Promise<void> };
  server: (common: CommonServerOptions) => WsupServer;
  closing: string;
}): Promise<number> {
  const { f, logger, rt } = o;
  const tokens = m.TokenFile.in(o.dataDir);
  const admin = tokens.ensureAdmin();
  const server = o.server({ tokens, host: f.host, port: o.port, providerCalls: rt.providerCalls, logger, ...edgeOptions(f) });
  const { url } = await server.listen();
  const ms = Math.round(performance.now() - o.started);
  process.stdout.write(
    [
      `wsup ready on ${url} in ${ms} ms (provider ${rt.wiring.provider}, store ${rt.wiring.store})`,
      `  visualizer: ${url}/?token=${admin.token}`,
      `  control:    ${url.replace(/^http/, 'ws')}/control`,
      `  token:      ${tokens.adminPath}${admin.created ? ' (new admin token)' : ''}`,
      '',
    ].join('\n'),
  );
  await untilSignalled(logger);
  logger.info({}, o.closing);
  await server.close();
  await rt.close();
  return 0;
}

/** The default workspace spec from the provider flags. */
function specFlags(f: ServeFlags) {
  return {
    ...(f.image ? { image: f.image } : {}),
    ...(f.cmd ? { cmd: splitCommand(f.cmd) } : {}),
    ...(f.ami ? { ami: f.ami } : {}),
    ...(f.instanceType ? { instanceType: f.instanceType } : {}),
  };
}

function untilSignalled(logger: Logger): Promise<void> {
  // `on`, not `once`: wrappers (npx, tsx) relay the signal, and a second SIGINT must not kill the drain.
  return new Promise<void>((r) => {
    let seen = false;
    const stop = (sig: string) => {
      if (seen) return logger.info({ sig }, 'already shutting down');
      seen = true;
      r();
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
}

/** `--cmd "sleep infinity"` → ["sleep", "infinity"]; quotes group words ("sh -c 'a b'"). */
export function splitCommand(cmd: string): string[] {
  const words = cmd.match(/'[^']*'|"[^"]*"|\S+/g) ?? [];
  return words.map((w) => (/^(['"]).*\1$/.test(w) ? w.slice(1, -1) : w));
}

/** The serve flags of the control plane's edge (origins, metrics token, timeouts, caps) as server options. */
export function edgeOptions(f: ServeFlags): Pick<ServerOptions, 'originAllowList' | 'metricsToken' | 'edge'> {
  const origins = [...(f.allowedOrigin ?? []), ...(f.origin ?? [])];
  const num = (flag: string, v: string | undefined): number | undefined => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1) throw new Error(`--${flag} takes a positive integer, got ${v}`);
    return n;
  };
  const edge = Object.fromEntries(
    Object.entries({
      headersTimeoutMs: num('headers-timeout', f.headersTimeout),
      upgradeTimeoutMs: num('upgrade-timeout', f.upgradeTimeout),
      maxPendingUpgradesPerAddress: num('max-upgrades-per-address', f.maxUpgradesPerAddress),
      maxConnectionsPerAddress: num('max-connections-per-address', f.maxConnectionsPerAddress),
    }).filter(([, v]) => v !== undefined),
  );
  return {
    ...(origins.length > 0 ? { originAllowList: origins } : {}),
    ...(f.metricsToken ? { metricsToken: f.metricsToken } : {}),
    edge,
  };
}
