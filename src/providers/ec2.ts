/**
 * EC2 provider: one instance per workspace, tagged `wsup=1`, `wsup:workspace=<id>` and `Name=<prefix><id>`,
 * driven through the real `@aws-sdk/client-ec2`.
 *
 * @example
 * const ec2 = createEc2Provider({ region: 'us-east-1', defaultSpec: { ami: 'ami-0abc', instanceType: 't3.micro' } });
 * const endpoint = await ec2.start({ id: 'ws1' }, signal); // 'ec2://i-0abc123?ip=10.0.0.5'
 *
 * Every call converges instead of acting blindly: it reads the workspace's instances by tag, takes the one
 * step that state allows, and polls (with backoff, up to a deadline) until the goal state. So a start that
 * finds the instance `stopping` (a restart that arrives mid-stop, e.g. during a burst of saves) waits for `stopped` and starts it, and an
 * `IncorrectInstanceState` from a race with another actor is a reason to look again, never a failure.
 *
 * `stop` terminates by default: workspaces are disposable and a stopped instance still costs its volumes.
 * `stopMode: 'stop'` keeps the instance (stopped) for a faster, warm next start.
 *
 * Region, credentials and endpoint come from the standard AWS chain unless given; with no `endpoint`
 * option the SDK itself honours `AWS_ENDPOINT_URL_EC2` and `AWS_ENDPOINT_URL`.
 *
 * Fencing (in a cluster, calls carry a `ProviderFence`): instances are tagged `wsup:shard` and `wsup:epoch`
 * with the lease of the call that launched or last adopted them (an adopting call re-tags the instance to
 * its own epoch: tags can change, so a takeover keeps the instance). A call finding any instance of the
 * workspace, terminated ones included (EC2 shows those for a while), with a newer epoch than its own
 * refuses with `FencedError` before it launches, starts, stops or terminates anything. EC2 has no
 * conditional terminate: the window between a stale call's read and its act is closed by the replica's
 * lease gate, not by the tags.
 *
 * RunInstances carries a `ClientToken` made of the epoch, the workspace and a nonce drawn once per start
 * call: the SDK's retries of that one request (a reply lost on the wire) launch one instance, while a later
 * start, even in the same epoch, gets a token of its own (EC2 remembers a token for a day after its
 * instance terminated and would answer with that dead instance).
 */
import { createHash, randomBytes } from 'node:crypto';
import {
  CreateTagsCommand,
  DescribeInstancesCommand,
  EC2Client,
  EC2ServiceException,
  RunInstancesCommand,
  StartInstancesCommand,
  StopInstancesCommand,
  TerminateInstancesCommand,
  type EC2ClientConfig,
  type Filter,
  type Instance,
  type RunInstancesCommandInput,
} from '@aws-sdk/client-ec2';
import { assertWorkspaceId, ProviderTimeoutError, WsupError } from '../errors.ts';
import { assertFence, fenceLabels, readMark, refuseStale, sameMark } from './fence.ts';
import type { Endpoint, Provider, ProviderFence, ProviderResource, ResourceStatus, WorkspaceSpec } from './types.ts';

/** The EC2 fields of a `WorkspaceSpec`; unset ones fall back to the provider's `defaultSpec`. */
export interface Ec2Spec {
  ami?: string;
  instanceType?: string;
  subnetId?: string;
  securityGroupIds?: string[];
}

/** Same shape as the supervisor's `Clock`, declared here because providers sit below the supervisor. */
export interface Ec2Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(id: unknown): void;
}

export interface Ec2ProviderOptions {
  /** A ready client (its config wins); otherwise one is built from the options below. */
  client?: EC2Client;
  region?: string;
  credentials?: EC2ClientConfig['credentials'];
  /** Query-API endpoint URL. Unset: the SDK's AWS_ENDPOINT_URL_EC2 / AWS_ENDPOINT_URL / regional default. */
  endpoint?: string;
  /** Fields used when a spec leaves them out, so `start({ id })` works (`wsup serve --ami --instance-type`). */
  defaultSpec?: Ec2Spec;
  /** `terminate` (default) or `stop`; see the module comment. */
  stopMode?: 'terminate' | 'stop';
  /** `Name` tag prefix. Default `wsup-`. */
  namePrefix?: string;
  /** State polling: doubles from `initialMs` (default 1000) to `maxMs` (default 15 000). */
  poll?: { initialMs?: number; maxMs?: number };
  /** Per start/stop call. Default 10 minutes: cold boots of large instances take minutes. */
  deadlineMs?: number;
  clock?: Ec2Clock;
}

/** The workspace has no AMI or instance type, so there is nothing to launch. */
export class Ec2SpecError extends WsupError {
  constructor(id: string, field: string) {
    super('WSUP_INVALID_ARGUMENT', `EC2 workspace ${id} has no ${field}: set spec.${field} or the provider's defaultSpec (wsup serve --ami AMI --instance-type TYPE)`, { workspaceId: id });
  }
}

