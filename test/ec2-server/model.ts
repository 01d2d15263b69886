/**
 * The instance model behind the fake EC2 server: instances, tags and the state machine EC2 documents
 * (pending → running, stopping → stopped, shutting-down → terminated), with transition delays read from a
 * mutable `Ec2Delays` object so a test can slow one phase down mid-run.
 *
 * State is advanced lazily from timestamps on every read (`advance`), so there are no timers to leak and an
 * injected `now()` makes every transition deterministic.
 *
 * RunInstances' `ClientToken` is idempotent as in EC2: the same token with the same parameters returns what
 * the first call launched (in its current state, even once terminated: EC2 keeps a token for at least a day
 * after its instances terminate), and the same token with other parameters fails with
 * IdempotentParameterMismatch.
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
  /** The RunInstances ClientToken it was launched with, if any. */
  clientToken?: string;
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
  /** RunInstances ClientToken → that call's parameters and what it launched, so a retry launches nothing new. */
  private readonly tokens = new Map<string, { params: string; launched: Instance[] }>();

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

  /**
   * `params` is the request's canonical form without its token: a token reused with other parameters is
   * refused, whatever the first call launched.
   */
  launch(imageId: string, instanceType: string, count: number, tags: Map<string, string>, clientToken?: string, params = ''): Instance[] {
    if (clientToken !== undefined && (clientToken.length > 64 || !/^[\x20-\x7e]*$/.test(clientToken))) {
      throw new Ec2ApiError('InvalidParameterValue', 'ClientToken must be at most 64 ASCII characters');
    }
    const earlier = clientToken === undefined ? undefined : this.tokens.get(clientToken);
    if (earlier !== undefined) {
      if (earlier.params !== params) {
        throw new Ec2ApiError('IdempotentParameterMismatch', 'Arguments on this idempotent request are inconsistent with arguments used in previous request(s).');
      }
      this.advance();
      return earlier.launched;
    }
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
        ...(clientToken !== undefined && { clientToken }),
        state: 'pending',
        settlesAt: this.now() + this.delays.pendingMs,
      };
      this.instances.set(inst.instanceId, inst);
      launched.push(inst);
    }
    if (clientToken !== undefined) this.tokens.set(clientToken, { params, launched });
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
