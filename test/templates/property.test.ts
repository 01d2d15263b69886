/**
 * fast-check over `workspace.create` through the control server: {template, params, spec} × role, with
 * adversarial values (loader env keys in odd casings, `=` in keys, mount paths with `..`, `//`, a symlink
 * to `/`, the docker socket, shared network namespaces, images outside the pattern, unknown params). The
 * server accepts exactly what an independent reading of the template policy allows, a refused call leaves
 * no workspace behind, and every accepted spec stays inside the policy.
 */
import fc from 'fast-check';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, posix } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WsupRpcError } from '../../src/client/index.ts';
import { ERROR_CODES, type Role } from '../../src/protocol/index.ts';
import { parseConfig, providerDefaultTemplate, TemplateSet } from '../../src/templates/index.ts';
import { startRig, type ServerRig } from '../server/rig.ts';

const base = mkdtempSync(join(tmpdir(), 'wsup-prop-'));
const ROOT = join(base, 'root');
mkdirSync(join(ROOT, 'src'), { recursive: true });
symlinkSync('/', join(ROOT, 'link'));
const LINK = join(ROOT, 'link');
const ENV_KEYS = ['LOG_LEVEL', 'APP_MODE'];

const CONFIG = {
  templates: {
    web: {
      provider: 'docker',
      docker: { image: 'wsup-test:latest', networkMode: 'none', bindRoots: [ROOT] },
      params: {
        image: { patterns: ['wsup-test:*'] },
        env: { keys: ENV_KEYS },
        mounts: { volumes: ['wsupv-*'], bind: true, max: 3 },
        networkMode: { values: ['none', 'bridge'] },
      },
    },
    ops: { provider: 'docker', role: 'admin', docker: { image: 'wsup-test:latest', networkMode: 'host' } },
  },
};

const casing = (s: string) => fc.array(fc.boolean(), { minLength: s.length, maxLength: s.length }).map((up) => [...s].map((c, i) => (up[i] ? c.toUpperCase() : c.toLowerCase())).join(''));
/** Half the time a value the policy allows, so accepted and refused requests are both common. */
const mostly = <T, U>(good: fc.Arbitrary<T>, bad: fc.Arbitrary<U>) => fc.oneof({ arbitrary: good, weight: 3 }, { arbitrary: bad, weight: 1 });
const envKey = mostly(
  fc.constantFrom(...ENV_KEYS),
  fc.oneof(
    fc.constantFrom('NODE_OPTIONS', 'LD_PRELOAD', 'LD_LIBRARY_PATH', 'PATH', 'DYLD_INSERT_LIBRARIES', 'PYTHONPATH', 'NODE_PATH', 'BASH_ENV', 'ENV', 'LOG_LEVEL', 'WSUP_AGENT_TOKEN').chain(casing),
    fc.constantFrom('LOG_LEVEL=x', 'LOG_LEVEL\0', ' LOG_LEVEL', 'APP_MODE\nPATH', '__proto__', 'constructor', ''),
  ),
);
const envValue = mostly(fc.string({ maxLength: 12 }), fc.constantFrom('--require /tmp/x.cjs', 'a\0b', 7 as unknown as string));
const segment = fc.constantFrom('..', '.', '', 'src', 'link', 'etc', 'docker.sock', 'run', 'var');
const badSource = fc.oneof(
  fc.tuple(fc.constantFrom(ROOT, '/', '', ROOT + '/', '/var/run', base), fc.array(segment, { maxLength: 4 })).map(([p, s]) => [p, ...s].join('/')),
  fc.constantFrom('/', '/var/run/docker.sock', `${ROOT}/../..`, `${ROOT}//src`, `${LINK}/etc`, `${LINK}/nope`, 'wsupv-cache', 'wsupv-', 'other', ROOT),
);
const goodMount = fc.oneof(
  fc.constantFrom('src', 'src/a', 'new', 'src/../src').map((p) => ({ source: `${ROOT}/${p}`, target: '/data', type: 'bind' })),
  fc.constantFrom('wsupv-cache', 'wsupv-1').map((v) => ({ source: v, target: '/cache', type: 'volume', readOnly: true })),
);
const badMount = fc.record(
  { source: badSource, target: fc.constantFrom('/data', 'data', '/a/../b', '/x/'), type: fc.constantFrom('bind', 'volume', 'tmpfs', 'npipe'), readOnly: fc.constantFrom(true, false, 'yes') },
  { requiredKeys: ['source', 'target'] },
);
const params = fc.record(
  {
    image: mostly(fc.constantFrom('wsup-test:latest', 'wsup-test:1.2'), fc.constantFrom('wsup-test:', 'wsup-test:a/b', 'alpine:latest', 'WSUP-TEST:latest', 'evil/wsup-test:1', 'wsup-test:x y', 7)),
    env: fc.dictionary(envKey, envValue, { maxKeys: 3 }),
    mounts: fc.array(mostly(goodMount, badMount), { maxLength: 4 }),
    networkMode: mostly(fc.constantFrom('none', 'bridge'), fc.constantFrom('host', 'HOST', 'container:db', 'ns:/proc/1/ns/net', 'None', ' none')),
  },
  { requiredKeys: [] },
);
const extraParam = fc.constantFrom({ command: ['sh', '-c', 'id'] }, { privileged: true }, { cmd: ['id'] }, { agentToken: 'x' });
const request = fc.oneof(
  { weight: 6, arbitrary: fc.record({ template: fc.constantFrom('web', 'web', 'web', 'ops', 'default', 'nope'), params }, { requiredKeys: [] }) },
  { weight: 1, arbitrary: fc.record({ template: fc.constant('web'), params: fc.tuple(params, extraParam).map(([p, x]) => ({ ...p, ...x })) }) },
  {
    weight: 1,
    arbitrary: fc.record(
      { spec: fc.constantFrom({ image: 'alpine' }, { command: ['sh', '-c', 'id'] }, { mounts: [{ source: '/', target: '/host' }] }), template: fc.constant('web'), params: fc.constant({}) },
      { requiredKeys: ['spec'] },
    ),
  },
);
const role = fc.constantFrom<Role>('viewer', 'operator', 'admin');

