/**
 * The instance model behind the fake EC2 server: instances, tags and the state machine EC2 documents
 * (pending → running, stopping → stopped, shutting-down → terminated), with transition delays read from a
 * mutable `Ec2Delays` object so a test can slow one phase down mid-run.
 *
 * State is advanced lazily from timestamps on every read (`advance`), so there are no timers to leak and an
 * injected `now()` makes every transition deterministic.
 */
import { randomBytes } from 'node:crypto';

export type InstanceStateName = 'pending' | 'running' | 'stopping' | 'stopped' | 'shutting-down' | 'terminated';

/** EC2's numeric state codes (low byte), as returned in `instanceState.code`. */
export const STATE_CODE: Record<InstanceStateName, number> = {
  pending: 0,
  running: 16,
  'shutting-down': 32,
  terminated: 48,
  stopping: 64,
  stopped: 80,
};

export interface Ec2Delays {
  /** pending → running. */
  pendingMs: number;
  /** stopping → stopped. */
  stoppingMs: number;
  /** shutting-down → terminated. */
  shuttingDownMs: number;
  /** How long a terminated instance stays visible before DescribeInstances answers NotFound. */
  terminatedRetentionMs: number;
}

export interface Instance {
  instanceId: string;
  reservationId: string;
  imageId: string;
  instanceType: string;
  privateIpAddress: string;
  launchTime: Date;
  tags: Map<string, string>;
  state: InstanceStateName;
  /** When the current transient state becomes its stable successor (or, when terminated, disappears). */
  settlesAt: number;
}

/** A modelled EC2 API error: `code` is EC2's error code, rendered into the XML error body. */
export class Ec2ApiError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly status = 400,
  ) {
    super(message);
    this.name = 'Ec2ApiError';
  }
}

const NEXT: Partial<Record<InstanceStateName, InstanceStateName>> = {
  pending: 'running',
  stopping: 'stopped',
  'shutting-down': 'terminated',
};

const hex = (bytes: number): string => randomBytes(bytes).toString('hex');

export class Ec2Model {
  private readonly instances = new Map<string, Instance>();
  private ipCounter = 0;
  /** RunInstances ClientToken → what that call launched, so a retried call launches nothing new. */
  private readonly tokens = new Map<string, Instance[]>();

  constructor(
    readonly delays: Ec2Delays,
    private readonly now: () => number,
  ) {}

  /** Move every instance whose transition is due to its next state; drop terminated ones past retention. */
  advance(): void {
    const t = this.now();
    for (const inst of this.instances.values()) {
      const next = NEXT[inst.state];
      if (next !== undefined && t >= inst.settlesAt) {
        inst.state = next;
        inst.settlesAt = next === 'terminated' ? inst.settlesAt + this.delays.terminatedRetentionMs : Infinity;
      }
      if (inst.state === 'terminated' && t >= inst.settlesAt) this.instances.delete(inst.instanceId);
    }
  }

  all(): Instance[] {
    this.advance();
    return [...this.instances.values()];
  }

  /** Look up ids the way EC2 does: one unknown id fails the whole call with InvalidInstanceID.NotFound. */
  get(ids: string[]): Instance[] {
    this.advance();
    const missing = ids.filter((id) => !this.instances.has(id));
    if (missing.length > 0) {
      const malformed = missing.find((id) => !/^i-[0-9a-f]{8,17}$/.test(id));
      if (malformed !== undefined) throw new Ec2ApiError('InvalidInstanceID.Malformed', `Invalid id: "${malformed}"`);
      throw new Ec2ApiError('InvalidInstanceID.NotFound', `The instance IDs '${missing.join(', ')}' do not exist`);
    }
    return ids.map((id) => this.instances.get(id)!);
  }

  launch(imageId: string, instanceType: string, count: number, tags: Map<string, string>, clientToken?: string): Instance[] {
    const earlier = clientToken === undefined ? undefined : this.tokens.get(clientToken);
    if (earlier !== undefined) return earlier;
    const reservationId = `r-${hex(8)}`;
    const launched: Instance[] = [];
    for (let i = 0; i < count; i++) {
      const n = this.ipCounter++;
      const inst: Instance = {
        instanceId: `i-${hex(8)}`,
        reservationId,
        imageId,
        instanceType,
        privateIpAddress: `10.0.${Math.floor(n / 250) % 250}.${(n % 250) + 4}`,
        launchTime: new Date(this.now()),
        tags: new Map(tags),
        state: 'pending',
        settlesAt: this.now() + this.delays.pendingMs,
      };
      this.instances.set(inst.instanceId, inst);
      launched.push(inst);
    }
    if (clientToken !== undefined) this.tokens.set(clientToken, launched);
    return launched;
  }

  /** EC2 accepts StartInstances on stopped (and, as a no-op, on pending/running) instances only. */
  start(inst: Instance): void {
    if (inst.state === 'pending' || inst.state === 'running') return;
    if (inst.state !== 'stopped') {
      throw new Ec2ApiError(
        'IncorrectInstanceState',
        `The instance '${inst.instanceId}' is not in a state from which it can be started.`,
      );
    }
    this.enter(inst, 'pending', this.delays.pendingMs);
  }

  /** StopInstances: a no-op on stopping/stopped; pending and terminated instances cannot be stopped. */
  stop(inst: Instance): void {
    if (inst.state === 'stopping' || inst.state === 'stopped') return;
    if (inst.state !== 'running') {
      throw new Ec2ApiError(
        'IncorrectInstanceState',
        `This instance '${inst.instanceId}' is not in a state from which it can be stopped.`,
      );
    }
    this.enter(inst, 'stopping', this.delays.stoppingMs);
  }

  /** TerminateInstances works from every state and is idempotent. */
  terminate(inst: Instance): void {
    if (inst.state === 'shutting-down' || inst.state === 'terminated') return;
    this.enter(inst, 'shutting-down', this.delays.shuttingDownMs);
  }

  private enter(inst: Instance, state: InstanceStateName, delayMs: number): void {
    inst.state = state;
    inst.settlesAt = this.now() + delayMs;
  }
}
