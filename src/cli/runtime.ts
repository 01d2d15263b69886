/**
 * Builds what `wsup serve` runs: the store (PGlite in `<dataDir>/pglite` by default, PostgreSQL with a
 * `postgres://` url), a provider, a durable supervisor restored from the store and reconciled with the
 * provider, and the bus that coalesces file writes and carries provider liveness into the actors.
 *
 * @example
 * const rt = await buildRuntime({ provider: 'process', dataDir: '.wsup', logger });
 * const server = createServer({ supervisor: rt.supervisor, providerCalls: rt.providerCalls, tokens, onFilesWritten: rt.filesWritten });
 * await rt.close();
 */
import { randomBytes } from 'node:crypto';
import { BUS_DEFAULTS, createBus, type Bus } from '../bus/index.ts';
import { WsupError, errorMessage } from '../errors.ts';
import { FakeProvider } from '../providers/fake.ts';
import { createProcessProvider, parseProcessRecord, type ProcessRecord, type ProcessRecords } from '../providers/process.ts';
import type { Provider } from '../providers/types.ts';
import type { Logger } from '../server/logger.ts';
import { Subject } from 'rxjs';
import type { ClusterClaims, ClusterParams, ClusterPools, Replica, RouteCall } from '../cluster/index.ts';
import { QuotaLedger, type QuotaLimits } from '../supervisor/quota.ts';
import type { ServerBackend } from '../server/backend.ts';
import { ProviderCallTap } from '../server/metrics.ts';
import type { FilesWrittenHook, HistoryFn } from '../server/handlers.ts';
import type { WorkspaceStore } from '../store/index.ts';
import type { PolicyPatch, SupervisorEvent } from '../supervisor/types.ts';
import { DEFAULT_SHUTDOWN_GRACE_MS } from './defaults.ts';
import { openStore } from './open-store.ts';
import { DurableBursts } from '../supervisor/bursts.ts';
import { ClaimService } from '../supervisor/claims.ts';
import { PoolService } from '../supervisor/pools.ts';
import { eventHistory, openDurableSupervisor, type OrphanPolicy } from '../supervisor/durable.ts';
import { Supervisor, type SupervisorOptions } from '../supervisor/supervisor.ts';

export type ProviderKind = 'process' | 'docker' | 'ec2' | 'fake';

export interface RuntimeOptions {
  provider: ProviderKind;
  dataDir: string;
  /** `postgres://…` for PostgreSQL; otherwise PGlite in `<dataDir>/pglite`. */
  databaseUrl?: string;
  /** Skip the store entirely (tests, benchmarks): nothing survives a restart. */
  memory?: boolean;
  /** A store already opened (by `openStore`); the runtime owns it from here and closes it. */
  store?: WorkspaceStore;
  /** A provider already built (an embedding program's own): used instead of making one of kind `provider`. */
  providerInstance?: Provider;
  /** FakeProvider latency, for `--provider fake`. */
  fakeLatencyMs?: number;
  /** Default workspace spec for docker (`image`, `cmd`) and ec2 (`ami`, `instanceType`). */
  image?: string;
  cmd?: string[];
  ami?: string;
  instanceType?: string;
  /** Provider resources no stored workspace owns: report (default) or remove. */
  orphans?: OrphanPolicy;
  /** A hook before every provider start (a template auto-update), run before the claim service's token. */
  prepareSpec?: PrepareSpec;
  /** The server's default lifecycle policy (under each template's and workspace's own). */
  policy?: PolicyPatch;
  /** Running quotas per owner and per template/pool (read on every check, so a reload applies at once). */
  quota?: () => QuotaLimits;
  /** Quiet time after which an idle workspace's actor leaves memory (default 5 minutes; 0 keeps every one). */
  deactivateAfterMs?: number;
  logger: Logger;
}

type PrepareSpec = NonNullable<SupervisorOptions['prepareSpec']>;

