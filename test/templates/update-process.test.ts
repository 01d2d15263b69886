/**
 * Template updates against the real local-process provider and the PGlite store, wired as `wsup serve`
 * wires them: `workspace.update` replaces the running agent with one started from the template's new
 * version (read from the new process's own environment), the new spec is what the store holds, and an
 * `autoUpdate: 'on-start'` workspace comes up on the new version still carrying a fresh agent token.
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { parseConfig, providerDefaultTemplate, TemplateSet } from '../../src/templates/index.ts';
import { startTemplateRig, type TemplateRig } from './rig.ts';

const config = (version: string) => ({
  templates: {
    node: { provider: 'process', process: { env: { APP_VERSION: version } }, params: { env: { keys: ['LOG_LEVEL'] } } },
    auto: { provider: 'process', process: { env: { APP_VERSION: version } }, policy: { autoUpdate: 'on-start', idleTimeoutMs: '8h' } },
  },
});
const compiled = (version: string) => TemplateSet.fromConfig(parseConfig('v', config(version), { provider: 'process' }), providerDefaultTemplate('process')).all;

let rig: TemplateRig;
beforeAll(async () => {
  rig = await startTemplateRig({ provider: 'process', config: config('1'), autoUpdate: {} });
});
afterAll(async () => {
  for (const id of ['up-1', 'up-auto']) await rig.client('admin').call('workspace.destroy', { id }).catch(() => undefined);
  await rig.close();
});

/** The environment of the workspace's process now, as the kernel has it. */
async function environOf(id: string): Promise<Record<string, string>> {
  const rec = (await rig.store.processes.get(id)) as { pid: number };
  const pairs = readFileSync(`/proc/${rec.pid}/environ`, 'latin1').split('\0').filter(Boolean);
  return Object.fromEntries(pairs.map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
}

describe('template updates on the process provider', () => {
  it('workspace.update restarts the agent from the new version, with its params, and stores the new spec', async () => {
    const op = rig.client('operator');
    await op.call('workspace.create', { id: 'up-1', template: 'node', params: { env: { LOG_LEVEL: 'debug' } } });
    await op.call('workspace.ensure', { id: 'up-1' });
    expect(await environOf('up-1')).toMatchObject({ APP_VERSION: '1', LOG_LEVEL: 'debug' });

    rig.templates.replace(compiled('2'));
    expect((await op.call('workspace.get', { id: 'up-1' })).outdated).toBe(true);
    const answer = await op.call('workspace.update', { id: 'up-1' });
    expect(answer).toMatchObject({ id: 'up-1', outcome: 'started', cycle: 2 });
    await vi.waitFor(async () => expect(await op.call('workspace.get', { id: 'up-1' })).toMatchObject({ state: 'running', cycle: 2, outdated: false }), { timeout: 20_000, interval: 50 });
    const env = await environOf('up-1');
    expect(env).toMatchObject({ APP_VERSION: '2', LOG_LEVEL: 'debug', WSUP_WORKSPACE_ID: 'up-1' });
    expect(Object.keys(env).filter((k) => k.startsWith('wsup'))).toEqual([]);
    expect((await rig.store.getWorkspace('up-1'))?.spec).toMatchObject({ env: { APP_VERSION: '2' }, wsupTemplate: { name: 'node', version: rig.templates.get('node')!.version } });
  }, 30_000);

  it("autoUpdate 'on-start': the next start runs the new version, with a fresh agent token", async () => {
    rig.templates.replace(compiled('2'));
    const op = rig.client('operator');
    await op.call('workspace.create', { id: 'up-auto', template: 'auto' });
    await op.call('workspace.ensure', { id: 'up-auto' });
    const first = await environOf('up-auto');
    expect(first.APP_VERSION).toBe('2');
    await op.call('workspace.stop', { id: 'up-auto' });

    rig.templates.replace(compiled('3'));
    await op.call('workspace.ensure', { id: 'up-auto' });
    const env = await environOf('up-auto');
    expect(env.APP_VERSION).toBe('3');
    expect(env.WSUP_AGENT_TOKEN).toMatch(/^wsa_/);
    expect(env.WSUP_AGENT_TOKEN).not.toBe(first.WSUP_AGENT_TOKEN);
    expect(await rig.store.tokens.agentTokenWorkspace(env.WSUP_AGENT_TOKEN!)).toBe('up-auto');
    const stored = (await rig.store.getWorkspace('up-auto'))?.spec;
    expect(stored).toMatchObject({ env: { APP_VERSION: '3' }, wsupPolicyDefaults: { autoUpdate: 'on-start', idleTimeoutMs: 28_800_000 } });
    expect(stored).not.toHaveProperty('agentToken');
  }, 30_000);
});
