/**
 * An operator token against the docker provider on the real dockerd, through the control server: mounts of
 * the host root, the engine's socket or paths that escape an allowed root (`..`, `//`, a symlink), host or
 * shared-container networking and images outside the template's patterns are refused, and no container
 * for the workspace exists on the engine afterwards, nor anything in the store.
 */
import Docker from 'dockerode';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ERROR_CODES } from '../../src/protocol/index.ts';
import { dockerHost } from '../helpers/require.ts';
import { refusal, startTemplateRig, type TemplateRig } from './rig.ts';

const IMAGE = 'wsup-test:latest';
const CMD = ['sh', '-c', 'trap "exit 0" TERM; sleep 3600 & wait'];
const MiB = 1024 * 1024;
const run = (await dockerHost(IMAGE)) !== null;

const tag = randomBytes(3).toString('hex');
const ws = (name: string) => `atk${tag}-${name}`;
const share = mkdtempSync(join(tmpdir(), 'wsup-share-'));
mkdirSync(join(share, 'work'));
symlinkSync('/', join(share, 'work', 'root-link'));
const volume = `wsupatk-${tag}`;

const CONFIG = {
  templates: {
    web: {
      provider: 'docker',
      docker: { image: IMAGE, cmd: CMD, networkMode: 'none', bindRoots: [join(share, 'work')] },
      params: {
        image: { patterns: ['wsup-test:*'] },
        mounts: { volumes: ['wsupatk-*'], bind: true, max: 2 },
        networkMode: { values: ['none', 'bridge'] },
      },
    },
    capped: {
      provider: 'docker',
      docker: { image: IMAGE, cmd: CMD, networkMode: 'none', resources: { memoryBytes: 64 * MiB, pidsLimit: 64 } },
      params: { resources: { maxMemoryBytes: 256 * MiB, maxPidsLimit: 128 } },
    },
  },
};

