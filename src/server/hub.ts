/**
 * Event fan-out: one subscription to `supervisor.events`, serialized once per event, routed by workspace
 * id to the subscribers that asked for it (a Map lookup, not a scan of every subscriber). Also keeps a
 * bounded ring of recent events per workspace for `events.history` when no store-backed history is given.
 */
import type { Subscription } from 'rxjs';
import type { WorkspaceEvent } from '../protocol/index.ts';
import type { ServerBackend } from './backend.ts';
import type { SupervisorEvent } from '../supervisor/types.ts';

/** Compile-time proof that the wire type mirrors the supervisor's event type. */
const toWire = (ev: SupervisorEvent): WorkspaceEvent => ev;

export interface EventSink {
  /** Deliver one event (already JSON, `bytes` long in UTF-8) for subscription `sub`. Must not throw and must not block. */
  deliver(sub: string, json: string, ev: WorkspaceEvent, bytes: number): void;
}

interface Sub {
  key: string;
  sink: EventSink;
  ids: string[] | null;
}

export class Hub {
  private readonly all = new Map<string, Sub>();
  private readonly byId = new Map<string, Map<string, Sub>>();
  private readonly subs = new Map<string, Sub>();
  private readonly rings = new Map<string, WorkspaceEvent[]>();
  private readonly subscription: Subscription;
  private seq = 0;

  constructor(
    supervisor: Pick<ServerBackend, 'events'>,
    private readonly ringSize = 100,
  ) {
    this.subscription = supervisor.events.subscribe((ev) => this.publish(toWire(ev)));
  }

  /** Subscribe `sink` to every event (`ids` null) or to those of `ids` (distinct); returns the subscription key. */
  subscribe(sink: EventSink, ids: string[] | null): string {
    const sub: Sub = { key: `s${++this.seq}`, sink, ids };
    this.subs.set(sub.key, sub);
    if (ids === null) this.all.set(sub.key, sub);
    else
      for (const id of ids) {
        let m = this.byId.get(id);
        if (!m) this.byId.set(id, (m = new Map<string, Sub>()));
        m.set(sub.key, sub);
      }
    return sub.key;
  }

  unsubscribe(key: string): boolean {
    const sub = this.subs.get(key);
    if (!sub) return false;
    this.subs.delete(key);
    this.all.delete(key);
    for (const id of sub.ids ?? []) {
      const m = this.byId.get(id);
      m?.delete(key);
      if (m?.size === 0) this.byId.delete(id);
    }
    return true;
  }

  /** The ids a subscription watches (null: all). */
  idsOf(key: string): string[] | null {
    return this.subs.get(key)?.ids ?? null;
  }

  history(id: string, limit: number): WorkspaceEvent[] {
    const ring = this.rings.get(id) ?? [];
    return ring.slice(Math.max(0, ring.length - limit));
  }

  get subscriberCount(): number {
    return this.subs.size;
  }

  /** Exposed for benchmarks and tests that feed events without a supervisor cycle. */
  publish(ev: WorkspaceEvent): void {
    if (this.ringSize > 0) {
      let ring = this.rings.get(ev.id);
      if (!ring) this.rings.set(ev.id, (ring = []));
      ring.push(ev);
      if (ring.length > this.ringSize) ring.shift();
    }
    const targeted = this.byId.get(ev.id);
    if (this.all.size === 0 && !targeted) return;
    const json = JSON.stringify(ev);
    const bytes = Buffer.byteLength(json);
    for (const sub of this.all.values()) sub.sink.deliver(sub.key, json, ev, bytes);
    if (targeted) for (const sub of targeted.values()) sub.sink.deliver(sub.key, json, ev, bytes);
  }

  close(): void {
    this.subscription.unsubscribe();
    this.subs.clear();
    this.all.clear();
    this.byId.clear();
  }
}