/** The instance this start launched terminated before it ran (bad AMI, capacity, out-of-band terminate). */
export class Ec2InstanceLostError extends WsupError {
  constructor(id: string, instanceId: string, reason: string | undefined) {
    super('WSUP_NOT_FOUND', `EC2 instance ${instanceId} for workspace ${id} terminated while starting (${reason ?? 'no state reason'}): check the AMI, instance type and capacity, then restart`, { workspaceId: id });
  }
}

export const TAG = 'wsup';
export const TAG_WORKSPACE = 'wsup:workspace';
export const FENCE_TAGS = { shard: 'wsup:shard', epoch: 'wsup:epoch' };
/** Every state but `terminated`: a terminated instance is history, not a resource. */
const LIVE = ['pending', 'running', 'stopping', 'stopped', 'shutting-down'];
/** wsup's live instances: tagged `wsup=1` (a workspace tag alone does not make an instance ours). */
const OURS: Filter[] = [{ Name: `tag:${TAG}`, Values: ['1'] }, { Name: 'instance-state-name', Values: LIVE }];
/** Which of several instances of one workspace to keep: the one closest to running. */
const RANK: Record<string, number> = { running: 0, pending: 1, stopped: 2, stopping: 3, 'shutting-down': 4 };
/** `shutting-down` reads as `stopping`: the resource still exists but is on its way out. */
const STATUS: Record<string, ResourceStatus> = {
  pending: 'starting', running: 'running', stopping: 'stopping', 'shutting-down': 'stopping', stopped: 'stopped', terminated: 'absent',
};

const realClock: Ec2Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (id) => clearTimeout(id as NodeJS.Timeout),
};

/** EC2's error code (`IncorrectInstanceState`...), which the SDK puts in the exception's name. */
export const ec2ErrorCode = (err: unknown): string | undefined => (err instanceof EC2ServiceException ? err.name : undefined);

/** The contract: reject with the signal's reason, or an AbortError when the reason is not an Error. */
const abortReason = (signal: AbortSignal): Error =>
  signal.reason instanceof Error ? signal.reason : new DOMException('The operation was aborted', 'AbortError');
const stateOf = (i: Instance): string => i.State?.Name ?? 'unknown';
const tagOf = (i: Instance, key: string): string | undefined => i.Tags?.find((t) => t.Key === key)?.Value;
const markOf = (i: Instance) => readMark(tagOf(i, FENCE_TAGS.shard), tagOf(i, FENCE_TAGS.epoch));

/**
 * The RunInstances token of one start call (at most 64 ASCII characters, as EC2 requires): epoch and shard,
 * a digest of the workspace id (ids are up to 63 characters) and the call's nonce.
 */
export function launchToken(id: string, fence: ProviderFence | undefined, nonce: string): string {
  const lease = fence === undefined ? 'x' : `${fence.shard}e${fence.epoch}`;
  return `wsup-${lease}-${createHash('sha256').update(id).digest('hex').slice(0, 16)}-${nonce}`;
}
const byRank = (a: Instance, b: Instance): number =>
  (RANK[stateOf(a)] ?? 9) - (RANK[stateOf(b)] ?? 9) || (a.LaunchTime?.getTime() ?? 0) - (b.LaunchTime?.getTime() ?? 0);

/** `ec2://<instanceId>`, plus `?ip=<private ip>` when the instance has one. Data only: nothing dials it. */
export function ec2Endpoint(i: Instance): Endpoint {
  const ip = i.PrivateIpAddress;
  return `ec2://${i.InstanceId ?? ''}${ip ? `?ip=${ip}` : ''}`;
}

