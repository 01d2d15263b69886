/**
 * Docker provider: one container per workspace, named `<prefix><id>`, labelled `wsup=1`,
 * `wsup.workspace=<id>` and `wsup.spec=<hash>`.
 *
 * @example
 * const docker = createDockerProvider({ defaultSpec: { image: 'wsup-test:latest', cmd: ['sleep', '3600'] } });
 * const endpoint = await docker.start({ id: 'ws1' }, signal); // 'docker://wsup-ws1' under network none
 *
 * Endpoints: under network mode `none` a container has no address, so the endpoint is
 * `docker://<containerName>` (reach it with `docker exec`). With a network and `agentPort`, it is
 * `http://<ip>:<agentPort>`.
 *
 * The agent token: `WSUP_AGENT_TOKEN` is set at create time from `spec.agentToken` (the supervisor
 * supplies a fresh one per cycle) and is part of the spec hash, so a re-run of the same start adopts the
 * container while a new cycle replaces it: the token changes exactly once per start. Without
 * `agentToken`, a random one is minted when the container is created and kept while it is adopted.
 *
 * Fencing (in a cluster, calls carry a `ProviderFence`): the container is also labelled `wsup.shard` and
 * `wsup.epoch` with the lease it was created under. A call whose epoch is older than the container's never
 * creates, replaces or removes it (`FencedError`); a container of an older epoch (or with no epoch) is
 * replaced, not adopted, because labels cannot change: the container a fenced call leaves running always
 * carries that call's epoch. Removal goes by container id, after the label check, so a container that
 * replaced the inspected one in between is never removed; a create that hits a name conflict looks again
 * and refuses if the winner is newer. What labels cannot catch: a stale create after the newer owner
 * removed the container leaves nothing behind to compare with; the replica's own lease gate covers that.
 */
import { createHash, randomBytes } from 'node:crypto';
import Docker from 'dockerode';
import { z } from 'zod';
import { assertWorkspaceId, WsupError } from '../errors.ts';
import { DockerEventWatch, type WatchTimers } from './docker-events.ts';
import { assertFence, fenceLabels, readMark, refuseStale, sameMark } from './fence.ts';
import type { Endpoint, Provider, ProviderEvent, ProviderFence, ProviderResource, ResourceStatus, WorkspaceSpec } from './types.ts';

export interface DockerMount {
  source: string;
  target: string;
  type?: 'bind' | 'volume' | 'tmpfs';
  readOnly?: boolean;
}

/** The docker fields of a `WorkspaceSpec`; anything unset falls back to the provider's `defaultSpec`. */
export interface DockerSpec {
  image?: string;
  cmd?: string[];
  env?: Record<string, string>;
  mounts?: DockerMount[];
  networkMode?: string;
  /** Limits passed to the Engine (HostConfig Memory, NanoCpus, PidsLimit); unset: the Engine's defaults. */
  resources?: DockerResources;
  agentToken?: string;
}

export interface DockerResources {
  memoryBytes?: number;
  nanoCpus?: number;
  pidsLimit?: number;
}

/** Specs arrive from the CLI and the wire: checked here, trusted after. Unknown fields are ignored. */
const specSchema = z.object({
  image: z.string().min(1).optional(),
  cmd: z.array(z.string()).optional(),
  env: z.record(z.string(), z.string()).optional(),
  mounts: z.array(z.object({ source: z.string(), target: z.string(), type: z.enum(['bind', 'volume', 'tmpfs']).optional(), readOnly: z.boolean().optional() })).optional(),
  networkMode: z.string().optional(),
  resources: z
    .strictObject({ memoryBytes: z.number().int().positive().optional(), nanoCpus: z.number().int().positive().optional(), pidsLimit: z.number().int().positive().optional() })
    .optional(),
  agentToken: z.string().optional(),
});