describe.skipIf(!run)('operator attacks on the docker provider (real dockerd)', () => {
  const docker = new Docker();
  let rig: TemplateRig;
  beforeAll(async () => {
    rig = await startTemplateRig({ provider: 'docker', config: CONFIG, runtime: { image: IMAGE, cmd: CMD } });
  });
  afterAll(async () => {
    for (const id of [ws('ok'), ws('admin'), ws('capped'), ws('admin-res')]) await rig?.client('admin').call('workspace.destroy', { id }).catch(() => undefined);
    await rig?.close();
    await docker.getVolume(volume).remove().catch(() => undefined);
    rmSync(share, { recursive: true, force: true });
  });

  /** No container of workspace `id` on the engine (running or not) and nothing stored. */
  async function nothingOf(id: string): Promise<void> {
    expect(await docker.listContainers({ all: true, filters: { label: [`wsup.workspace=${id}`] } })).toEqual([]);
    expect(await rig.store.getWorkspace(id)).toBeNull();
  }

  it.each([
    ['host root', { mounts: [{ source: '/', target: '/host' }] }],
    ['docker socket', { mounts: [{ source: '/var/run/docker.sock', target: '/var/run/docker.sock' }] }],
    ['host network', { networkMode: 'host' }],
    ['any image', { image: 'alpine:latest' }],
  ])('a raw spec with the %s is refused', async (_what, spec) => {
    const err = await refusal(rig.client('operator').call('workspace.create', { id: ws('raw'), spec: { image: IMAGE, ...spec } }));
    expect(err.code).toBe(ERROR_CODES.WSUP_POLICY);
    expect(err.data).toMatchObject({ field: 'spec', wsupCode: 'WSUP_POLICY' });
    await nothingOf(ws('raw'));
  });

  it.each([
    ['/', 'params.mounts[0].source', /host root/],
    ['/var/run/docker.sock', 'params.mounts[0].source', /docker socket/],
    ['/var/run', 'params.mounts[0].source', /docker socket/],
    ['/etc', 'params.mounts[0].source', /allowed root/],
    [`${share}/work/../../../etc`, 'params.mounts[0].source', /allowed root/],
    [`${share}/work//..//..//etc//`, 'params.mounts[0].source', /allowed root/],
    [`${share}/work/root-link`, 'params.mounts[0].source', /host root/],
    [`${share}/work/root-link/etc`, 'params.mounts[0].source', /allowed root/],
    ['work/relative', 'params.mounts[0].source', /volume name or under an allowed root/],
  ])('a bind mount of %s is refused', async (source, field, rule) => {
    const err = await refusal(rig.client('operator').call('workspace.create', { id: ws('mnt'), template: 'web', params: { mounts: [{ source, target: '/x', type: 'bind' }] } }));
    expect(err.data).toMatchObject({ field, rule: expect.stringMatching(rule) as string });
    expect(err.message).toContain(field);
    await nothingOf(ws('mnt'));
  });

  it('volumes outside the patterns, volume-typed paths and too many mounts are refused', async () => {
    const op = rig.client('operator');
    const create = (mounts: unknown[]) => refusal(op.call('workspace.create', { id: ws('vol'), template: 'web', params: { mounts } }));
    expect((await create([{ source: 'other-vol', target: '/d', type: 'volume' }])).data?.field).toBe('params.mounts[0].source');
    expect((await create([{ source: '/', target: '/d', type: 'volume' }])).data?.field).toBe('params.mounts[0].source');
    expect((await create([{ source: volume, target: '/d', type: 'tmpfs' }])).data?.field).toBe('params.mounts[0].type');
    const many = Array.from({ length: 3 }, (_, i) => ({ source: volume, target: `/d${i}`, type: 'volume' }));
    expect((await create(many)).data).toMatchObject({ field: 'params.mounts', rule: 'at most 2 mounts' });
    expect((await create([{ source: volume, target: '/d', type: 'volume', propagation: 'shared' }])).data?.field).toBe('params.mounts[0].propagation');
    await nothingOf(ws('vol'));
  });

  it.each(['host', 'HOST', 'container:other', 'bridge2'])('network mode %s is refused', async (networkMode) => {
    const err = await refusal(rig.client('operator').call('workspace.create', { id: ws('net'), template: 'web', params: { networkMode } }));
    expect(err.data?.field).toBe('params.networkMode');
    await nothingOf(ws('net'));
  });

  it.each(['alpine:latest', 'evil.example/wsup-test:latest', 'wsup-test:latest/../x', 'wsup-test'])('image %s is refused', async (image) => {
    const err = await refusal(rig.client('operator').call('workspace.create', { id: ws('img'), template: 'web', params: { image } }));
    expect(err.data?.field).toBe('params.image');
    await nothingOf(ws('img'));
  });

  it('allowed params run: a volume from the pattern, network none', async () => {
    const op = rig.client('operator');
    const view = await op.call('workspace.create', { id: ws('ok'), template: 'web', params: { mounts: [{ source: volume, target: '/data', type: 'volume' }], networkMode: 'none' } });
    expect(view.spec).toMatchObject({ template: 'web', image: IMAGE, networkMode: 'none', mounts: [{ source: volume, target: '/data', type: 'volume', readOnly: false }] });
    await op.call('workspace.ensure', { id: ws('ok') });
    const info = await docker.getContainer(`wsup-${ws('ok')}`).inspect();
    expect(info.HostConfig.NetworkMode).toBe('none');
    expect(info.Mounts.map((m) => [m.Type, m.Name, m.Destination])).toEqual([['volume', volume, '/data']]);
  });

  it("a template's limits reach the engine; an operator may raise them only up to the template's maxima", async () => {
    const op = rig.client('operator');
    for (const [resources, field, rule] of [
      [{ memoryBytes: 512 * MiB }, 'params.resources.memoryBytes', `must be at most ${256 * MiB}`],
      [{ nanoCpus: 4_000_000_000 }, 'params.resources.nanoCpus', 'not a limit this template lets operators set'],
      [{ pidsLimit: -1 }, 'params.resources.pidsLimit', 'must be a positive integer'],
    ] as const) {
      const err = await refusal(op.call('workspace.create', { id: ws('capped'), template: 'capped', params: { resources } }));
      expect(err.data).toMatchObject({ field, rule });
    }
    await nothingOf(ws('capped'));
    const err = await refusal(op.call('workspace.create', { id: ws('capped'), template: 'web', params: { resources: { memoryBytes: MiB } } }));
    expect(err.data?.field).toBe('params.resources'); // a template without the parameter never lets operators set limits
    await nothingOf(ws('capped'));

    const view = await op.call('workspace.create', { id: ws('capped'), template: 'capped', params: { resources: { memoryBytes: 128 * MiB } } });
    expect(view.spec).toMatchObject({ resources: { memoryBytes: 128 * MiB, pidsLimit: 64 } });
    await op.call('workspace.ensure', { id: ws('capped') });
    const info = await docker.getContainer(`wsup-${ws('capped')}`).inspect();
    expect([info.HostConfig.Memory, info.HostConfig.PidsLimit]).toEqual([128 * MiB, 64]);
  });

  it("the admin's raw spec sets any limits", async () => {
    const admin = rig.client('admin');
    await admin.call('workspace.create', { id: ws('admin-res'), spec: { image: IMAGE, cmd: CMD, resources: { memoryBytes: 96 * MiB, nanoCpus: 500_000_000, pidsLimit: 32 } } });
    await admin.call('workspace.ensure', { id: ws('admin-res') });
    const info = await docker.getContainer(`wsup-${ws('admin-res')}`).inspect();
    expect([info.HostConfig.Memory, info.HostConfig.NanoCpus, info.HostConfig.PidsLimit]).toEqual([96 * MiB, 500_000_000, 32]);
  });

  it("the admin's raw spec still reaches the engine unchanged", async () => {
    const admin = rig.client('admin');
    await admin.call('workspace.create', { id: ws('admin'), spec: { image: IMAGE, cmd: CMD, mounts: [{ source: share, target: '/share', type: 'bind', readOnly: true }] } });
    await admin.call('workspace.ensure', { id: ws('admin') });
    const info = await docker.getContainer(`wsup-${ws('admin')}`).inspect();
    expect(info.Mounts.map((m) => [m.Type, m.Source, m.Destination])).toEqual([['bind', share, '/share']]);
  });
});
