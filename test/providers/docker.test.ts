/**
 * The docker provider against a real dockerd (`source .ci/components/10-docker.sh` exports DOCKER_HOST).
 * Without one the suite is skipped with the reason printed; under WSUP_REQUIRE_ALL=1 that is a failure.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Docker from 'dockerode';
import { afterAll, describe, expect, it } from 'vitest';
import { createDockerProvider, ForeignContainerError, statusCode, type DockerProvider } from '../../src/providers/docker.ts';
import { naiveStopStart } from './naive-stop-start.ts';
import type { ProviderEvent } from '../../src/providers/types.ts';
import { describeWith, dockerHost } from '../helpers/require.ts';
import { describeProviderConformance } from './conformance.ts';

const IMAGE = 'wsup-test:latest';
// `sleep & wait` so the shell (pid 1, no default signal handlers) exits on SIGTERM at once.
const CMD = ['sh', '-c', 'trap "exit 0" TERM; sleep 3600 & wait'];
// A prefix per run keeps this file's containers apart from anyone else's on the same engine.
const PREFIX = `wsupt${randomBytes(3).toString('hex')}-`;

const host = await dockerHost(IMAGE);
const never = () => new AbortController().signal;
const make = (extra: Parameters<typeof createDockerProvider>[0] = {}): DockerProvider =>
  createDockerProvider({ prefix: PREFIX, defaultSpec: { image: IMAGE, cmd: CMD }, stopGraceSeconds: 2, ...extra });

/** Waits on the real engine, bounded: its event stream is asynchronous by nature. */
const POLL = { timeout: 15_000, interval: 50 };

describeProviderConformance('docker', () => make(), {
  skip: host === null,
  idPrefix: 'c',
  createForeign: async (id) => {
    // Same name wsup would use, no wsup labels: a container someone else made.
    const c = await new Docker().createContainer({ name: `${PREFIX}${id}`, Image: IMAGE, Cmd: CMD, HostConfig: { NetworkMode: 'none' } });
    return { cleanup: () => c.remove({ force: true }) };
  },
});

describe('docker provider spec', () => {
  // No engine needed: a bad spec is refused before any request is made.
  const offline = createDockerProvider({ dockerOptions: { socketPath: '/nonexistent/docker.sock' } });

  it('refuses a workspace with no image and names the fix', async () => {
    await expect(offline.start({ id: 'noimage' }, never())).rejects.toMatchObject({ code: 'WSUP_INVALID_ARGUMENT', message: expect.stringMatching(/--image/) as string });
  });

  it('refuses a spec whose fields have the wrong types', async () => {
    await expect(offline.start({ id: 'badcmd', image: IMAGE, cmd: 'sleep 1' }, never())).rejects.toMatchObject({ code: 'WSUP_INVALID_ARGUMENT' });
  });
});