export interface DockerProviderOptions {
  /** A ready client; otherwise one is built from `dockerOptions`, or from DOCKER_HOST when both are unset. */
  docker?: Docker;
  dockerOptions?: Docker.DockerOptions;
  /** Container name prefix. Default `wsup-`. */
  prefix?: string;
  /** Fields used when a spec leaves them out, so `start({ id })` works (`wsup serve --image`). */
  defaultSpec?: DockerSpec;
  /** Default network mode. Default `none` (no address, see the endpoint note above). */
  networkMode?: string;
  /** Seconds between SIGTERM and SIGKILL on stop. Default 10. */
  stopGraceSeconds?: number;
  /** Port of the workspace agent inside the container, for `http://` endpoints on real networks. */
  agentPort?: number;
  /** Event stream reconnect backoff, doubling from `initialMs` (default 100) to `maxMs` (default 5000). */
  reconnect?: { initialMs?: number; maxMs?: number };
  /** Timers of the reconnect backoff (tests pass a fake clock). */
  timers?: WatchTimers;
}

/** A container with the workspace's name exists but carries no wsup label: never ours to delete. */
export class ForeignContainerError extends WsupError {
  constructor(id: string, name: string) {
    super('WSUP_INVALID_ARGUMENT', `container ${name} for workspace ${id} exists but is not managed by wsup: remove or rename it, or use another prefix`, { workspaceId: id });
  }
}

/** Counters for tests and metrics: `conflicts` counts the engine's 409 name conflicts. */
export interface DockerCounters {
  created: number;
  adopted: number;
  removed: number;
  conflicts: number;
}

const LABEL = 'wsup';
const LABEL_ID = 'wsup.workspace';
const LABEL_SPEC = 'wsup.spec';
const FENCE_LABELS = { shard: 'wsup.shard', epoch: 'wsup.epoch' };
const markOf = (labels: Record<string, string>) => readMark(labels[FENCE_LABELS.shard], labels[FENCE_LABELS.epoch]);

export const statusCode = (err: unknown): number | undefined =>
  typeof err === 'object' && err !== null && typeof (err as { statusCode?: unknown }).statusCode === 'number'
    ? (err as { statusCode: number }).statusCode
    : undefined;

/** Reject with the signal's reason, whatever error the aborted HTTP request produced. */
async function guarded<T>(signal: AbortSignal, op: () => Promise<T>): Promise<T> {
  signal.throwIfAborted();
  try {
    return await op();
  } catch (err) {
    signal.throwIfAborted();
    throw err;
  }
}

const ipOf = (networks: Record<string, { IPAddress?: string }> | undefined): string | undefined =>
  Object.values(networks ?? {}).find((n) => n.IPAddress)?.IPAddress;

/** Keep id sets from growing without bound over a long-running supervisor. */
function bounded(set: Set<string>, max = 4096): Set<string> {
  for (const oldest of set) {
    if (set.size < max) break;
    set.delete(oldest);
  }
  return set;
}

const ignore = (...codes: number[]) => (err: unknown) => {
  if (!codes.includes(statusCode(err) ?? -1)) throw err;
};

/** `{ shard, epoch }` in a resource's detail when the container carries a fence mark. */
function fenceDetail(labels: Record<string, string>): { shard?: number; epoch?: number } {
  const mark = markOf(labels);
  return mark === null ? {} : { shard: mark.shard, epoch: mark.epoch };
}

function stateStatus(state: string | undefined): ResourceStatus {
  switch (state) {
    case 'running':
    case 'paused':
      return 'running';
    case 'created':
    case 'restarting':
      return 'starting';
    case 'removing':
      return 'stopping';
    case 'exited':
    case 'dead':
      return 'stopped';
    default:
      return 'unknown';
  }
}

export class DockerProvider implements Provider {
  readonly kind = 'docker';
  readonly docker: Docker;
  readonly prefix: string;
  readonly counters: DockerCounters = { created: 0, adopted: 0, removed: 0, conflicts: 0 };
  private readonly opts: DockerProviderOptions;
  /** Container ids this provider is stopping or replacing: their die/destroy events are not drift. */
  private readonly expectedExits = new Set<string>();
  private readonly unwatchers = new Set<() => void>();
  /** Container each workspace got from this provider, for reconciling after an engine restart. */
  private readonly started = new Map<string, string>();

  constructor(opts: DockerProviderOptions = {}) {
    this.opts = opts;
    this.docker = opts.docker ?? new Docker(opts.dockerOptions);
    this.prefix = opts.prefix ?? 'wsup-';
  }

