/**
 * `wsup serve`: build the runtime, make sure an admin token exists, listen, print where to connect, and
 * shut down gracefully on SIGINT/SIGTERM (server drains first, then the supervisor). SIGHUP reloads `--config`.
 */
import { mkdirSync, readFileSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import type { ServerOptions, TokenFile, WsupServer } from '../server/index.ts';
import type { ServeTokens } from './cluster-tokens.ts';
import { errorMessage, WsupError } from '../errors.ts';
import type { PolicyPatch } from '../protocol/index.ts';
import { AutoUpdate, ConfigError, parseConfig, providerDefaultTemplate, TemplateSet } from '../templates/index.ts';
import type { ProviderCallTap } from '../server/metrics.ts';
import type { Logger } from '../server/logger.ts';
import { UsageError } from './context.ts';
import { policyDurationFlag } from './duration.ts';
import { DEFAULT_SHUTDOWN_GRACE_MS } from './defaults.ts';
import { serveDefaults, type ServeDefaultFlags } from './policy.ts';
import type { ProviderKind } from './runtime.ts';
import type { Provider } from '../providers/types.ts';
import type { QuotaLimits } from '../supervisor/quota.ts';

export interface ServeFlags extends ServeDefaultFlags {
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
  /** Where clients reach this replica (cluster.members); default the URL it listens on. */
  advertiseUrl?: string;
  config?: string;
  shutdownGrace?: string;
  maxRunningPerOwner?: string;
  maxRunningPerTemplate?: string;
  deactivateAfter?: string;
}

/** What a program embedding `serve` brings of its own. */
export interface ServeHooks {
  /** The provider to use (its `kind` is what the banner shows); `--provider` then only checks the flag. */
  provider?: Provider;
}

/** A repeat of the same signal this soon is a wrapper relaying one keypress (npm start), not a second request. */
const RELAY_WINDOW_MS = 250;

const PROVIDERS: ProviderKind[] = ['process', 'docker', 'ec2', 'fake'];

export async function serve(f: ServeFlags, hooks: ServeHooks = {}): Promise<number> {
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
  const graceMs = Number(f.shutdownGrace ?? DEFAULT_SHUTDOWN_GRACE_MS);
  if (!Number.isFinite(graceMs) || graceMs < 0) {
    process.stderr.write(`wsup: --shutdown-grace must be a number of ms, got ${f.shutdownGrace}\n`);
    return 2;
  }
  const perOwner = quotaFlag('--max-running-per-owner', f.maxRunningPerOwner);
  const perTemplate = quotaFlag('--max-running-per-template', f.maxRunningPerTemplate);
  if (perOwner === undefined || perTemplate === undefined) return 2;
  let deactivateAfterMs: number | undefined; // absent: the supervisor's default
  try {
    deactivateAfterMs = f.deactivateAfter === undefined ? undefined : (policyDurationFlag('--deactivate-after', f.deactivateAfter) ?? 0);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`wsup: ${err.message}\n`);
    return 2;
  }
  let templates: TemplateSet;
  let policy: PolicyPatch;
  try {
    const config = f.config === undefined ? null : readConfig(resolve(f.config));
    templates = templatesFor(f, config);
    policy = serveDefaults(f, config ? { file: config.file, defaults: config.defaults } : undefined);
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`wsup: ${err.message}\n`);
      return 2;
    }
    if (!(err instanceof WsupError)) throw err;
    process.stderr.write(`wsup: --config: ${err.message}\n`);
    return 2;
  }
  if (f.provider === 'docker' && !f.image) process.stderr.write('wsup: note: no --image; every workspace must be created with a spec naming one\n');
  if (f.provider === 'ec2' && !f.ami) process.stderr.write('wsup: note: no --ami; every workspace must be created with a spec naming one\n');
  const started = performance.now();
  // Everything serve writes from here on (store files, tokens, records, logs) is for this user only.
  process.umask(0o077);
  const dataDir = resolve(f.dataDir);
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const unsafe = statSync(dataDir).mode & 0o022;
  if (unsafe !== 0) {
    process.stderr.write(`wsup: data dir ${dataDir} is writable by ${unsafe & 0o020 ? 'its group' : 'others'} (mode ${(statSync(dataDir).mode & 0o777).toString(8)}): it holds tokens and the store; run chmod 700 ${dataDir}\n`);
    return 1;
  }
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
  if (f.config !== undefined) {
    const file = resolve(f.config);
    reloadOnHangup(() => templatesFor(f, readConfig(file)), templates, logger);
  }
  // Read on every check: a SIGHUP reload of the templates' maxRunning applies at once.
  const quota = (): QuotaLimits => ({ perOwner, perTemplate: templates.limits().perTemplate, defaultPerTemplate: perTemplate });
  if (f.cluster) return serveCluster(m, f, port, logger, dataDir, started, templates, policy, quota, hooks, deactivateAfterMs);
  const store = opening ? await opening : undefined;
  const autoUpdate = new AutoUpdate(templates, {
    serverDefault: () => policy.autoUpdate ?? null,
    onError: (err, ctx) => logger.warn({ workspaceId: ctx.id }, ctx.what),
  });
  const rt = await m.buildRuntime({
    ...(store ? { store } : {}),
    provider: f.provider as ProviderKind,
    ...(hooks.provider ? { providerInstance: hooks.provider } : {}),
    dataDir,
    ...(f.databaseUrl ? { databaseUrl: f.databaseUrl } : {}),
    ...(f.memory ? { memory: true } : {}),
    ...specFlags(f),
    orphans: f.orphans,
    prepareSpec: autoUpdate.prepareSpec,
    policy,
    quota,
    ...(deactivateAfterMs !== undefined ? { deactivateAfterMs } : {}),
    logger,
  });
  autoUpdate.attach(rt.supervisor);
  const server = (common: CommonServerOptions) =>
    m.createServer({
      ...common,
      supervisor: rt.supervisor,
      onFilesWritten: rt.filesWritten,
      ...(rt.history ? { history: rt.history } : {}),
      ...(rt.claims ? { claims: rt.claims } : {}),
      ...(rt.pools ? { pools: rt.pools } : {}),
      templates,
    });
  return run(m, { f, port, dataDir, logger, started, rt, server, graceMs, closing: 'shutting down' });
}

