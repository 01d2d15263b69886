/**
 * Template updates on the real dockerd: what the server keeps to render a spec again (`wsupTemplate`,
 * `wsupParams`, `wsupPolicyDefaults`) never reaches a container's env or labels, and `workspace.update`
 * replaces the container with one from the template's new version (read from the engine's own inspect).
 */
import Docker from 'dockerode';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, expect, it, vi } from 'vitest';
import { parseConfig, providerDefaultTemplate, TemplateSet } from '../../src/templates/index.ts';
import { describeWith, dockerHost } from '../helpers/require.ts';
import { startTemplateRig, type TemplateRig } from './rig.ts';

const IMAGE = 'wsup-test:latest';
const CMD = ['sh', '-c', 'trap "exit 0" TERM; sleep 3600 & wait'];
const id = `upd${randomBytes(3).toString('hex')}`;

const config = (version: string) => ({
  templates: {
    web: {
      provider: 'docker',
      docker: { image: IMAGE, cmd: CMD, networkMode: 'none', env: { APP_VERSION: version } },
      params: { env: { keys: ['LOG_LEVEL'] } },
      policy: { idleTimeoutMs: '30m' },
    },
  },
});
const compiled = (version: string) => TemplateSet.fromConfig(parseConfig('v', config(version), { provider: 'docker' }), providerDefaultTemplate('docker')).all;

describeWith(await dockerHost(IMAGE), 'template updates on the docker provider (real dockerd)', () => {
  const docker = new Docker();
  let rig: TemplateRig;
  beforeAll(async () => {
    rig = await startTemplateRig({ provider: 'docker', config: config('1'), runtime: { image: IMAGE, cmd: CMD }, autoUpdate: {} });
  });
  afterAll(async () => {
    await rig?.client('admin').call('workspace.destroy', { id }).catch(() => undefined);
    await rig?.close();
    await docker.getContainer(`wsup-${id}`).remove({ force: true }).catch(() => undefined);
  });

  /** The container's env as a map, and its labels, as the engine reports them. */
  async function container(): Promise<{ ref: string; env: Record<string, string>; labels: Record<string, string> }> {
    const info = await docker.getContainer(`wsup-${id}`).inspect();
    const env = Object.fromEntries((info.Config.Env ?? []).map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
    return { ref: info.Id, env, labels: info.Config.Labels ?? {} };
  }

  it('no wsup* spec key reaches the container; update recreates it from the new version', async () => {
    const op = rig.client('operator');
    await op.call('workspace.create', { id, template: 'web', params: { env: { LOG_LEVEL: 'debug' } } });
    await op.call('workspace.ensure', { id });
    const before = await container();
    expect(before.env).toMatchObject({ APP_VERSION: '1', LOG_LEVEL: 'debug' });
    const leaked = (c: { env: Record<string, string>; labels: Record<string, string> }) =>
      [...Object.keys(c.env), ...Object.keys(c.labels), ...Object.values(c.labels)].filter((k) => /wsup[A-Z]/.test(k));
    expect(leaked(before)).toEqual([]);

    rig.templates.replace(compiled('2'));
    expect((await op.call('workspace.get', { id })).outdated).toBe(true);
    expect(await op.call('workspace.update', { id })).toMatchObject({ id, outcome: 'started', cycle: 2 });
    await vi.waitFor(async () => expect(await op.call('workspace.get', { id })).toMatchObject({ state: 'running', cycle: 2, outdated: false }), { timeout: 60_000, interval: 100 });
    const after = await container();
    expect(after.ref).not.toBe(before.ref);
    expect(after.env).toMatchObject({ APP_VERSION: '2', LOG_LEVEL: 'debug' });
    expect(after.labels['wsup.spec']).not.toBe(before.labels['wsup.spec']);
    expect(leaked(after)).toEqual([]);
  }, 90_000);
});