// ---- the policy, read independently of src/templates ----------------------------------------------

const within = (p: string, root: string) => p === root || p.startsWith(`${root}/`);
const isString = (v: unknown): v is string => typeof v === 'string';

function mountOk(m: Record<string, unknown>): boolean {
  const { source: src, target, type = 'bind', readOnly } = m;
  if (!isString(src) || !isString(target) || !target.startsWith('/') || posix.normalize(target) !== target) return false;
  if (readOnly !== undefined && typeof readOnly !== 'boolean') return false;
  if (type === 'volume') return /^wsupv-[a-zA-Z0-9_.-]*$/.test(src);
  if (type !== 'bind') return false;
  const n = posix.normalize(src).replace(/(.)\/$/, '$1');
  return src.startsWith('/') && within(n, ROOT) && !within(n, LINK);
}

function policyAllows(r: Role, req: { template?: string; params?: Record<string, unknown>; spec?: unknown }): boolean {
  if (r === 'viewer') return false;
  if (req.spec !== undefined) return r === 'admin' && req.template === undefined && req.params === undefined;
  const p = req.params ?? {};
  const keys = Object.keys(p);
  switch (req.template ?? 'default') {
    case 'default':
      return keys.length === 0;
    case 'ops':
      return r === 'admin' && keys.length === 0;
    case 'web':
      return keys.every((k) => {
        const v = p[k];
        if (k === 'image') return isString(v) && /^wsup-test:[A-Za-z0-9._:@-]*$/.test(v);
        if (k === 'networkMode') return v === 'none' || v === 'bridge';
        if (k === 'env') return Object.entries(v as object).every(([ek, ev]) => ENV_KEYS.includes(ek) && isString(ev) && !ev.includes('\0'));
        if (k === 'mounts') return (v as unknown[]).length <= 3 && (v as Array<Record<string, unknown>>).every(mountOk);
        return false;
      });
    default:
      return false;
  }
}

/** What every spec an operator got must satisfy, whatever the request was. */
function insidePolicy(spec: Record<string, unknown>): void {
  expect(['web', 'default', 'ops']).toContain(spec.template);
  expect(['none', 'bridge', 'host']).toContain(spec.networkMode ?? 'none');
  expect(spec.image).toMatch(/^wsup-test:/);
  for (const k of Object.keys((spec.env as object | undefined) ?? {})) expect(ENV_KEYS).toContain(k);
  for (const m of (spec.mounts as Array<{ type: string; source: string }> | undefined) ?? []) {
    if (m.type === 'bind') expect(within(m.source, ROOT) && !within(m.source, LINK)).toBe(true);
    else expect(m).toMatchObject({ type: 'volume', source: expect.stringMatching(/^wsupv-/) as string });
  }
  for (const k of ['command', 'cmd', 'privileged', 'agentToken']) expect(spec).not.toHaveProperty(k);
}

let rig: ServerRig;
beforeAll(async () => {
  const templates = TemplateSet.fromConfig(parseConfig('property config', CONFIG), providerDefaultTemplate('docker', { image: 'wsup-test:latest' }));
  rig = await startRig({ server: { templates } });
});
afterAll(async () => {
  await rig.close();
  rmSync(base, { recursive: true, force: true });
});

describe('workspace.create params × roles', () => {
  it('accepts exactly what the template policy allows, and a refusal leaves nothing', async () => {
    const clients = { viewer: rig.client('viewer'), operator: rig.client('operator'), admin: rig.client('admin') };
    let n = 0;
    await fc.assert(
      fc.asyncProperty(role, request, async (r, req: { template?: string; params?: Record<string, unknown>; spec?: unknown }) => {
        const id = `prop-${n++}`;
        const got = await clients[r].call('workspace.create', { id, ...req } as never).then(
          (view) => ({ ok: true as const, view }),
          (err: unknown) => ({ ok: false as const, err }),
        );
        expect(got.ok).toBe(policyAllows(r, req));
        if (got.ok) {
          if (r !== 'admin' || !('spec' in req)) insidePolicy(got.view.spec);
          return;
        }
        expect(got.err).toBeInstanceOf(WsupRpcError);
        const code = (got.err as WsupRpcError).code;
        // A NUL anywhere in the params is refused at the edge (-32602), before any policy is consulted.
        expect([ERROR_CODES.WSUP_POLICY, ERROR_CODES.WSUP_FORBIDDEN, ERROR_CODES.INVALID_PARAMS]).toContain(code);
        if (code === ERROR_CODES.WSUP_POLICY) expect((got.err as WsupRpcError).data).toMatchObject({ field: expect.any(String) as string, rule: expect.any(String) as string });
        expect(await rig.supervisor.has(id)).toBe(false);
      }),
      { numRuns: 400 },
    );
  }, 60_000);
});