/** The heavy part of `serve` (server, runtime, logger), loaded while the store opens. */
const load = async () => {
  const [pino, server, runtime] = await Promise.all([import('pino'), import('../server/index.ts'), import('./runtime.ts')]);
  return { pino: pino.default, createServer: server.createServer, TokenFile: server.TokenFile, buildRuntime: runtime.buildRuntime, buildClusterRuntime: runtime.buildClusterRuntime };
};
type Loaded = Awaited<ReturnType<typeof load>>;

async function serveCluster(
  m: Loaded,
  f: ServeFlags,
  port: number,
  logger: Logger,
  dataDir: string,
  started: number,
  templates: TemplateSet,
  policy: PolicyPatch,
  quota: () => QuotaLimits,
  hooks: ServeHooks,
  deactivateAfterMs: number | undefined,
): Promise<number> {
  if (f.memory) {
    process.stderr.write('wsup: --cluster keeps its state in PostgreSQL: drop --memory\n');
    return 2;
  }
  const autoUpdate = new AutoUpdate(templates, {
    serverDefault: () => policy.autoUpdate ?? null,
    onError: (err, ctx) => logger.warn({ workspaceId: ctx.id }, ctx.what),
  });
  const rt = await m.buildClusterRuntime({
    provider: f.provider as ProviderKind,
    ...(hooks.provider ? { providerInstance: hooks.provider } : {}),
    dataDir,
    ...(f.databaseUrl ? { databaseUrl: f.databaseUrl } : {}),
    ...(f.replicaId ? { replicaId: f.replicaId } : {}),
    ...specFlags(f),
    prepareSpec: autoUpdate.prepareSpec,
    policy,
    quota,
    ...(deactivateAfterMs !== undefined ? { deactivateAfterMs } : {}),
    logger,
  });
  // The re-rendered spec is stored by the workspace's owner: the hook runs there, so this stays local.
  autoUpdate.attach(rt.backend);
  const server = (common: CommonServerOptions) =>
    m.createServer({ ...common, supervisor: rt.backend, onFilesWritten: rt.filesWritten, history: rt.history, claims: rt.claims, pools: rt.pools, templates });
  // One set of API tokens for the whole cluster, in its database (not this replica's data dir).
  const tokens = await (await import('./cluster-tokens.ts')).clusterTokens({ url: f.databaseUrl!, dataDir, logger }).catch(async (err: unknown) => {
    await rt.close();
    throw err;
  });
  // Routing clients read where each replica serves them: this one's URL once it listens.
  const listening = (url: string) => rt.replica.advertise(f.advertiseUrl ?? url);
  return run(m, { f, port, dataDir, logger, started, rt, server, tokens, listening, graceMs: Number(f.shutdownGrace ?? DEFAULT_SHUTDOWN_GRACE_MS), closing: 'leaving the cluster: handing shards over' });
}

