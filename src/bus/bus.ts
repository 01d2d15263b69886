/**
 * createBus: one entry point per event kind for producers (server, providers, cluster), one routing stage into
 * the supervisor's {@link BusSink}.
 *
 * @example
 * const bus = createBus({ sink: supervisor.busSink(), quietMs: 2000, maxWaitMs: 15000 });
 * bus.fileWritten({ workspaceId: 'ws-1', path: 'src/app.ts', at: Date.now() }); // throws on a bad event
 * // 2 s after the burst's last write: sink.restart('ws-1', { source: 'file-write', reason: '1 file written: src/app.ts', … })
 * bus.activity({ workspaceId: 'ws-1', source: 'agent heartbeat', at: Date.now() }); // sink.activity at once…
 * // …and later heartbeats inside the next 1 s fold into one trailing sink.activity('ws-1', 'agent heartbeat')
 * await bus.close(); // flushes open bursts: a write the bus accepted always ends in a restart
 */
import { Subject, asyncScheduler, type Observable } from 'rxjs';
import { ShuttingDownError } from '../errors.ts';
import { ActivityThrottle } from './activity-throttle.ts';
import { BurstCoalescer } from './burst-coalescer.ts';
import { formatReason } from './coalesce.ts';
import type { ActivityEvent, BusCommand, BusCounters, BusOptions, Burst, ClaimEvent, FileWritten, LivenessEvent, RestartEvent } from './types.ts';
import {
  type BusEventKind,
  UnknownWorkspaceError,
  assertActivityShape,
  assertFileWrittenShape,
  assertWorkspaceIdFor,
  parseClaim,
  parseLiveness,
  parseRestart,
} from './validate.ts';

export interface Bus {
  /** Record a file write; it joins the workspace's open burst. Throws `InvalidBusEventError` / `UnknownWorkspaceError`. */
  fileWritten(ev: FileWritten): void;
  /** Provider liveness, passed straight through (the actor itself ignores "died" while starting). */
  liveness(ev: LivenessEvent): void;
  /** Cluster claim, passed straight through to `sink.claim` (counted as dropped if the sink has none). */
  claim(ev: ClaimEvent): void;
  /** A restart from another producer, routed in order with everything else. */
  restart(ev: RestartEvent): void;
  /**
   * Activity on a workspace, coalesced per workspace: the first event reaches `sink.activity` at once, later ones
   * inside `activityWindowMs` fold into one trailing delivery with the latest source. Throws like `fileWritten`.
   */
  activity(ev: ActivityEvent): void;
  counters(): BusCounters;
  /** Every command the routing stage delivered, for observers (metrics, the "why" timeline). */
  readonly commands$: Observable<BusCommand>;
  /**
   * Refuse new events, flush every open burst to the sink now, then complete. Flushing is the "nothing lost"
   * choice: the alternative silently drops writes the bus already accepted. Idempotent; close the bus before
   * draining the supervisor so the flushed restarts still find their actors.
   */
  close(): Promise<void>;
}

export const BUS_DEFAULTS = { quietMs: 2000, maxWaitMs: 15_000, idleExpireMs: 30_000, activityWindowMs: 5000 } as const;

/** A burst as the restart the sink receives; `burstNo` makes the requester unique and traceable in logs. */
export function burstCommand(b: Burst, burstNo: number): BusCommand {
  return {
    kind: 'restart',
    workspaceId: b.workspaceId,
    req: { source: 'file-write', reason: formatReason(b), requester: `bus:file-write:${burstNo}` },
  };
}

function positive(name: string, v: number): number {
  if (!Number.isFinite(v) || v <= 0) throw new RangeError(`createBus: ${name} must be a positive number of ms, got ${v}`);
  return v;
}

