/**
 * Fencing in the docker provider against a real dockerd: the container carries the shard and epoch of the
 * lease it was created under, and a call with an older epoch never creates, replaces or removes it. The
 * races (a newer owner acting between a stale call's inspect and its next step) are staged by running the
 * newer owner's call inside the stale call's inspect, on the same engine.
 */
import { randomBytes } from 'node:crypto';
import Docker from 'dockerode';
import { afterAll, describe, expect, it } from 'vitest';
import { FencedError } from '../../src/errors.ts';
import { createDockerProvider, type DockerProvider, type DockerProviderOptions } from '../../src/providers/docker.ts';
import { describeWith, dockerHost } from '../helpers/require.ts';

const IMAGE = 'wsup-test:latest';
const CMD = ['sh', '-c', 'trap "exit 0" TERM; sleep 3600 & wait'];
const PREFIX = `wsupf${randomBytes(3).toString('hex')}-`;
const never = () => new AbortController().signal;
const make = (extra: DockerProviderOptions = {}): DockerProvider =>
  createDockerProvider({ prefix: PREFIX, defaultSpec: { image: IMAGE, cmd: CMD }, stopGraceSeconds: 1, ...extra });
const at = (epoch: number, shard = 5) => ({ shard, epoch });

const host = await dockerHost(IMAGE);

describe('docker provider fence input', () => {
  const offline = createDockerProvider({ dockerOptions: { socketPath: '/nonexistent/docker.sock' } });
  it('refuses a malformed fence before any request', async () => {
    await expect(offline.start({ id: 'f1', image: IMAGE }, never(), { shard: 1, epoch: -1 })).rejects.toMatchObject({ code: 'WSUP_INVALID_ARGUMENT', message: expect.stringMatching(/fence/) as string });
    await expect(offline.stop('f1', never(), { shard: 1.5, epoch: 2 })).rejects.toMatchObject({ code: 'WSUP_INVALID_ARGUMENT' });
  });
});

