/**
 * Prometheus metrics for one server instance, on its own registry (never prom-client's global one, so two
 * servers in one process — tests, embedding — do not collide).
 *
 * Provider latency is observed by the supervisor, which is built before the server: the builder creates a
 * {@link ProviderCallTap}, passes `tap.record` as the Supervisor's `onProviderCall`, and hands the tap to
 * `createServer`.
 *
 * @example
 * const tap = new ProviderCallTap();
 * const supervisor = new Supervisor({ provider, onProviderCall: tap.record });
 * const server = createServer({ supervisor, providerCalls: tap, tokens });
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Subscription } from 'rxjs';
import type { ServerBackend } from './backend.ts';
import type { PoolService } from '../supervisor/pools.ts';
import type { CycleWhy } from '../supervisor/types.ts';

export type ProviderCallListener = (op: 'start' | 'stop', id: string, ms: number, ok: boolean) => void;

/** Fan-in point for the Supervisor's `onProviderCall` hook; any number of listeners. */
export class ProviderCallTap {
  private readonly listeners = new Set<ProviderCallListener>();
  /** Pass this as `onProviderCall`; bound, so it can be handed around. */
  readonly record: ProviderCallListener = (op, id, ms, ok) => {
    for (const l of this.listeners) l(op, id, ms, ok);
  };
  listen(l: ProviderCallListener): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }
}

export interface ServerMetrics {
  readonly registry: Registry;
  connectionOpened(): void;
  connectionClosed(): void;
  error(code: string): void;
  close(): void;
}

export function createMetrics(supervisor: ServerBackend, tap?: ProviderCallTap, pools?: Pick<PoolService, 'gauges'>): ServerMetrics {
  const registry = new Registry();
  const cycles = new Counter({
    name: 'wsup_requests_total',
    help: 'Restart and ensure requests by source and outcome (started, joined, queued, deferred), counted when their cycle ends',
    labelNames: ['source', 'outcome'],
    registers: [registry],
  });
  const cycleRuns = new Counter({
    name: 'wsup_cycles_total',
    help: 'Cycles that began, completed or failed, by source',
    labelNames: ['source', 'result'],
    registers: [registry],
  });
  const latency = new Histogram({
    name: 'wsup_provider_call_seconds',
    help: 'Provider call latency by operation and result',
    labelNames: ['op', 'result'],
    buckets: [0.001, 0.005, 0.025, 0.1, 0.5, 1, 2.5, 10, 30, 120, 600],
    registers: [registry],
  });
  new Gauge({
    name: 'wsup_actors',
    help: 'Workspaces by lifecycle state, whether or not their actors are in memory',
    labelNames: ['state'],
    registers: [registry],
    collect() {
      if (!supervisor.summary) return; // a cluster backend: each replica's shards are counted by their supervisors
      const { counts } = supervisor.summary.getSnapshot().context;
      for (const [state, n] of Object.entries(counts)) this.set({ state }, n);
    },
  });
  if (supervisor.residency) {
    const residency = supervisor.residency.bind(supervisor);
    new Gauge({
      name: 'wsup_actors_in_memory',
      help: 'Workspace actors in memory now (the rest are in the store until something reaches them)',
      registers: [registry],
      collect() {
        this.set(residency().active);
      },
    });
    for (const [name, key, help] of [
      ['wsup_actor_activations_total', 'activations', 'Workspace actors brought back into memory from the store'],
      ['wsup_actor_deactivations_total', 'deactivations', 'Workspace actors dropped from memory after their quiet time'],
    ] as const) {
      new Counter({
        name,
        help,
        registers: [registry],
        collect() {
          this.reset();
          this.inc(residency()[key]);
        },
      });
    }
  }
  if (pools) poolGauges(registry, pools);
  const connections = new Gauge({ name: 'wsup_ws_connections', help: 'Open /control WebSocket connections', registers: [registry] });
  const errors = new Counter({ name: 'wsup_rpc_errors_total', help: 'JSON-RPC error replies by wsup or JSON-RPC code', labelNames: ['code'], registers: [registry] });

  // A request's source is known from the cycle that satisfied it (request answers carry only the
  // requester), so requests are counted by source and outcome when their cycle ends.
  const countRequests = (c: CycleWhy) => {
    for (const r of c.requesters) cycles.inc({ source: r.source, outcome: r.outcome });
  };
  const sub: Subscription = supervisor.events.subscribe((ev) => {
    switch (ev.type) {
      case 'cycle.started':
        cycleRuns.inc({ source: ev.cycle.source, result: 'started' });
        return;
      case 'cycle.completed':
        cycleRuns.inc({ source: ev.cycle.source, result: 'completed' });
        countRequests(ev.cycle);
        return;
      case 'cycle.failed':
        cycleRuns.inc({ source: ev.cycle.source, result: 'failed' });
        countRequests(ev.cycle);
        return;
      default:
        return;
    }
  });
  const unlisten = tap?.listen((op, _id, ms, ok) => latency.observe({ op, result: ok ? 'ok' : 'error' }, ms / 1000));

  return {
    registry,
    connectionOpened: () => connections.inc(),
    connectionClosed: () => connections.dec(),
    error: (code) => errors.inc({ code }),
    close() {
      sub.unsubscribe();
      unlisten?.();
    },
  };
}

/** Per pool: what it keeps, and its unclaimed prebuilds by how they are doing (read from the actors at scrape time). */
function poolGauges(registry: Registry, pools: Pick<PoolService, 'gauges'>): void {
  const gauge = (name: string, help: string, pick: (v: ReturnType<PoolService['gauges']>[number]) => number) =>
    new Gauge({
      name,
      help,
      labelNames: ['pool'],
      registers: [registry],
      collect() {
        this.reset(); // a deleted pool's series goes away
        for (const v of pools.gauges()) this.set({ pool: v.pool }, pick(v));
      },
    });
  gauge('wsup_pool_desired', 'Prebuilds each pool keeps started and unclaimed', (v) => v.desired);
  gauge('wsup_pool_ready', 'Unclaimed running prebuilds per pool: what a claim takes first', (v) => v.ready);
  gauge('wsup_pool_starting', 'Unclaimed prebuilds per pool on their way to running', (v) => v.starting);
  gauge('wsup_pool_failing', 'Unclaimed prebuilds per pool whose last start failed', (v) => v.failing);
}