export function createBus(opts: BusOptions): Bus {
  const { sink, onSinkError } = opts;
  const scheduler = opts.scheduler ?? asyncScheduler;
  const quietMs = positive('quietMs', opts.quietMs ?? BUS_DEFAULTS.quietMs);
  const maxWaitMs = positive('maxWaitMs', opts.maxWaitMs ?? BUS_DEFAULTS.maxWaitMs);
  const idleExpireMs = positive('idleExpireMs', opts.idleExpireMs ?? BUS_DEFAULTS.idleExpireMs);
  const activityWindowMs = positive('activityWindowMs', opts.activityWindowMs ?? BUS_DEFAULTS.activityWindowMs);
  if (maxWaitMs < quietMs) throw new RangeError(`createBus: maxWaitMs (${maxWaitMs}) must be ≥ quietMs (${quietMs})`);

  const c: BusCounters = {
    writesSeen: 0,
    bursts: 0,
    restartsIssued: 0,
    writesFolded: 0,
    rejected: 0,
    dropped: 0,
    sinkErrors: 0,
    activeGroups: 0,
    activitySeen: 0,
    activityDelivered: 0,
    activityFolded: 0,
    activityWindows: 0,
  };
  /**
   * Pass-through events and activity deliveries bound for the sink. Bursts call `route` directly: every path into
   * `route` is synchronous, so the sink still sees one stream, in the order events were handed over.
   */
  const input$ = new Subject<BusCommand>();
  const commands$ = new Subject<BusCommand>();
  const toCommand = (b: Burst): BusCommand => {
    c.bursts++;
    c.writesFolded += b.writes - 1;
    return burstCommand(b, c.bursts);
  };
  // Writes go straight into the coalescer (a Subject hop per write cost ~100 ns of a ~400 ns budget), and its
  // bursts straight into `route` (the hop was ~5% of the bus's time once writes were cheap).
  const coalescer = new BurstCoalescer({ quietMs, maxWaitMs, idleExpireMs, scheduler }, (b) => route(toCommand(b)));
  // Activity likewise: the throttle sees every event, the routing stage only its deliveries (≤ 2 per window).
  const throttle = new ActivityThrottle({ windowMs: activityWindowMs, scheduler }, (workspaceId, source) =>
    input$.next({ kind: 'activity', workspaceId, source }),
  );
  let closed = false;

  const failed = (err: unknown, cmd: BusCommand): void => {
    c.sinkErrors++;
    onSinkError?.(err, cmd);
  };

  /**
   * The one routing stage. A sink failure, `accepts` included, is reported, never allowed to end the stream: it
   * never throws, so a burst routed from the coalescer's timer cannot stop that timer.
   */
  const route = (cmd: BusCommand): void => {
    try {
      if (!sink.accepts(cmd.workspaceId)) {
        c.dropped++; // destroyed between the event and now (e.g. mid-burst): nothing left to restart
        return;
      }
    } catch (err) {
      failed(err, cmd);
      return;
    }
    try {
      if (cmd.kind === 'restart') {
        c.restartsIssued++;
        const p = sink.restart(cmd.workspaceId, cmd.req);
        if (p instanceof Promise) p.catch((err: unknown) => failed(err, cmd));
      } else if (cmd.kind === 'liveness') {
        sink.liveness(cmd.workspaceId, cmd.alive, cmd.detail);
      } else if (cmd.kind === 'activity') {
        if (!sink.activity) {
          c.dropped++;
          return;
        }
        c.activityDelivered++;
        sink.activity(cmd.workspaceId, cmd.source);
      } else if (sink.claim) {
        sink.claim(cmd.workspaceId, cmd.ownerId, cmd.claimBuildId);
      } else {
        c.dropped++;
        return;
      }
    } catch (err) {
      failed(err, cmd);
    }
    if (commands$.observed) commands$.next(cmd);
  };

  let done!: () => void;
  const finished = new Promise<void>((resolve) => (done = resolve));
  input$.subscribe({
    next: route,
    complete: () => {
      commands$.complete();
      done();
    },
  });

  const reject = (err: unknown): never => {
    c.rejected++;
    throw err;
  };
  /** After validation: refuse when closed or when the sink does not know the workspace (never queue it). */
  const admit = (kind: BusEventKind, workspaceId: string): void => {
    if (closed) reject(new ShuttingDownError('bus'));
    if (!sink.accepts(workspaceId)) reject(new UnknownWorkspaceError(kind, workspaceId));
  };
  /** `admit` for the hot paths, whose shape check left the id's format unchecked: checked only when unknown. */
  const admitHot = (kind: BusEventKind, workspaceId: string): void => {
    if (closed) throw new ShuttingDownError('bus');
    if (!sink.accepts(workspaceId)) {
      assertWorkspaceIdFor(kind, workspaceId);
      throw new UnknownWorkspaceError(kind, workspaceId);
    }
  };
  const parsed = <T>(parse: (ev: unknown) => T, ev: unknown): T => {
    try {
      return parse(ev);
    } catch (err) {
      return reject(err);
    }
  };

  return {
    fileWritten(ev) {
      try {
        assertFileWrittenShape(ev);
        admitHot('file-write', ev.workspaceId);
      } catch (err) {
        reject(err);
      }
      c.writesSeen++;
      coalescer.write(ev.workspaceId, ev.path);
    },
    activity(ev) {
      try {
        assertActivityShape(ev);
        admitHot('activity', ev.workspaceId);
      } catch (err) {
        reject(err);
      }
      c.activitySeen++;
      throttle.offer(ev.workspaceId, ev.source);
    },
    liveness(ev) {
      const l = parsed(parseLiveness, ev);
      admit('liveness', l.workspaceId);
      input$.next({ kind: 'liveness', workspaceId: l.workspaceId, alive: l.alive, detail: l.detail });
    },
    claim(ev) {
      const cl = parsed(parseClaim, ev);
      admit('claim', cl.workspaceId);
      input$.next({ kind: 'claim', workspaceId: cl.workspaceId, ownerId: cl.ownerId, claimBuildId: cl.claimBuildId });
    },
    restart(ev) {
      const r = parsed(parseRestart, ev);
      admit('restart', r.workspaceId);
      input$.next({ kind: 'restart', workspaceId: r.workspaceId, req: { source: r.source, reason: r.reason, requester: r.requester } });
    },
    counters: () => ({ ...c, activeGroups: coalescer.activeGroups, activityFolded: throttle.folded, activityWindows: throttle.active }),
    commands$: commands$.asObservable(),
    close() {
      if (!closed) {
        closed = true;
        coalescer.flushAll();
        coalescer.dispose();
        throttle.flushAll();
        throttle.dispose();
        input$.complete();
      }
      return finished;
    },
  };
}