  containerName(id: string): string {
    return `${this.prefix}${id}`;
  }

  /** Merge spec over defaults and hash everything that makes a container different. */
  resolve(spec: WorkspaceSpec): Required<Omit<DockerSpec, 'agentToken' | 'resources'>> & { agentToken?: string; resources?: DockerResources; hash: string } {
    const d = this.opts.defaultSpec ?? {};
    const parsed = specSchema.safeParse(spec);
    if (!parsed.success) {
      throw new WsupError('WSUP_INVALID_ARGUMENT', `workspace ${spec.id} has an invalid docker spec: ${parsed.error.message}`, { workspaceId: spec.id });
    }
    const s = parsed.data;
    const image = s.image ?? d.image;
    if (typeof image !== 'string' || image === '') {
      throw new WsupError('WSUP_INVALID_ARGUMENT', `workspace ${spec.id} has no docker image: pass spec.image or defaultSpec.image (wsup serve --image)`, { workspaceId: spec.id });
    }
    const resources = s.resources ?? d.resources;
    const r = {
      image,
      cmd: s.cmd ?? d.cmd ?? [],
      // Sorted, so the spec hash does not depend on key order.
      env: Object.fromEntries(Object.entries({ ...d.env, ...s.env }).sort(([a], [b]) => a.localeCompare(b))),
      mounts: s.mounts ?? d.mounts ?? [],
      networkMode: s.networkMode ?? d.networkMode ?? this.opts.networkMode ?? 'none',
      // Only when set, so a spec without limits hashes as before and its running container is adopted.
      ...(resources !== undefined ? { resources } : {}),
      ...(s.agentToken !== undefined ? { agentToken: s.agentToken } : {}),
    };
    const hash = createHash('sha256').update(JSON.stringify(r)).digest('hex').slice(0, 16);
    return { ...r, hash };
  }

  async start(spec: WorkspaceSpec, signal: AbortSignal, fence?: ProviderFence): Promise<Endpoint> {
    assertWorkspaceId(spec.id);
    assertFence(fence);
    const want = this.resolve(spec);
    const name = this.containerName(spec.id);
    const container = this.docker.getContainer(name);
    // A concurrent create by someone else shows up as a 409 (and a replacement of ours as a 404 when we
    // start it): look again and converge, a bounded number of times.
    for (let attempt = 0; ; attempt++) {
      const found = await guarded(signal, () => container.inspect({ abortSignal: signal })).catch((e: unknown) => {
        if (statusCode(e) === 404) return null;
        throw e;
      });
      if (found !== null) {
        const labels = found.Config.Labels ?? {};
        if (labels[LABEL] !== '1') throw new ForeignContainerError(spec.id, name);
        refuseStale(fence, markOf(labels), `container ${name} (${found.Id.slice(0, 12)})`);
        const sameLease = fence === undefined || sameMark(fence, markOf(labels));
        if (sameLease && labels[LABEL_ID] === spec.id && labels[LABEL_SPEC] === want.hash && found.State.Running) {
          this.counters.adopted++;
          this.started.set(spec.id, found.Id);
          return this.endpointOf(name, ipOf(found.NetworkSettings.Networks));
        }
        bounded(this.expectedExits).add(found.Id);
        await this.remove(this.docker.getContainer(found.Id), signal);
      }
      let created: Docker.Container;
      try {
        created = await guarded(signal, () =>
          this.docker.createContainer({
            name,
            Image: want.image,
            ...(want.cmd.length > 0 ? { Cmd: want.cmd } : {}),
            Env: Object.entries({ ...want.env, WSUP_WORKSPACE_ID: spec.id, WSUP_AGENT_TOKEN: want.agentToken ?? randomBytes(24).toString('hex') }).map(([k, v]) => `${k}=${v}`),
            Labels: { [LABEL]: '1', [LABEL_ID]: spec.id, [LABEL_SPEC]: want.hash, ...fenceLabels(fence, FENCE_LABELS) },
            HostConfig: {
              NetworkMode: want.networkMode,
              Mounts: want.mounts.map((m) => ({ Type: m.type ?? 'bind', Source: m.source, Target: m.target, ReadOnly: m.readOnly ?? false })),
              ...(want.resources?.memoryBytes !== undefined ? { Memory: want.resources.memoryBytes } : {}),
              ...(want.resources?.nanoCpus !== undefined ? { NanoCpus: want.resources.nanoCpus } : {}),
              ...(want.resources?.pidsLimit !== undefined ? { PidsLimit: want.resources.pidsLimit } : {}),
            },
            abortSignal: signal,
          }),
        );
      } catch (err) {
        if (statusCode(err) !== 409) throw err;
        this.counters.conflicts++;
        if (attempt >= 2) throw err;
        continue;
      }
      this.counters.created++;
      try {
        await guarded(signal, () => created.start({ abortSignal: signal })).catch(ignore(304));
        const info = await guarded(signal, () => created.inspect({ abortSignal: signal }));
        this.started.set(spec.id, info.Id);
        return this.endpointOf(name, ipOf(info.NetworkSettings.Networks));
      } catch (err) {
        // The container we created was removed before it ran (replaced by a newer owner, say): look again.
        if (statusCode(err) !== 404 || attempt >= 2) throw err;
        this.counters.conflicts++;
      }
    }
  }