export interface Runtime {
  supervisor: Supervisor;
  bus: Bus;
  providerCalls: ProviderCallTap;
  provider: Provider;
  /** `files.written` on /control goes through the bus's burst coalescing. */
  filesWritten: FilesWrittenHook;
  /** Store-backed history for `events.history`, when the store is wired. */
  history?: HistoryFn;
  /** Prebuild claims and the `/agent` channel's state, when the store is wired. */
  claims?: ClaimService;
  /** Prebuild pools that keep themselves full, when the store is wired. */
  pools?: PoolService;
  /** What got wired, for the startup banner. */
  wiring: { provider: string; store: string };
  /** Shut down: provider calls in flight get up to `deadlineMs` (default `DEFAULT_SHUTDOWN_GRACE_MS`). */
  close(deadlineMs?: number): Promise<void>;
}

export async function buildRuntime(opts: RuntimeOptions): Promise<Runtime> {
  const { logger } = opts;
  const store = opts.memory ? null : (opts.store ?? (await openStore(opts)));
  const provider = await makeProvider(opts, store);
  const providerCalls = new ProviderCallTap();
  // Activity reaches an actor up to one bus window late (it is coalesced there): the idle stop allows for it.
  const activityWindowMs = BUS_DEFAULTS.activityWindowMs;
  const onError = (err: unknown, ctx: { id?: string; what: string }) => logger.error({ err: errorMessage(err), ...ctx }, ctx.what);
  // Claims load before recovery and follow it, so a claim build that completes during recovery is seen.
  const claims = store ? new ClaimService({ store, onError }) : null;
  const common = {
    provider,
    config: { activityGraceMs: activityWindowMs },
    ...(opts.policy ? { policy: opts.policy } : {}),
    ...(opts.quota ? { quota: opts.quota } : {}),
    // A claimed prebuild counts against its claimer's quota.
    ...(claims ? { ownerOf: (id: string) => claims.ownerOf(id) } : {}),
    onProviderCall: providerCalls.record,
    onError,
  };
  let supervisor: Supervisor;
  await claims?.load();
  const prepareSpec = chain(opts.prepareSpec, claims?.prepareSpec);
  if (store) {
    const opened = await openDurableSupervisor({
      ...common,
      store,
      orphans: opts.orphans ?? 'report',
      ...(opts.deactivateAfterMs !== undefined ? { deactivateAfterMs: opts.deactivateAfterMs } : {}),
      ...(prepareSpec ? { prepareSpec } : {}),
      ...(claims ? { beforeRecovery: (s: Supervisor) => claims.attach(s) } : {}),
    });
    supervisor = opened.supervisor;
    const r = opened.recovery;
    logger.info({ restored: r.restored.length, cold: r.cold, adopted: r.adopted.length, vanished: r.vanished, orphans: r.orphans }, 'recovered from the store');
    for (const c of r.corrupt) logger.error({ workspaceId: c.id }, `quarantined: ${c.reason}`);
    await claims?.reconcile();
  } else {
    supervisor = new Supervisor({ ...common, ...(prepareSpec ? { prepareSpec } : {}) });
  }
  // After recovery, so the first pass counts every restored prebuild. Not awaited: boot does not wait for pools to fill.
  const pools = store && claims ? new PoolService({ store, claims, supervisor, onError: common.onError }) : null;
  pools?.start().catch((err: unknown) => common.onError(err, { what: 'starting the pool reconcilers failed' }));

  // Bursts go on record before their first write is acknowledged: one a kill -9 cut short restarts at the next start.
  const bursts = store ? new DurableBursts({ store, prefix: `files:${Date.now().toString(36)}.${randomBytes(3).toString('hex')}`, owns: () => true, onError }) : null;
  if (bursts) {
    const recovered = await bursts.recover(supervisor.busSink());
    if (recovered > 0) logger.info({ recovered }, 'restarting file-write bursts acknowledged before the last exit');
  }
  const sink = supervisor.busSink();
  const bus = createBus({ sink: bursts ? bursts.sink(sink) : sink, activityWindowMs, onSinkError: (err) => logger.error({ err: errorMessage(err) }, 'bus could not deliver a command') });
  const unwatch = provider.watch?.((ev) => {
    if (sink.accepts(ev.id)) bus.liveness({ workspaceId: ev.id, alive: ev.alive, detail: ev.detail });
  });
  const filesWritten: FilesWrittenHook = async (id, paths) => {
    if (bursts && (await supervisor.accepts(id))) await bursts.opened(id);
    const at = Date.now();
    for (const path of paths) bus.fileWritten({ workspaceId: id, path, at });
    bus.activity({ workspaceId: id, source: 'files.written', at }); // coalesced: ≤ 1 ACTIVITY per workspace per window
  };

  let closing: Promise<void> | null = null;
  return {
    supervisor,
    bus,
    providerCalls,
    provider,
    filesWritten,
    ...(store ? { history: (id: string, limit: number) => eventHistory(store, id, limit) } : {}),
    ...(claims ? { claims } : {}),
    ...(pools ? { pools } : {}),
    wiring: { provider: provider.kind, store: store ? store.kind : 'memory (nothing persisted)' },
    close(deadlineMs = DEFAULT_SHUTDOWN_GRACE_MS) {
      closing ??= (async () => {
        unwatch?.();
        await bus.close(); // flushes open bursts into the actors first: nothing written is lost
        await pools?.close(); // no pass asks for anything once the supervisor drains
        await supervisor.shutdown({ deadlineMs });
        claims?.close();
        await provider.close?.();
        await store?.close();
      })();
      return closing;
    },
  };
}