type CommonServerOptions = Pick<ServerOptions, 'tokens' | 'host' | 'port' | 'providerCalls' | 'logger' | 'originAllowList' | 'limits' | 'metricsToken' | 'edge'>;

/** Create the server, listen, print where to connect, wait for SIGINT/SIGTERM, drain, close the runtime. */
async function run(m: Loaded, o: {
  f: ServeFlags;
  port: number;
  dataDir: string;
  logger: Logger;
  started: number;
  rt: { providerCalls: ProviderCallTap; wiring: { provider: string; store: string }; close(deadlineMs?: number): Promise<void> };
  server: (common: CommonServerOptions) => WsupServer;
  /** The cluster's tokens; default: the data dir's token files. */
  tokens?: ServeTokens;
  /** Called with the server's URL once it listens (a cluster replica advertises it). */
  listening?: (url: string) => Promise<void>;
  graceMs: number;
  closing: string;
}): Promise<number> {
  const { f, logger, rt } = o;
  const tokens = o.tokens ?? fileTokens(m.TokenFile.in(o.dataDir));
  const admin = tokens.admin;
  const server = o.server({
    tokens: tokens.verifier,
    host: f.host,
    port: o.port,
    providerCalls: rt.providerCalls,
    logger,
    limits: { drainTimeoutMs: o.graceMs },
    ...edgeOptions(f),
  });
  const { url } = await server.listen();
  await o.listening?.(url);
  const ms = Math.round(performance.now() - o.started);
  process.stdout.write(
    [
      `wsup ready on ${url} in ${ms} ms (provider ${rt.wiring.provider}, store ${rt.wiring.store})`,
      admin.token !== null ? `  visualizer: ${url}/?token=${admin.token}` : `  visualizer: ${url}/ (the cluster's admin token is not in this data dir: \`wsup token\` where it was minted, or \`wsup token --cluster --rotate\`)`,
      `  control:    ${url.replace(/^http/, 'ws')}/control`,
      `  token:      ${admin.path}${admin.created ? ' (new admin token)' : admin.token === null ? ' (absent)' : ''}`,
      '',
    ].join('\n'),
  );
  await untilSignalled(logger);
  logger.info({ graceMs: o.graceMs }, o.closing);
  // One deadline for the whole shutdown: the server's drain and the supervisor's wait take from the same
  // budget, and whatever still hangs when it passes (a provider call, a store) does not hold the exit.
  const deadline = Date.now() + o.graceMs;
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<'expired'>((r) => (timer = setTimeout(() => r('expired'), o.graceMs)));
  const closed = (async () => {
    await server.close();
    await tokens.close();
    await rt.close(Math.max(0, deadline - Date.now()));
    return 'closed' as const;
  })();
  const outcome = await Promise.race([closed, expired]);
  clearTimeout(timer);
  if (outcome === 'expired') {
    logger.warn({ graceMs: o.graceMs }, 'shutdown grace expired: exiting with work still in flight');
    process.exit(1);
  }
  return 0;
}