  async stop(id: string, signal: AbortSignal, fence?: ProviderFence): Promise<void> {
    assertWorkspaceId(id);
    assertFence(fence);
    const name = this.containerName(id);
    const found = await guarded(signal, () => this.docker.getContainer(name).inspect({ abortSignal: signal })).catch((e: unknown) => {
      if (statusCode(e) === 404) return null;
      throw e;
    });
    // Absent is success; a foreign container under our name is not ours to stop.
    if (found === null || found.Config.Labels?.[LABEL] !== '1') {
      this.started.delete(id);
      return;
    }
    refuseStale(fence, markOf(found.Config.Labels), `container ${name} (${found.Id.slice(0, 12)})`);
    this.started.delete(id);
    // By id: a container that replaced this one since the inspect is not the one we checked.
    const container = this.docker.getContainer(found.Id);
    bounded(this.expectedExits).add(found.Id);
    const t = this.opts.stopGraceSeconds ?? 10;
    await guarded(signal, () => container.stop({ t, abortSignal: signal })).catch(ignore(304, 404));
    await this.remove(container, signal);
  }

  /** Force-remove; absent is success, and a removal already in progress (409) is waited for, not failed. */
  private async remove(container: Docker.Container, signal: AbortSignal): Promise<void> {
    await guarded(signal, () => container.remove({ force: true, v: true, abortSignal: signal })).catch(async (e: unknown) => {
      if (statusCode(e) !== 409) return ignore(404)(e);
      await guarded(signal, () => container.wait({ condition: 'removed', abortSignal: signal })).catch(ignore(404));
    });
    this.counters.removed++;
  }

  async inspect(id: string): Promise<ProviderResource | null> {
    assertWorkspaceId(id);
    const name = this.containerName(id);
    const info = await this.docker.getContainer(name).inspect().catch((e: unknown) => {
      if (statusCode(e) === 404) return null;
      throw e;
    });
    const labels = info?.Config.Labels ?? {};
    if (info === null || labels[LABEL] !== '1' || labels[LABEL_ID] !== id) return null;
    const status = stateStatus(info.State.Status);
    return {
      id,
      status,
      ref: info.Id,
      ...(status === 'running' ? { endpoint: this.endpointOf(name, ipOf(info.NetworkSettings.Networks)) } : {}),
      detail: { name, image: info.Config.Image, specHash: labels[LABEL_SPEC], state: info.State.Status, exitCode: info.State.ExitCode, ...fenceDetail(labels) },
    };
  }