export interface ClusterRuntime {
  backend: ServerBackend;
  replica: Replica;
  providerCalls: ProviderCallTap;
  /** `files.written` goes to the workspace's owner, through its shard's bus: one restart per burst. */
  filesWritten: FilesWrittenHook;
  history: HistoryFn;
  /** Claims and the `/agent` channel's state across replicas. */
  claims: ClusterClaims;
  pools: ClusterPools;
  wiring: { provider: string; store: string };
  close(): Promise<void>;
}

/**
 * `wsup serve --cluster`: this process is one replica of a cluster on PostgreSQL. Commands for workspaces
 * it does not own are forwarded to their owner; leaving hands its shards over gracefully. Each shard's
 * owner also runs its claims, its file-write coalescing and the pools that hash to it (ShardServiceSet),
 * so the server gets the same pieces as one node does.
 */
export async function buildClusterRuntime(opts: RuntimeOptions & { replicaId?: string }): Promise<ClusterRuntime> {
  const { logger } = opts;
  if (!opts.databaseUrl) throw new WsupError('WSUP_INVALID_ARGUMENT', '--cluster needs PostgreSQL: pass --database-url or set DATABASE_URL');
  if (opts.provider === 'process') {
    throw new WsupError('WSUP_INVALID_ARGUMENT', '--cluster cannot use --provider process (local processes live on one host): use docker, ec2 or fake');
  }
  const databaseUrl = opts.databaseUrl;
  const provider = await makeProvider(opts, null);
  const cluster = await import('../cluster/index.ts');
  const providerCalls = new ProviderCallTap();
  const onError = (err: unknown, ctx: { id?: string; what: string }) => logger.error({ err: errorMessage(err), ...(ctx.id ? { workspaceId: ctx.id } : {}) }, ctx.what);
  // Reads and claim/pool rows that any replica may touch; workspace writes go through the replica's fenced store.
  const store = await openStore({ dataDir: opts.dataDir, databaseUrl });
  // Services route through the replica while it starts (a pool pass may run in its first shard's gain).
  let replicaReady: (r: Replica) => void = () => undefined;
  const started = new Promise<Replica>((r) => (replicaReady = r));
  const route = (async (method: string, params: Record<string, unknown>) => (await started).call(method, params as unknown as ClusterParams)) as RouteCall;
  const claims = await cluster.ClusterClaims.start({ url: databaseUrl, store, route, onError: (err, what) => onError(err, { what }) });
  const events = new Subject<SupervisorEvent>();
  const views = new cluster.ClusterViews(store, events.asObservable(), route);
  const ledger = new QuotaLedger(opts.quota ?? (() => ({})));
  const activityWindowMs = BUS_DEFAULTS.activityWindowMs;
  const shards = new cluster.ShardServiceSet({
    shards: cluster.DEFAULT_SHARDS,
    ledger,
    poolWorkspaces: views,
    poolClaims: claims,
    ...(opts.prepareSpec ? { prepareSpec: opts.prepareSpec } : {}),
    onClaimChange: (id) => claims.changed(id),
    onError,
  });
  const replica = await cluster.Replica.start({
    url: databaseUrl,
    provider,
    ...(opts.replicaId ? { replica: opts.replicaId } : {}),
    supervisor: {
      onProviderCall: providerCalls.record,
      ledger,
      // Activity reaches an actor up to one bus window late (it is coalesced there): the idle stop allows for it.
      config: { activityGraceMs: activityWindowMs },
      ...(opts.policy ? { policy: opts.policy } : {}),
      ...(opts.deactivateAfterMs !== undefined ? { deactivateAfterMs: opts.deactivateAfterMs } : {}),
    },
    services: shards.build,
    onError: (err, what) => logger.error({ err: errorMessage(err) }, what),
  });
  replicaReady(replica);
  const relay = replica.events.subscribe(events);
  const quota = new cluster.QuotaFeed({ store, ledger, events: replica.events, resyncs: replica.resyncs, local: (id) => shards.has(replica.shardOf(id)), onError: (err, what) => onError(err, { what }) });
  await quota.start();
  const unwatch = provider.watch?.((ev) => shards.liveness({ workspaceId: ev.id, alive: ev.alive, detail: ev.detail }));
  const pools = new cluster.ClusterPools(store, views, route, () => shards.gauges());
  let closing: Promise<void> | null = null;
  return {
    backend: cluster.clusterBackend(replica, { store, ledger }),
    replica,
    providerCalls,
    filesWritten: async (id, paths) => void (await route('files.written', { id, paths })),
    history: (id, limit) => eventHistory(store, id, limit),
    claims,
    pools,
    wiring: { provider: provider.kind, store: `postgres cluster, replica ${replica.id}` },
    close() {
      closing ??= (async () => {
        unwatch?.();
        quota.close();
        await replica.leave(); // hand shards over: open bursts flush and in-flight cycles finish first
        relay.unsubscribe();
        await claims.close();
        await store.close();
        await provider.close?.();
      })();
      return closing;
    },
  };
}