export function createEc2Provider(opts: Ec2ProviderOptions = {}): Provider {
  const owned = opts.client === undefined;
  const client =
    opts.client ??
    new EC2Client({
      ...(opts.region !== undefined && { region: opts.region }),
      ...(opts.credentials !== undefined && { credentials: opts.credentials }),
      ...(opts.endpoint !== undefined && { endpoint: opts.endpoint }),
    });
  const clock = opts.clock ?? realClock;
  const stopMode = opts.stopMode ?? 'terminate';
  const namePrefix = opts.namePrefix ?? 'wsup-';
  const initialMs = opts.poll?.initialMs ?? 1000;
  const maxMs = opts.poll?.maxMs ?? 15_000;
  const deadlineMs = opts.deadlineMs ?? 600_000;
  let closed = false;

  /** Every SDK call goes through here so an abort rejects with the caller's reason, not the SDK's. */
  async function send<T>(signal: AbortSignal | undefined, run: (o: { abortSignal?: AbortSignal }) => Promise<T>): Promise<T> {
    if (signal?.aborted) throw abortReason(signal);
    try {
      return await run(signal ? { abortSignal: signal } : {});
    } catch (err) {
      if (signal?.aborted) throw abortReason(signal);
      throw err;
    }
  }

  async function describe(filters: Filter[], signal?: AbortSignal): Promise<Instance[]> {
    const out: Instance[] = [];
    let NextToken: string | undefined;
    do {
      const page = await send(signal, (o) => client.send(new DescribeInstancesCommand({ Filters: filters, NextToken }), o));
      for (const r of page.Reservations ?? []) out.push(...(r.Instances ?? []));
      NextToken = page.NextToken;
    } while (NextToken);
    return out;
  }

  /**
   * The workspace's live instances, best first. With a fence, first refused when any of its instances,
   * terminated ones included, carries a newer epoch: that lease's owner acted on it after this call's.
   */
  async function instancesOf(id: string, signal?: AbortSignal, fence?: ProviderFence): Promise<Instance[]> {
    const all = await describe([{ Name: `tag:${TAG}`, Values: ['1'] }, { Name: `tag:${TAG_WORKSPACE}`, Values: [id] }], signal);
    for (const i of all) refuseStale(fence, markOf(i), `EC2 instance ${i.InstanceId ?? '?'} of workspace ${id}`);
    return all.filter((i) => LIVE.includes(stateOf(i))).sort(byRank);
  }

  /** An instance this call adopts carries its epoch from now on (so older calls are refused on it). */
  async function retag(i: Instance, fence: ProviderFence, signal: AbortSignal): Promise<void> {
    const Tags = Object.entries(fenceLabels(fence, FENCE_TAGS)).map(([Key, Value]) => ({ Key, Value }));
    await send(signal, (o) => client.send(new CreateTagsCommand({ Resources: idsOf([i]), Tags }), o));
  }

  /** Backoff sleep between polls; rejects at the deadline or with the signal's reason. */
  function makeWaiter(id: string, op: string, signal: AbortSignal): () => Promise<void> {
    const deadline = clock.now() + deadlineMs;
    let delay = initialMs;
    return () => {
      if (signal.aborted) return Promise.reject(abortReason(signal));
      const left = deadline - clock.now();
      if (left <= 0) return Promise.reject(new ProviderTimeoutError(id, `ec2 ${op}`, deadlineMs));
      const ms = Math.min(delay, left);
      delay = Math.min(delay * 2, maxMs);
      return new Promise<void>((resolve, reject) => {
        const onAbort = (): void => {
          clock.clearTimeout(timer);
          reject(abortReason(signal));
        };
        const timer = clock.setTimeout(() => {
          signal.removeEventListener('abort', onAbort);
          resolve();
        }, ms);
        signal.addEventListener('abort', onAbort, { once: true });
      });
    };
  }

  /** Run `step`, treating the listed EC2 error codes as "look again" rather than failure. */
  async function tolerate(codes: string[], step: () => Promise<unknown>): Promise<string | undefined> {
    try {
      await step();
      return undefined;
    } catch (err) {
      const code = ec2ErrorCode(err);
      if (code !== undefined && codes.includes(code)) return code;
      throw err;
    }
  }

  const idsOf = (is: Instance[]): string[] => is.map((i) => i.InstanceId ?? '').filter((x) => x !== '');
  const terminate = async (ids: string[], signal: AbortSignal, gone: Set<string>): Promise<void> => {
    // One id per call, so an InvalidInstanceID.NotFound (already reaped) names exactly which one is gone.
    for (const InstanceId of ids) {
      const code = await tolerate(['InvalidInstanceID.NotFound'], () =>
        send(signal, (o) => client.send(new TerminateInstancesCommand({ InstanceIds: [InstanceId] }), o)),
      );
      if (code !== undefined) gone.add(InstanceId);
    }
  };

  async function launch(spec: WorkspaceSpec, signal: AbortSignal, fence: ProviderFence | undefined, nonce: string): Promise<string> {
    const s = { ...opts.defaultSpec, ...(spec as Ec2Spec) };
    if (!s.ami) throw new Ec2SpecError(spec.id, 'ami');
    if (!s.instanceType) throw new Ec2SpecError(spec.id, 'instanceType');
    const Tags = [
      { Key: TAG, Value: '1' },
      { Key: TAG_WORKSPACE, Value: spec.id },
      { Key: 'Name', Value: `${namePrefix}${spec.id}` },
      ...Object.entries(fenceLabels(fence, FENCE_TAGS)).map(([Key, Value]) => ({ Key, Value })),
    ];
    const input: RunInstancesCommandInput = {
      ImageId: s.ami,
      InstanceType: s.instanceType as RunInstancesCommandInput['InstanceType'],
      SubnetId: s.subnetId,
      ...(s.securityGroupIds !== undefined && s.securityGroupIds.length > 0 ? { SecurityGroupIds: s.securityGroupIds } : {}),
      MinCount: 1,
      MaxCount: 1,
      // The SDK retries on throttling, 5xx and lost replies; the token makes those retries launch one instance.
      ClientToken: launchToken(spec.id, fence, nonce),
      TagSpecifications: [{ ResourceType: 'instance', Tags }],
    };
    const res = await send(signal, (o) => client.send(new RunInstancesCommand(input), o));
    return res.Instances?.[0]?.InstanceId ?? '';
  }

  /** The instance we launched, if it is visibly terminated. A filter (not InstanceIds) so that an id not yet
   * visible (EC2 is eventually consistent right after RunInstances) reads as "not lost yet", not NotFound. */
  async function lostLaunch(instanceId: string, signal: AbortSignal): Promise<Instance | undefined> {
    const [i] = await describe([{ Name: 'instance-id', Values: [instanceId] }], signal);
    return i !== undefined && stateOf(i) === 'terminated' ? i : undefined;
  }

  return {
    kind: 'ec2',

    async start(spec, signal, fence) {
      assertWorkspaceId(spec.id);
      assertFence(fence);
      if (signal.aborted) throw abortReason(signal);
      const wait = makeWaiter(spec.id, 'start', signal);
      const gone = new Set<string>();
      const nonce = randomBytes(8).toString('hex');
      let launched: string | undefined;
      for (;;) {
        const [best, ...extras] = (await instancesOf(spec.id, signal, fence)).filter((i) => !gone.has(i.InstanceId ?? ''));
        // Duplicates only come from crashed or aborted earlier calls: keep the best, remove the rest.
        await terminate(idsOf(extras.filter((i) => stateOf(i) !== 'shutting-down')), signal, gone);
        if (fence !== undefined && best !== undefined && stateOf(best) !== 'shutting-down' && !sameMark(fence, markOf(best))) await retag(best, fence, signal);
        if (best === undefined) {
          if (launched === undefined) {
            launched = await launch(spec, signal, fence, nonce);
          } else {
            const lost = await lostLaunch(launched, signal);
            if (lost) throw new Ec2InstanceLostError(spec.id, launched, lost.StateReason?.Message);
          }
        } else if (stateOf(best) === 'running') {
          return ec2Endpoint(best);
        } else if (stateOf(best) === 'stopped') {
          // Another actor may have moved it since we looked: IncorrectInstanceState means look again.
          await tolerate(['IncorrectInstanceState'], () =>
            send(signal, (o) => client.send(new StartInstancesCommand({ InstanceIds: idsOf([best]) }), o)),
          );
        }
        // pending, stopping, shutting-down (then launch anew): wait for EC2 to settle.
        await wait();
      }
    },

    async stop(id, signal, fence) {
      assertWorkspaceId(id);
      assertFence(fence);
      if (signal.aborted) throw abortReason(signal);
      const wait = makeWaiter(id, 'stop', signal);
      const gone = new Set<string>();
      for (;;) {
        const live = (await instancesOf(id, signal, fence)).filter((i) => !gone.has(i.InstanceId ?? ''));
        if (stopMode === 'terminate') {
          if (live.length === 0) return;
          await terminate(idsOf(live.filter((i) => stateOf(i) !== 'shutting-down')), signal, gone);
        } else {
          if (live.every((i) => stateOf(i) === 'stopped')) return;
          const running = idsOf(live.filter((i) => stateOf(i) === 'running'));
          // A pending instance cannot be stopped yet (IncorrectInstanceState): wait for running.
          if (running.length > 0) {
            await tolerate(['IncorrectInstanceState'], () =>
              send(signal, (o) => client.send(new StopInstancesCommand({ InstanceIds: running }), o)),
            );
          }
        }
        await wait();
      }
    },

    async inspect(id) {
      assertWorkspaceId(id);
      const [best] = await instancesOf(id);
      return best === undefined ? null : toResource(id, best);
    },

    async list() {
      return (await describe(OURS)).flatMap((i) => {
        const id = tagOf(i, TAG_WORKSPACE);
        return id === undefined ? [] : [toResource(id, i)];
      });
    },

    async close() {
      if (owned && !closed) client.destroy();
      closed = true;
    },
  };
}

function toResource(id: string, i: Instance): ProviderResource {
  const status = STATUS[stateOf(i)] ?? 'unknown';
  return {
    id,
    status,
    ...(status === 'running' && { endpoint: ec2Endpoint(i) }),
    ...(i.InstanceId !== undefined && { ref: i.InstanceId }),
    detail: {
      state: stateOf(i), instanceType: i.InstanceType, imageId: i.ImageId, privateIp: i.PrivateIpAddress, launchTime: i.LaunchTime?.toISOString(),
      ...(markOf(i) ?? {}),
    },
  };
}
