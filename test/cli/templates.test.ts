/**
 * `wsup serve` with templates, as a real process: a bad `--config` stops it at startup naming the path;
 * without `--config`, `--image/--cmd` are the `default` template operators create from (on the real
 * dockerd), and an operator's raw spec is refused.
 */
import Docker from 'dockerode';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { dockerHost } from '../helpers/require.ts';
import { runCli, serveCli } from './run-cli.ts';

const IMAGE = 'wsup-test:latest';
const dirs: string[] = [];
const tmp = () => {
  const d = mkdtempSync(join(tmpdir(), 'wsup-cli-tmpl-'));
  dirs.push(d);
  return d;
};
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('wsup serve --config', () => {
  it('refuses a bad config at startup, naming the path and the rule', async () => {
    const dir = tmp();
    const file = join(dir, 'wsup.json');
    writeFileSync(file, JSON.stringify({ templates: { web: { provider: 'docker', docker: { image: IMAGE, mounts: [{ source: '/', target: '/host' }] } } } }));
    const r = await runCli(['serve', '--provider', 'docker', '--memory', '--port', '0', '--data-dir', dir, '--config', file]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`config ${file}: templates.web.docker.mounts[0].source: must not be the host root`);
    expect(r.stdout).not.toContain('wsup ready');
  }, 60_000);

  it('loads the shipped example', async () => {
    const dir = tmp();
    // A provider other than the example's: the loader got past the schema to the provider check.
    const r = await runCli(['serve', '--provider', 'process', '--memory', '--port', '0', '--data-dir', dir, '--config', 'examples/wsup.config.json']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('templates.default.provider: is docker, but this server runs --provider process');
  }, 60_000);
});

const run = (await dockerHost(IMAGE)) !== null;

describe.skipIf(!run)('wsup serve --provider docker --image --cmd', () => {
  it('is the default template: an operator creates and ensures from it, but may not pass a raw spec', async () => {
    const dir = tmp();
    const op = JSON.parse((await runCli(['token', '--add', 'operator', '--data-dir', dir, '--json'])).stdout) as { token: string };
    const cmd = `sh -c 'trap "exit 0" TERM; sleep 3600 & wait'`;
    const { url, stop } = await serveCli(['--provider', 'docker', '--image', IMAGE, '--cmd', cmd, '--memory', '--port', '0', '--data-dir', dir]);
    const id = `cli${randomBytes(3).toString('hex')}`;
    try {
      const auth = ['--url', url, '--token', op.token, '--json'];
      const created = await runCli(['create', id, ...auth]);
      expect(created.code, created.stderr).toBe(0);
      expect(JSON.parse(created.stdout)).toMatchObject({ spec: { template: 'default', image: IMAGE, cmd: ['sh', '-c', 'trap "exit 0" TERM; sleep 3600 & wait'] } });
      expect((await runCli(['ensure', id, ...auth])).code).toBe(0);
      const info = await new Docker().getContainer(`wsup-${id}`).inspect();
      expect([info.Config.Image, info.State.Running]).toEqual([IMAGE, true]);
      const raw = await runCli(['create', `${id}-raw`, '--spec', JSON.stringify({ image: 'alpine:latest' }), ...auth]);
      expect(raw.code).toBe(1);
      expect(JSON.parse(raw.stdout)).toMatchObject({ error: { wsupCode: 'WSUP_POLICY', data: { field: 'spec' } } });
      expect((await runCli(['destroy', id, ...auth])).code).toBe(0);
    } finally {
      await stop();
      await new Docker().getContainer(`wsup-${id}`).remove({ force: true }).catch(() => undefined);
    }
  }, 90_000);
});
