/**
 * `wsup serve --config`: a bad file is refused at startup with the path of the first problem, host-
 * equivalent settings only in admin templates and never as operator parameters; the shipped example loads.
 */
import { mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { loadConfig, parseConfig, providerDefaultTemplate, TemplateSet } from '../../src/templates/index.ts';

const EXAMPLE = fileURLToPath(new URL('../../examples/wsup.config.json', import.meta.url));
const docker = (t: Record<string, unknown>) => ({ templates: { web: { provider: 'docker', docker: { image: 'wsup-test:latest' }, ...t } } });
const refusedAt = (data: unknown, opts: { provider?: string } = {}) => {
  try {
    parseConfig('c.json', data, opts);
  } catch (err) {
    return (err as Error).message;
  }
  throw new Error('the config was accepted');
};

describe('config errors name the path', () => {
  it.each([
    [docker({ docker: { mounts: [{ source: '/etc', target: '/etc' }] } }), 'templates.web.docker.mounts[0].source: must be a volume name or under an allowed root'],
    [docker({ docker: { bindRoots: ['/srv'], mounts: [{ source: '/srv/../etc', target: '/e' }] } }), 'templates.web.docker.mounts[0].source: must be a volume name or under an allowed root'],
    [docker({ docker: { bindRoots: ['/'] } }), 'templates.web.docker.bindRoots[0]: must not be the host root'],
    [docker({ docker: { bindRoots: ['/var/run'] } }), 'templates.web.docker.bindRoots[0]: must not contain the docker socket'],
    [docker({ docker: { bindRoots: ['/srv/a/../b'] } }), 'templates.web.docker.bindRoots[0]: must be written normalised (/srv/b)'],
    [docker({ docker: { networkMode: 'host' } }), 'templates.web.docker.networkMode: host shares a host or container namespace: only a template with role "admin" may use it'],
    [docker({ params: { networkMode: { values: ['none', 'container:db'] } } }), 'templates.web.params.networkMode.values[1]: container:db shares a host or container namespace: never an operator parameter'],
    [docker({ params: { env: { keys: ['LOG_LEVEL', 'NODE_OPTIONS'] } } }), 'templates.web.params.env.keys[1]: NODE_OPTIONS sets node flags'],
    [docker({ params: { env: { keys: ['ld_preload'] } } }), 'templates.web.params.env.keys[0]: ld_preload configures the dynamic linker'],
    [docker({ params: { env: { keys: ['A=B'] } } }), 'templates.web.params.env.keys[0]: must be a letter'],
    [docker({ docker: { env: { PATH: '/opt/bin' } } }), 'templates.web.docker.env.PATH: PATH sets where every shell and exec finds programs: only a template with role "admin" may set it'],
    [docker({ params: { mounts: { bind: true } } }), 'templates.web.params.mounts.bind: bind mounts need docker.bindRoots'],
    [docker({ docker: { privileged: true } }), 'templates.web.docker: Unrecognized key: "privileged"'],
    [docker({ params: { cmd: { values: ['sh'] } } }), 'templates.web.params: Unrecognized key: "cmd"'],
    [{ templates: { web: { provider: 'process', params: { command: {} } } } }, 'templates.web.params: Unrecognized key: "command"'],
    [{ templates: { web: { provider: 'lambda' } } }, 'templates.web.provider'],
    [{ templates: { Web: { provider: 'process' } } }, 'templates.Web: template names are'],
  ])('%j → %s', (data, message) => {
    expect(refusedAt(data)).toContain(`config c.json: ${message}`);
  });

  it('a bind root that is a symlink to / is judged where it leads', () => {
    const dir = mkdtempSync(join(tmpdir(), 'wsup-cfg-'));
    try {
      symlinkSync('/', join(dir, 'everything'));
      expect(refusedAt(docker({ docker: { bindRoots: [join(dir, 'everything')] } }))).toContain('templates.web.docker.bindRoots[0]: must not be the host root');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a template for another provider than the server runs is refused', () => {
    expect(refusedAt(docker({}), { provider: 'process' })).toContain('templates.web.provider: is docker, but this server runs --provider process');
  });

  it('admin templates may fix host-equivalent settings, which operators then cannot use', () => {
    const cfg = parseConfig('c.json', docker({ role: 'admin', docker: { networkMode: 'host', env: { PATH: '/opt/bin' } } }));
    const set = TemplateSet.fromConfig(cfg, providerDefaultTemplate('docker'));
    expect(set.specFor({ template: 'web' }, 'admin', 'w')).toMatchObject({ networkMode: 'host', template: 'web' });
    expect(() => set.specFor({ template: 'web' }, 'operator', 'w')).toThrow('template web is for role admin');
  });

  it('an unreadable or non-JSON file is named', () => {
    expect(() => loadConfig('/nonexistent/wsup.json')).toThrow('config /nonexistent/wsup.json: cannot be read (ENOENT)');
    expect(() => loadConfig(fileURLToPath(import.meta.url))).toThrow(/is not JSON/);
  });
});

describe('ec2 templates', () => {
  it('offer AMIs, instance types and subnets from lists and patterns only', () => {
    const cfg = parseConfig('c.json', {
      templates: { vm: { provider: 'ec2', ec2: { ami: 'ami-base', instanceType: 't3.micro' }, params: { instanceType: { values: ['t3.micro', 't3.small'] }, ami: { patterns: ['ami-team*'] } } } },
    }, { provider: 'ec2' });
    const set = TemplateSet.fromConfig(cfg, providerDefaultTemplate('ec2'));
    expect(set.specFor({ template: 'vm', params: { instanceType: 't3.small', ami: 'ami-team42' } }, 'operator', 'w')).toEqual({
      ami: 'ami-team42',
      instanceType: 't3.small',
      template: 'vm',
      wsupTemplate: { name: 'vm', version: set.get('vm')!.version },
      wsupParams: { instanceType: 't3.small', ami: 'ami-team42' },
    });
    expect(() => set.specFor({ template: 'vm', params: { instanceType: 'p5.48xlarge' } }, 'operator', 'w')).toThrow('params.instanceType: must be one of "t3.micro", "t3.small"');
    expect(() => set.specFor({ template: 'vm', params: { ami: 'ami-other' } }, 'operator', 'w')).toThrow('params.ami: must be one of "ami-team*"');
    expect(() => set.specFor({ template: 'vm', params: { subnetId: 'subnet-x' } }, 'operator', 'w')).toThrow('params.subnetId: not a parameter of template vm');
  });
});

describe('resource limits and security groups', () => {
  it('refuse malformed limits and groups at load, naming the path', () => {
    expect(() => parseConfig('c.json', docker({ docker: { resources: { memoryBytes: 0 } } }))).toThrow('templates.web.docker.resources.memoryBytes');
    expect(() => parseConfig('c.json', docker({ params: { resources: {} } }))).toThrow('templates.web.params.resources: give at least one of maxMemoryBytes');
    expect(() => parseConfig('c.json', { templates: { vm: { provider: 'ec2', ec2: { securityGroupIds: ['default'] } } } }, { provider: 'ec2' })).toThrow('templates.vm.ec2.securityGroupIds[0]: must be a security group id');
  });

  it('let an operator pick security groups from the list only', () => {
    const cfg = parseConfig('c.json', {
      templates: { vm: { provider: 'ec2', ec2: { ami: 'ami-base', instanceType: 't3.micro', securityGroupIds: ['sg-0a'] }, params: { securityGroupIds: { values: ['sg-0a', 'sg-0b'] } } } },
    }, { provider: 'ec2' });
    const set = TemplateSet.fromConfig(cfg, providerDefaultTemplate('ec2'));
    expect(set.specFor({ template: 'vm' }, 'operator', 'w')).toMatchObject({ securityGroupIds: ['sg-0a'] });
    expect(set.specFor({ template: 'vm', params: { securityGroupIds: ['sg-0b'] } }, 'operator', 'w')).toMatchObject({ securityGroupIds: ['sg-0b'] });
    expect(() => set.specFor({ template: 'vm', params: { securityGroupIds: ['sg-0b', 'sg-open'] } }, 'operator', 'w')).toThrow('params.securityGroupIds[1]: must be one of "sg-0a", "sg-0b"');
    expect(() => set.specFor({ template: 'vm', params: { securityGroupIds: [] } }, 'operator', 'w')).toThrow('params.securityGroupIds: must be a non-empty list');
  });
});

describe('examples/wsup.config.json', () => {
  it('loads, and its templates resolve as documented', () => {
    const set = TemplateSet.fromConfig(loadConfig(EXAMPLE, { provider: 'docker' }), providerDefaultTemplate('docker'));
    expect(set.names.sort()).toEqual(['debug-host', 'default', 'web']);
    expect(set.specFor({}, 'operator', 'w')).toEqual({
      image: 'wsup-test:latest',
      cmd: ['sleep', 'infinity'],
      networkMode: 'none',
      template: 'default',
      wsupTemplate: { name: 'default', version: set.get('default')!.version },
    });
    const web = set.specFor({ template: 'web', params: { env: { LOG_LEVEL: 'debug' }, mounts: [{ source: '/srv/wsup/alice', target: '/src', type: 'bind' }] } }, 'operator', 'w');
    expect(web).toMatchObject({ env: { APP_MODE: 'dev', LOG_LEVEL: 'debug' }, mounts: [{ source: '/srv/wsup/alice', target: '/src', type: 'bind', readOnly: true }] });
    expect(() => set.specFor({ template: 'web', params: { env: { LOG_LEVEL: 'trace' } } }, 'operator', 'w')).toThrow('params.env.LOG_LEVEL: must be one of "debug", "info", "warn"');
    expect(() => set.specFor({ template: 'debug-host' }, 'operator', 'w')).toThrow('template debug-host is for role admin');
    expect(web.wsupPolicyDefaults).toEqual({ idleTimeoutMs: 1_800_000, autoUpdate: 'on-start' });
    expect(set.limits()).toEqual({ perTemplate: { web: 20 } });
  });
});