/** A single node's tokens: the data dir's files, re-read when they change; the admin token made on first start. */
function fileTokens(file: TokenFile): ServeTokens {
  const admin = file.ensureAdmin();
  return { verifier: file, admin: { ...admin, path: file.adminPath }, close: async () => undefined };
}

/**
 * The `--config` file as JSON: its `defaults` (the server's default policy, see policy.ts) apart from the
 * rest (templates), which the templates' schema checks whole.
 */
function readConfig(file: string): { file: string; defaults: unknown; rest: unknown } {
  let data: unknown;
  try {
    data = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new ConfigError(file, '', code ? `cannot be read (${code})` : `is not JSON (${(err as Error).message})`);
  }
  if (data === null || typeof data !== 'object' || Array.isArray(data) || !('defaults' in data)) return { file, defaults: undefined, rest: data };
  const { defaults, ...rest } = data as Record<string, unknown>;
  return { file, defaults, rest };
}

/**
 * What operators may create: the `--config` templates, and as `default` (unless the config names one) the
 * provider flags' spec with no parameters.
 */
function templatesFor(f: ServeFlags, config: { file: string; rest: unknown } | null): TemplateSet {
  const { image, cmd, ami, instanceType } = specFlags(f);
  const base = f.provider === 'docker' ? { ...(image ? { image } : {}), ...(cmd ? { cmd } : {}) } : f.provider === 'ec2' ? { ...(ami ? { ami } : {}), ...(instanceType ? { instanceType } : {}) } : {};
  const fallback = providerDefaultTemplate(f.provider === 'fake' ? null : f.provider, base);
  if (config === null) return new TemplateSet([fallback]);
  return TemplateSet.fromConfig(parseConfig(config.file, config.rest, { provider: f.provider }), fallback);
}

/**
 * SIGHUP reads `--config` again and swaps the templates in at once. A file with a problem is refused (and
 * logged with its path) and the templates in use stay. Workspaces keep their specs: those whose template
 * changed show `outdated` until `workspace.update` or, with `autoUpdate: 'on-start'`, their next start.
 */
function reloadOnHangup(load: () => TemplateSet, templates: TemplateSet, logger: Logger): void {
  process.on('SIGHUP', () => {
    try {
      const next = load();
      const changed = next.all.filter((t) => templates.get(t.name)?.version !== t.version).map((t) => t.name);
      templates.replace(next.all);
      logger.info({ templates: next.names, changed }, 'templates reloaded');
    } catch (err) {
      logger.error({ err: errorMessage(err) }, 'templates not reloaded: the config has a problem; the templates in use stay');
    }
  });
}

/** A `--max-running-*` flag: a whole number ≥ 1, or null when absent; undefined (after saying why) when bad. */
function quotaFlag(flag: string, value: string | undefined): number | null | undefined {
  if (value === undefined) return null;
  const n = Number(value);
  if (Number.isInteger(n) && n >= 1) return n;
  process.stderr.write(`wsup: ${flag} must be a whole number of workspaces (1 or more), got ${JSON.stringify(value)}\n`);
  return undefined;
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

/**
 * Resolves on the first SIGINT/SIGTERM. A second one exits at once, except the same signal again within
 * `RELAY_WINDOW_MS`: wrappers (npm, npx) relay the terminal's signal, so one Ctrl-C can arrive twice.
 */
function untilSignalled(logger: Logger): Promise<void> {
  return new Promise<void>((r) => {
    let first: { sig: string; at: number } | null = null;
    const stop = (sig: string) => {
      if (first === null) {
        first = { sig, at: Date.now() };
        return r();
      }
      if (sig === first.sig && Date.now() - first.at < RELAY_WINDOW_MS) return logger.info({ sig }, 'already shutting down');
      logger.warn({ sig }, 'second signal: exiting now');
      process.exit(130);
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