/** Docker's and AWS's SDKs load only when chosen: together they are most of a cold boot's module loading. */
async function makeProvider(opts: RuntimeOptions, store: WorkspaceStore | null): Promise<Provider> {
  if (opts.providerInstance) return opts.providerInstance;
  switch (opts.provider) {
    case 'fake':
      return new FakeProvider({ latencyMs: opts.fakeLatencyMs ?? 50 });
    case 'process':
      return createProcessProvider({ dataDir: opts.dataDir, ...(store ? { records: storeProcessRecords(store) } : {}) });
    case 'docker': {
      const { createDockerProvider } = await import('../providers/docker.ts');
      return createDockerProvider({ defaultSpec: { ...(opts.image ? { image: opts.image } : {}), ...(opts.cmd ? { cmd: opts.cmd } : {}) } });
    }
    case 'ec2': {
      const { createEc2Provider } = await import('../providers/ec2.ts');
      return createEc2Provider({ defaultSpec: { ...(opts.ami ? { ami: opts.ami } : {}), ...(opts.instanceType ? { instanceType: opts.instanceType } : {}) } });
    }
  }
}

/** Hooks before a provider start, in order: each gets the spec the one before it returned. */
function chain(...hooks: Array<PrepareSpec | undefined>): PrepareSpec | undefined {
  const present = hooks.filter((h): h is PrepareSpec => h !== undefined);
  if (present.length <= 1) return present[0];
  return async (input) => {
    let spec = input.spec;
    for (const hook of present) spec = await hook({ ...input, spec });
    return spec;
  };
}

/** Local-process records live in the store, next to the workspaces they belong to. */
function storeProcessRecords(store: WorkspaceStore): ProcessRecords {
  return {
    get: async (id) => {
      const data = await store.processes.get(id);
      return data === null ? null : parseProcessRecord(id, data, `of workspace ${id} in the store`);
    },
    put: (id, rec: ProcessRecord) => store.processes.put(id, rec),
    delete: (id) => store.processes.delete(id),
    all: async () => (await store.processes.list()).map((r) => parseProcessRecord(r.workspaceId, r.data, `of workspace ${r.workspaceId} in the store`)),
  };
}