describeWith(host, 'docker provider fencing', () => {
  const docker = new Docker();
  const provider = make();
  const ids: string[] = [];
  const fresh = (label: string) => {
    const id = `${label}-${randomBytes(3).toString('hex')}`;
    ids.push(id);
    return id;
  };
  /** Every container of the workspace on the engine, whatever its state: what "changes nothing" is measured on. */
  const containersOf = async (id: string) =>
    (await docker.listContainers({ all: true, filters: { label: [`wsup.workspace=${id}`] } }))
      .filter((c) => c.Names.includes(`/${PREFIX}${id}`))
      .map((c) => ({ ref: c.Id, state: c.State, epoch: c.Labels['wsup.epoch'], shard: c.Labels['wsup.shard'] }));

  /**
   * A provider whose next inspect of the workspace's container runs `meanwhile` after the engine answered
   * and before the provider sees the answer: the newer owner acts between the stale call's look and its step.
   */
  const staged = (meanwhile: () => Promise<unknown>): DockerProvider => {
    const hooked = new Docker();
    const getContainer = hooked.getContainer.bind(hooked);
    let pending: (() => Promise<unknown>) | null = meanwhile;
    hooked.getContainer = (ref: string) => {
      const c = getContainer(ref);
      const inspect = c.inspect.bind(c) as (opts?: object) => Promise<Docker.ContainerInspectInfo>;
      c.inspect = (async (opts?: object) => {
        const answer = await inspect(opts).then((info) => ({ info }), (err: unknown) => ({ err }));
        const run = pending;
        pending = null;
        if (run) await run();
        if ('err' in answer) throw answer.err;
        return answer.info;
      }) as typeof c.inspect;
      return c;
    };
    return make({ docker: hooked });
  };

  afterAll(async () => {
    for (const id of ids) await provider.stop(id, never());
    await provider.close();
    const left = await docker.listContainers({ all: true });
    for (const c of left.filter((c) => c.Names.some((n) => n.startsWith(`/${PREFIX}`)))) await docker.getContainer(c.Id).remove({ force: true });
  }, 120_000);

  it('labels the container with the call\'s shard and epoch', async () => {
    const id = fresh('label');
    await provider.start({ id }, never(), at(3));
    expect(await containersOf(id)).toEqual([{ ref: expect.any(String) as string, state: 'running', epoch: '3', shard: '5' }]);
    expect((await provider.inspect(id))?.detail).toMatchObject({ shard: 5, epoch: 3 });
  }, 60_000);

  it('refuses a start and a stop with an older epoch than the container\'s, and changes nothing', async () => {
    const id = fresh('older');
    await provider.start({ id, agentToken: 'new-owner' }, never(), at(7));
    const before = await containersOf(id);
    // A different spec (a new cycle's token) would replace the container, were the call not refused.
    const start = await provider.start({ id, agentToken: 'stale' }, never(), at(6)).catch((e: unknown) => e);
    expect(start).toBeInstanceOf(FencedError);
    expect(start).toMatchObject({ code: 'WSUP_FENCED', message: expect.stringMatching(/epoch 7, newer than this call's epoch 6/) as string });
    await expect(provider.stop(id, never(), at(6))).rejects.toMatchObject({ code: 'WSUP_FENCED' });
    expect(await containersOf(id)).toEqual(before);
    expect(before).toMatchObject([{ state: 'running', epoch: '7' }]);
  }, 60_000);

  it('adopts at the same epoch, replaces at a newer one, and a newer stop removes it', async () => {
    const id = fresh('newer');
    await provider.start({ id }, never(), at(1));
    const [first] = await containersOf(id);
    await provider.start({ id }, never(), at(1));
    expect(await containersOf(id)).toEqual([first]);
    // Same spec, newer epoch: labels cannot change, so the container is replaced to carry the new epoch.
    await provider.start({ id }, never(), at(2));
    const [second] = await containersOf(id);
    expect(second).toMatchObject({ state: 'running', epoch: '2' });
    expect(second!.ref).not.toBe(first!.ref);
    await provider.stop(id, never(), at(3));
    expect(await containersOf(id)).toEqual([]);
  }, 60_000);

  it('compares epochs of the same shard only, and calls without a fence behave as on one node', async () => {
    const id = fresh('shard');
    await provider.start({ id }, never(), at(9, 1));
    // Another shard's epoch is not comparable: not refused (and replaced, as for any other lease).
    await provider.start({ id }, never(), at(2, 2));
    const [other] = await containersOf(id);
    expect(other).toMatchObject({ epoch: '2', shard: '2' });
    // Without a fence: adopted whatever its labels, and removed by stop.
    await provider.start({ id }, never());
    expect(await containersOf(id)).toEqual([other]);
    await provider.stop(id, never());
    expect(await containersOf(id)).toEqual([]);
  }, 60_000);

  it('a stale start whose create hits the newer owner\'s container refuses instead of replacing it', async () => {
    const id = fresh('conflict');
    const owner = make();
    // The stale call looks (nothing there); the newer owner creates the container; then the stale call creates.
    const stale = staged(() => owner.start({ id }, never(), at(4)));
    await expect(stale.start({ id, agentToken: 'stale' }, never(), at(3))).rejects.toBeInstanceOf(FencedError);
    expect(stale.counters).toMatchObject({ created: 0, removed: 0, conflicts: 1 });
    expect(await containersOf(id)).toMatchObject([{ state: 'running', epoch: '4' }]);
  }, 60_000);

  it('a stale start that meant to replace its own old container leaves the newer owner\'s replacement alone', async () => {
    const id = fresh('replaced');
    await provider.start({ id, agentToken: 'old' }, never(), at(3));
    // The stale call sees its epoch-3 container and decides to replace it; meanwhile the newer owner did.
    const stale = staged(() => make().start({ id, agentToken: 'owner' }, never(), at(4)));
    await expect(stale.start({ id, agentToken: 'stale' }, never(), at(3))).rejects.toBeInstanceOf(FencedError);
    const [now] = await containersOf(id);
    expect(now).toMatchObject({ state: 'running', epoch: '4' });
    const env = (await docker.getContainer(now!.ref).inspect()).Config.Env;
    expect(env).toContain('WSUP_AGENT_TOKEN=owner');
  }, 60_000);

  it('a stale stop removes by container id: the newer owner\'s replacement survives', async () => {
    const id = fresh('stopid');
    await provider.start({ id, agentToken: 'old' }, never(), at(3));
    const stale = staged(() => make().start({ id, agentToken: 'owner' }, never(), at(4)));
    // The stale stop checked the epoch-3 container, which is gone by the time it removes: nothing else is touched.
    await stale.stop(id, never(), at(3));
    expect(await containersOf(id)).toMatchObject([{ state: 'running', epoch: '4' }]);
  }, 60_000);
});