  async list(): Promise<ProviderResource[]> {
    const all = await this.docker.listContainers({ all: true, filters: { label: [`${LABEL}=1`] } });
    const out: ProviderResource[] = [];
    for (const c of all) {
      const id = c.Labels[LABEL_ID];
      const name = (c.Names[0] ?? '').replace(/^\//, '');
      // Another supervisor on the same engine may use another prefix: its containers are not ours.
      if (id === undefined || name !== this.containerName(id)) continue;
      const status = stateStatus(c.State);
      const ip = ipOf(c.NetworkSettings?.Networks);
      out.push({
        id,
        status,
        ref: c.Id,
        ...(status === 'running' ? { endpoint: this.endpointOf(name, ip) } : {}),
        detail: { name, image: c.Image, specHash: c.Labels[LABEL_SPEC], state: c.State, ...fenceDetail(c.Labels) },
      });
    }
    return out;
  }

  /**
   * Drift feed from the engine's event stream: `die`, `oom` or `destroy` of one of our containers that this
   * provider did not cause is reported once per container as `{ alive: false }`. When the stream ends
   * (engine restart) it reconnects with backoff, then re-inspects the workspaces it started, because
   * events from the gap are lost with the old engine.
   */
  watch(onEvent: (event: ProviderEvent) => void): () => void {
    const reported = new Set<string>();
    let closed = false;
    const report = (containerId: string, id: string, detail: string) => {
      if (closed || reported.has(containerId) || this.expectedExits.has(containerId)) return;
      bounded(reported).add(containerId);
      onEvent({ id, alive: false, detail });
    };
    const watch = new DockerEventWatch({
      connect: (since, signal) =>
        this.docker.getEvents({
          filters: { type: ['container'], label: [`${LABEL}=1`], event: ['die', 'oom', 'destroy'] },
          ...(since !== undefined ? { since } : {}),
          abortSignal: signal,
        }),
      onEvent: (e) => {
        const attrs = e.Actor?.Attributes ?? {};
        const id = attrs[LABEL_ID];
        const containerId = e.Actor?.ID;
        if (id === undefined || containerId === undefined || attrs.name !== this.containerName(id)) return;
        const exit = attrs.exitCode !== undefined ? ` (exit ${attrs.exitCode})` : '';
        report(containerId, id, `container ${attrs.name} ${e.Action ?? 'event'}${exit}`);
        if (e.Action === 'destroy') this.expectedExits.delete(containerId);
      },
      onReconnected: async () => {
        for (const [id, containerId] of this.started) {
          const now = await this.inspect(id).catch(() => undefined);
          if (now === undefined) continue; // engine still flaky: the next reconnect tries again
          if (now === null || now.ref !== containerId || now.status !== 'running') {
            report(containerId, id, `container ${this.containerName(id)} not running after the engine came back`);
          }
        }
      },
      ...(this.opts.timers ? { timers: this.opts.timers } : {}),
      ...(this.opts.reconnect?.initialMs !== undefined ? { initialMs: this.opts.reconnect.initialMs } : {}),
      ...(this.opts.reconnect?.maxMs !== undefined ? { maxMs: this.opts.reconnect.maxMs } : {}),
    });
    const unwatch = () => {
      closed = true;
      watch.close();
      this.unwatchers.delete(unwatch);
    };
    this.unwatchers.add(unwatch);
    return unwatch;
  }

  async close(): Promise<void> {
    for (const unwatch of [...this.unwatchers]) unwatch();
  }

  private endpointOf(name: string, ip: string | undefined): Endpoint {
    return ip && this.opts.agentPort !== undefined ? `http://${ip}:${this.opts.agentPort}` : `docker://${name}`;
  }
}

/**
 * Why this engine cannot run workspaces, or `null` when it can: answers ping and has `image` locally
 * (nothing can be pulled in CI). For `wsup serve --provider docker` and test suites deciding to skip.
 */
export async function dockerUnavailable(docker: Docker, image?: string): Promise<string | null> {
  const where = process.env.DOCKER_HOST ?? 'the default socket';
  try {
    // A blackholed tcp DOCKER_HOST would hang forever: bound the probe.
    await Promise.race([
      docker.ping(),
      new Promise((_, reject) => setTimeout(() => reject(new Error('no answer within 5 s')), 5_000).unref()),
    ]);
  } catch (err) {
    return `dockerd at ${where} does not answer (${String(err)}): start it, e.g. source .ci/components/10-docker.sh`;
  }
  if (image === undefined) return null;
  return docker.getImage(image).inspect().then(
    () => null,
    (err: unknown) => `image ${image} is not present on ${where} (${String(err)}): import or pull it first`,
  );
}

export function createDockerProvider(opts: DockerProviderOptions = {}): DockerProvider {
  return new DockerProvider(opts);
}
