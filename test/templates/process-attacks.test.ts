/**
 * An operator token against the local-process provider, through the real control server: whatever it
 * sends, no command of its choosing runs and no loader environment reaches the agent. Each refusal is
 * checked in the world, not only in the reply: no marker file, no process, no process record, nothing
 * stored. The admin's raw spec still runs what it names (the admin is host-equivalent).
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ERROR_CODES } from '../../src/protocol/index.ts';
import { AGENT_SOURCE } from '../../src/providers/process-agent.ts';
import { refusal, startTemplateRig, type TemplateRig } from './rig.ts';

const CONFIG = {
  templates: {
    node: { provider: 'process', process: { env: { APP_MODE: 'dev' } }, params: { env: { keys: ['LOG_LEVEL', 'APP_MODE'], patterns: ['*'] } } },
    ops: { provider: 'process', role: 'admin', process: { env: { NODE_OPTIONS: '--max-old-space-size=256' } } },
  },
};

let rig: TemplateRig;
beforeAll(async () => {
  rig = await startTemplateRig({ provider: 'process', config: CONFIG });
});
afterAll(async () => {
  for (const id of ['adm-raw', 'op-ok']) await rig.client('admin').call('workspace.destroy', { id }).catch(() => undefined);
  await rig.close();
});

/** Live processes whose argv or environment mention `needle` (Linux /proc). */
function processesMentioning(needle: string): number[] {
  const out: number[] = [];
  for (const pid of readdirSync('/proc').filter((e) => /^\d+$/.test(e))) {
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'latin1') + readFileSync(`/proc/${pid}/environ`, 'latin1');
      if (cmd.includes(needle)) out.push(Number(pid));
    } catch {
      // gone, or not ours to read
    }
  }
  return out;
}

/** Nothing of workspace `id` exists: not in the store, no process record, no process carrying `needle`. */
async function nothingOf(id: string, needle: string): Promise<void> {
  expect(await rig.store.getWorkspace(id)).toBeNull();
  expect(await rig.store.processes.get(id)).toBeNull();
  expect(processesMentioning(needle)).toEqual([]);
  expect(await rig.rt.provider.inspect(id)).toBeNull();
}

describe('operator attacks on the process provider', () => {
  it('a raw spec with a command is refused and runs nothing', async () => {
    const marker = join(rig.dir, 'pwned-command');
    const op = rig.client('operator');
    const err = await refusal(op.call('workspace.create', { id: 'atk-cmd', spec: { command: ['sh', '-c', `touch ${marker}; sleep 30`] } }));
    expect(err.code).toBe(ERROR_CODES.WSUP_POLICY);
    expect(err.data).toMatchObject({ wsupCode: 'WSUP_POLICY', field: 'spec' });
    expect(err.message).toMatch(/spec.*admin/);
    await nothingOf('atk-cmd', marker);
    expect(existsSync(marker)).toBe(false);
  });

  it('a raw spec with NODE_OPTIONS and no command is refused', async () => {
    const op = rig.client('operator');
    const err = await refusal(op.call('workspace.create', { id: 'atk-env', spec: { env: { NODE_OPTIONS: `--require ${join(rig.dir, 'x.cjs')}` } } }));
    expect(err.data).toMatchObject({ field: 'spec' });
    await nothingOf('atk-env', 'x.cjs');
  });

  it.each([
    ['NODE_OPTIONS', '--require /tmp/wsup-atk-1.cjs'],
    ['node_options', '--require /tmp/wsup-atk-2.cjs'],
    ['Path', '/tmp/wsup-atk-3-bin'],
    ['LD_PRELOAD', '/tmp/wsup-atk-4.so'],
    ['ld_library_path', '/tmp/wsup-atk-5'],
    ['BASH_ENV', '/tmp/wsup-atk-6.sh'],
    ['WSUP_AGENT_TOKEN', 'wsup-atk-7'],
    ['LOG_LEVEL=x NODE_OPTIONS', '--require /tmp/wsup-atk-8.cjs'],
  ])('template env param %s is refused, naming the key', async (key, value) => {
    const op = rig.client('operator');
    const err = await refusal(op.call('workspace.create', { id: 'atk-param', template: 'node', params: { env: { [key]: value } } }));
    expect(err.code).toBe(ERROR_CODES.WSUP_POLICY);
    expect(err.data?.field).toBe(`params.env.${key}`);
    expect(err.message).toContain(`params.env.${key}`);
    await nothingOf('atk-param', value);
  });

  it('params the template does not offer, and admin-only templates, are refused', async () => {
    const op = rig.client('operator');
    const cmd = await refusal(op.call('workspace.create', { id: 'atk-p2', template: 'node', params: { command: ['sh'] } }));
    expect(cmd.data).toMatchObject({ field: 'params.command' });
    const none = await refusal(op.call('workspace.create', { id: 'atk-p2', params: { env: { LOG_LEVEL: 'x' } } }));
    expect(none.data).toMatchObject({ field: 'params.env', rule: expect.stringMatching(/not a parameter of template default/) as string });
    const ops = await refusal(op.call('workspace.create', { id: 'atk-p2', template: 'ops' }));
    expect(ops.data).toMatchObject({ field: 'template', rule: 'template ops is for role admin' });
    const missing = await refusal(op.call('workspace.create', { id: 'atk-p2', template: 'nope' }));
    expect(missing.data?.field).toBe('template');
    expect(await rig.store.getWorkspace('atk-p2')).toBeNull();
  });

  it('an allowed parameter reaches the agent, and the template is remembered', async () => {
    const op = rig.client('operator');
    const view = await op.call('workspace.create', { id: 'op-ok', template: 'node', params: { env: { LOG_LEVEL: 'debug' } } });
    // The operator sees which env keys the workspace got, not their values (those are for admins).
    expect(view.spec).toEqual({
      id: 'op-ok',
      template: 'node',
      env: { APP_MODE: '[redacted]', LOG_LEVEL: '[redacted]' },
      wsupTemplate: { name: 'node', version: expect.stringMatching(/^[0-9a-f]{12}$/) as string },
      wsupParams: { env: { LOG_LEVEL: '[redacted]' } },
      // Who created it: what a per-owner quota counts.
      wsupOwner: expect.stringMatching(/^operator:/) as string,
    });
    expect((await rig.store.getWorkspace('op-ok'))?.spec).toMatchObject({ template: 'node', env: { LOG_LEVEL: 'debug' } });
    await op.call('workspace.ensure', { id: 'op-ok' });
    const rec = (await rig.store.processes.get('op-ok')) as { pid: number; command: string[] };
    expect(rec.command).toEqual([process.execPath, '-e', AGENT_SOURCE]);
    const environ = readFileSync(`/proc/${rec.pid}/environ`, 'latin1').split('\0');
    expect(environ).toEqual(expect.arrayContaining(['LOG_LEVEL=debug', 'APP_MODE=dev']));
    // What the server keeps to render the spec again (template, version, params) is not the agent's.
    expect(environ.filter((kv) => /^wsup[A-Z]/.test(kv))).toEqual([]);
  });

  it("the admin's raw spec still runs the command it names", async () => {
    const marker = join(rig.dir, 'admin-ran');
    const admin = rig.client('admin');
    const source = `require('node:fs').writeFileSync(${JSON.stringify(marker)}, 'x');\n${AGENT_SOURCE}`;
    await admin.call('workspace.create', { id: 'adm-raw', spec: { command: [process.execPath, '-e', source] } });
    await admin.call('workspace.ensure', { id: 'adm-raw' });
    expect(existsSync(marker)).toBe(true);
  });
});
