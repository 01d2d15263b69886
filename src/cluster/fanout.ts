/**
 * Event fan-out: the events of the shards owned here go out through NOTIFY (batched, each under the
 * payload limit), and the other replicas' come in, so every replica's subscribers see the whole cluster.
 *
 * @example
 * const fanout = new Fanout({ engine, replica: 'r1', channel: 'wsup_public_events', clock, report });
 * fanout.publish(ev);                   // here, and to the other replicas
 * fanout.received(payload);             // a NOTIFY from the channel
 * fanout.events.subscribe(console.log); // every replica's events
 */
import { Subject, type Observable } from 'rxjs';
import type { SqlEngine } from '../store/engine.ts';
import type { Clock } from '../supervisor/clock.ts';
import type { SupervisorEvent } from '../supervisor/types.ts';

/** NOTIFY payloads must stay under 8000 bytes. */
const NOTIFY_LIMIT = 7800;
/** Events published within this window go out in one statement. */
const FLUSH_MS = 5;

export interface FanoutOptions {
  engine: SqlEngine;
  replica: string;
  channel: string;
  clock: Clock;
  report: (err: unknown, what: string) => void;
}

export class Fanout {
  private readonly events$ = new Subject<SupervisorEvent>();
  private readonly outbox: string[] = [];
  private flushing: unknown = null;
  private closed = false;

  constructor(private readonly opts: FanoutOptions) {}

  get events(): Observable<SupervisorEvent> {
    return this.events$.asObservable();
  }

  /** An event of a shard owned here: to this replica's subscribers now, to the others' with the next flush. */
  publish(ev: SupervisorEvent): void {
    this.events$.next(ev);
    if (this.closed) return;
    let text = JSON.stringify({ r: this.opts.replica, e: ev });
    if (text.length > NOTIFY_LIMIT) text = JSON.stringify({ r: this.opts.replica, e: { type: ev.type, id: ev.id, at: ev.at, truncated: true } });
    this.outbox.push(text);
    this.flushing ??= this.opts.clock.setTimeout(() => this.flush(), FLUSH_MS);
  }

  /** A notification on the events channel (this replica's own are skipped: they were delivered at publish). */
  received(payload: string): void {
    try {
      const { r, e } = JSON.parse(payload) as { r: string; e: SupervisorEvent };
      if (r !== this.opts.replica) this.events$.next(e);
    } catch (err) {
      this.opts.report(err, 'unreadable event notification');
    }
  }

  close(): void {
    this.closed = true;
    if (this.flushing !== null) this.opts.clock.clearTimeout(this.flushing);
    this.flushing = null;
  }

  private flush(): void {
    this.flushing = null;
    const batch = this.outbox.splice(0);
    if (batch.length === 0 || this.closed) return;
    this.opts.engine
      .query('SELECT pg_notify($1, x) FROM unnest($2::text[]) AS x', [this.opts.channel, batch])
      .catch((err: unknown) => this.opts.report(err, 'publishing events failed'));
  }
}