describeWith(host, 'docker provider', (host) => {
  const docker = new Docker();
  const provider = make();
  const ids: string[] = [];
  const fresh = (label: string) => {
    const id = `${label}-${randomBytes(3).toString('hex')}`;
    ids.push(id);
    return id;
  };

  afterAll(async () => {
    for (const id of ids) await provider.stop(id, never());
    await provider.close();
    const left = await docker.listContainers({ all: true });
    for (const c of left.filter((c) => c.Names.some((n) => n.startsWith(`/${PREFIX}`)))) await docker.getContainer(c.Id).remove({ force: true });
  }, 120_000);

  describe('two restart paths racing: two concurrent stop→start for one workspace, without single flight', () => {
    it('hits the engine name conflict (409)', async () => {
      const id = fresh('seed0');
      const codes: (number | undefined)[] = [];
      // The race is real, so each round may or may not collide; 20 rounds make a miss vanishingly rare.
      for (let round = 0; round < 20 && !codes.includes(409); round++) {
        const results = await Promise.allSettled([1, 2].map(() => naiveStopStart(docker, id, { prefix: PREFIX, image: IMAGE, cmd: CMD })));
        for (const r of results) if (r.status === 'rejected') codes.push(statusCode(r.reason));
      }
      expect(codes).toContain(409);
    }, 120_000);
  });

  describe('adopt or replace', () => {
    it('adopts the container for the same agent token and replaces it for a new one', async () => {
      const id = fresh('token');
      await provider.start({ id, agentToken: 'tok-a' }, never());
      const first = await provider.inspect(id);
      await provider.start({ id, agentToken: 'tok-a' }, never());
      expect((await provider.inspect(id))?.ref).toBe(first?.ref);
      await provider.start({ id, agentToken: 'tok-b' }, never());
      const second = await provider.inspect(id);
      expect(second?.ref).not.toBe(first?.ref);
      const env = (await docker.getContainer(second!.ref!).inspect()).Config.Env;
      expect(env).toContain('WSUP_AGENT_TOKEN=tok-b');
      expect((await provider.list()).filter((r) => r.id === id)).toHaveLength(1);
    }, 60_000);

    it('replaces a container that exited out of band', async () => {
      const id = fresh('exited');
      await provider.start({ id }, never());
      const before = await provider.inspect(id);
      await docker.getContainer(before!.ref!).kill();
      expect((await provider.inspect(id))?.status).toBe('stopped');
      await provider.start({ id }, never());
      const after = await provider.inspect(id);
      expect(after?.status).toBe('running');
      expect(after?.ref).not.toBe(before?.ref);
    }, 60_000);

    it('refuses to replace a container under its name that wsup does not own, and stop leaves it alone', async () => {
      const id = fresh('foreign');
      const foreign = await docker.createContainer({ name: `${PREFIX}${id}`, Image: IMAGE, Cmd: CMD, HostConfig: { NetworkMode: 'none' } });
      await expect(provider.start({ id }, never())).rejects.toBeInstanceOf(ForeignContainerError);
      await provider.stop(id, never());
      expect((await foreign.inspect()).Id).toBeTruthy();
      await foreign.remove({ force: true });
    }, 60_000);
  });

  describe('drift', () => {
    it('reports a container killed out of band as not alive, and not one the provider stopped itself', async () => {
      const killed = fresh('kill');
      const stopped = fresh('stopped');
      const events: ProviderEvent[] = [];
      const unwatch = provider.watch((e) => events.push(e));
      try {
        await provider.start({ id: stopped }, never());
        await provider.start({ id: killed }, never());
        await provider.stop(stopped, never());
        const ref = (await provider.inspect(killed))!.ref!;
        await docker.getContainer(ref).kill();
        await expect.poll(() => events.find((e) => e.id === killed), POLL).toMatchObject({ id: killed, alive: false, detail: expect.stringMatching(/die/) as string });
        // The stream is ordered: our own stop came before the kill, so it would already be here.
        expect(events.filter((e) => e.id === stopped)).toEqual([]);
      } finally {
        unwatch();
      }
    }, 60_000);

    it('reconnects when the event stream drops and reports a container that died meanwhile', async () => {
      const id = fresh('reconn');
      const proxy = await socketProxy(host.replace(/^unix:\/\//, ''));
      const viaProxy = make({ dockerOptions: { socketPath: proxy.path }, reconnect: { initialMs: 50, maxMs: 200 } });
      const events: ProviderEvent[] = [];
      const unwatch = viaProxy.watch((e) => events.push(e));
      try {
        await viaProxy.start({ id }, never());
        proxy.down(); // the engine "restarts": every connection drops, new ones are refused
        await docker.getContainer((await provider.inspect(id))!.ref!).kill();
        proxy.up();
        await expect.poll(() => events.find((e) => e.id === id), { ...POLL, message: 'a drift event after the reconnect' }).toMatchObject({ alive: false });
      } finally {
        unwatch();
        await viaProxy.close();
        await proxy.close();
      }
    }, 60_000);
  });
});

/** A unix-socket proxy to dockerd that can drop every connection, standing in for an engine restart. */
async function socketProxy(target: string) {
  const dir = mkdtempSync(join(tmpdir(), 'wsup-proxy-'));
  const path = join(dir, 'docker.sock');
  const open = new Set<net.Socket>();
  let refusing = false;
  const server = net.createServer((client) => {
    if (refusing) return void client.destroy();
    const upstream = net.connect(target);
    open.add(client).add(upstream);
    const drop = () => {
      client.destroy();
      upstream.destroy();
      open.delete(client);
      open.delete(upstream);
    };
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((r) => server.listen(path, r));
  return {
    path,
    down: () => {
      refusing = true;
      for (const s of open) s.destroy();
    },
    up: () => {
      refusing = false;
    },
    close: async () => {
      for (const s of open) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
