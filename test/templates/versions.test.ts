/**
 * Template versions, per-template policy and quota config, and re-rendering: the version is a hash of
 * what shapes a template's specs (stable across key order, changed by any change that matters), a bad
 * per-template policy stops config load naming the template and field, and a re-render replays the
 * workspace's params through the template's current rules.
 */
import { describe, expect, it } from 'vitest';
import { createDockerProvider } from '../../src/providers/docker.ts';
import { parseConfig, parseDuration, providerDefaultTemplate, TemplateSet, templateStamp, type WsupConfig } from '../../src/templates/index.ts';

const fallback = providerDefaultTemplate('docker', { image: 'wsup-test:latest' });
const setOf = (templates: Record<string, unknown>) => TemplateSet.fromConfig(parseConfig('c.json', { templates }), fallback);
const versionOf = (t: Record<string, unknown>) => setOf({ web: t }).get('web')!.version;
const WEB = {
  provider: 'docker',
  docker: { image: 'wsup-test:latest', env: { APP_MODE: 'dev', TEAM: 'a' }, networkMode: 'none' },
  params: { env: { keys: ['LOG_LEVEL'], values: ['debug', 'info'] }, networkMode: { values: ['none', 'bridge'] } },
};
const refusedAt = (data: unknown): string => {
  try {
    parseConfig('c.json', data);
  } catch (err) {
    return (err as Error).message;
  }
  throw new Error('the config was accepted');
};

describe('template version', () => {
  it('is 12 hex digits and does not depend on key order', () => {
    const shuffled = {
      params: { networkMode: { values: ['none', 'bridge'] }, env: { values: ['debug', 'info'], keys: ['LOG_LEVEL'] } },
      docker: { networkMode: 'none', env: { TEAM: 'a', APP_MODE: 'dev' }, image: 'wsup-test:latest' },
      provider: 'docker',
    };
    expect(versionOf(WEB)).toMatch(/^[0-9a-f]{12}$/);
    expect(versionOf(shuffled)).toBe(versionOf(WEB));
  });

  it.each([
    ['the image', { ...WEB, docker: { ...WEB.docker, image: 'wsup-test:2' } }],
    ['a fixed env value', { ...WEB, docker: { ...WEB.docker, env: { APP_MODE: 'prod', TEAM: 'a' } } }],
    ['a param rule', { ...WEB, params: { ...WEB.params, networkMode: { values: ['none'] } } }],
    ['the order of a list', { ...WEB, params: { ...WEB.params, networkMode: { values: ['bridge', 'none'] } } }],
    ['its default policy', { ...WEB, policy: { idleTimeoutMs: '30m' } }],
  ])('changes with %s', (_what, changed) => {
    expect(versionOf(changed)).not.toBe(versionOf(WEB));
  });

  it('does not change with what only describes or limits it (description, role, maxRunning)', () => {
    expect(versionOf({ ...WEB, description: 'a web workspace', maxRunning: 3 })).toBe(versionOf(WEB));
    expect(versionOf({ ...WEB, role: 'admin' })).toBe(versionOf(WEB));
  });

  it('reads a duration as what it means: "30m" and 1800000 are the same policy', () => {
    expect(versionOf({ ...WEB, policy: { idleTimeoutMs: '30m' } })).toBe(versionOf({ ...WEB, policy: { idleTimeoutMs: 1_800_000 } }));
  });

  it('the default template from the serve flags has one too, changed by the flags', () => {
    expect(providerDefaultTemplate('docker', { image: 'a' }).version).toBe(providerDefaultTemplate('docker', { image: 'a' }).version);
    expect(providerDefaultTemplate('docker', { image: 'a' }).version).not.toBe(providerDefaultTemplate('docker', { image: 'b' }).version);
  });
});

describe('per-template policy and maxRunning in the config', () => {
  it('durations as text become ms; absent fields stay absent, null stays off', () => {
    const set = setOf({ web: { ...WEB, policy: { idleTimeoutMs: '30m', maxLifetimeMs: '1h30m', dormantAfterMs: null, autoUpdate: 'on-start' }, maxRunning: 2 } });
    expect(set.get('web')!.policy).toEqual({ idleTimeoutMs: 1_800_000, maxLifetimeMs: 5_400_000, dormantAfterMs: null, autoUpdate: 'on-start' });
    expect(set.limits()).toEqual({ perTemplate: { web: 2 } });
  });

  it.each([
    [{ policy: { idleTimeoutMs: '30x' } }, 'templates.web.policy.idleTimeoutMs: "30x" is not a duration: use e.g. 45s, 30m'],
    [{ policy: { idleTimeoutMs: '10ms' } }, 'templates.web.policy.idleTimeoutMs: "10ms" is out of range: give at least 1s and at most 366d'],
    [{ policy: { maxLifetimeMs: '400d' } }, 'templates.web.policy.maxLifetimeMs: "400d" is out of range'],
    [{ policy: { idle: '30m' } }, 'templates.web.policy: Unrecognized key: "idle"'],
    [{ policy: { autoUpdate: 'always' } }, 'templates.web.policy.autoUpdate'],
    [{ policy: { autostart: { cron: '61 9 * * *', tz: 'UTC' } } }, 'templates.web.policy.autostart.cron: "61 9 * * *" is not a cron expression'],
    [{ policy: { autostop: { cron: '0 19 * * 1-5', tz: 'Mars/Olympus' } } }, 'templates.web.policy.autostop.tz: "Mars/Olympus" is not an IANA time zone'],
    [{ policy: { autostart: { cron: '0 9 * * *' } } }, 'templates.web.policy.autostart.tz'],
    [{ policy: { maxLifetimeMs: '1h', maxLifetimeWarnMs: '2h' } }, 'templates.web.policy.maxLifetimeWarnMs: must be shorter than maxLifetimeMs'],
    [{ maxRunning: 0 }, 'templates.web.maxRunning: must be at least 1'],
    [{ maxRunning: 1.5 }, 'templates.web.maxRunning: must be a whole number'],
  ])('%j → %s', (extra, message) => {
    expect(refusedAt({ templates: { web: { ...WEB, ...extra } } })).toContain(`config c.json: ${message}`);
  });

  it('a schedule croner and Intl accept loads', () => {
    const set = setOf({ web: { ...WEB, policy: { autostart: { cron: '0 9 * * 1-5', tz: 'Europe/Berlin' }, autostop: null } } });
    expect(set.get('web')!.policy).toEqual({ autostart: { cron: '0 9 * * 1-5', tz: 'Europe/Berlin' }, autostop: null });
  });
});

describe('specFor stamps what a re-render needs', () => {
  const set = setOf({ web: { ...WEB, policy: { idleTimeoutMs: '30m' } } });

  it('wsupTemplate, wsupParams and wsupPolicyDefaults', () => {
    const spec = set.specFor({ template: 'web', params: { env: { LOG_LEVEL: 'debug' } } }, 'operator', 'w');
    expect(spec).toMatchObject({
      template: 'web',
      env: { APP_MODE: 'dev', TEAM: 'a', LOG_LEVEL: 'debug' },
      wsupTemplate: { name: 'web', version: set.get('web')!.version },
      wsupParams: { env: { LOG_LEVEL: 'debug' } },
      wsupPolicyDefaults: { idleTimeoutMs: 1_800_000 },
    });
    expect(set.outdated(spec)).toBe(false);
  });

  it('a raw spec is left as given: no stamp, never outdated', () => {
    const spec = set.specFor({ spec: { image: 'alpine' } }, 'admin', 'w');
    expect(spec).toEqual({ image: 'alpine' });
    expect(templateStamp(spec)).toBeNull();
    expect(set.outdated(spec)).toBeUndefined();
  });

  it('the docker provider ignores the wsup keys: same container hash with and without them', () => {
    const docker = createDockerProvider({ dockerOptions: { socketPath: '/nonexistent.sock' } });
    const spec = { id: 'w', ...set.specFor({ template: 'web', params: { env: { LOG_LEVEL: 'debug' } } }, 'operator', 'w') };
    const bare = Object.fromEntries(Object.entries(spec).filter(([k]) => !k.startsWith('wsup'))) as typeof spec;
    expect(Object.keys(spec).filter((k) => k.startsWith('wsup'))).toHaveLength(3);
    const resolved = docker.resolve(spec);
    expect(resolved.hash).toBe(docker.resolve(bare).hash);
    expect(JSON.stringify(resolved)).not.toMatch(/wsup[A-Z]/);
  });
});

describe('outdated and re-render after a template change', () => {
  const config = (image: string, networkModes: string[]): WsupConfig['templates'] =>
    parseConfig('c.json', { templates: { web: { ...WEB, docker: { ...WEB.docker, image }, params: { ...WEB.params, networkMode: { values: networkModes } } } } }).templates;
  const v1 = () => TemplateSet.fromConfig({ templates: config('wsup-test:1', ['none', 'bridge']) }, fallback);

  it('a workspace is outdated once its template changes, and a re-render brings it to the new version with its params', () => {
    const set = v1();
    const spec = { ...set.specFor({ template: 'web', params: { env: { LOG_LEVEL: 'info' }, networkMode: 'bridge' } }, 'operator', 'w'), wsupPolicy: { idleTimeoutMs: 60_000 }, wsupOwner: 'alice' };
    set.replace(TemplateSet.fromConfig({ templates: config('wsup-test:2', ['none', 'bridge']) }, fallback).all);
    expect(set.outdated(spec)).toBe(true);
    const fresh = set.rerender(spec, 'w', 'operator');
    expect(fresh).toMatchObject({ image: 'wsup-test:2', networkMode: 'bridge', env: { LOG_LEVEL: 'info' }, wsupPolicy: { idleTimeoutMs: 60_000 }, wsupOwner: 'alice' });
    expect(fresh.wsupTemplate).toEqual({ name: 'web', version: set.get('web')!.version });
    expect(set.outdated(fresh)).toBe(false);
  });

  it('a param the new version no longer allows is refused by name', () => {
    const set = v1();
    const spec = set.specFor({ template: 'web', params: { networkMode: 'bridge' } }, 'operator', 'w');
    set.replace(TemplateSet.fromConfig({ templates: config('wsup-test:2', ['none']) }, fallback).all);
    expect(() => set.rerender(spec, 'w', 'operator')).toThrow('refused by policy: params.networkMode: must be one of "none"');
  });

  it('a template that is gone is not outdated (nothing to update to), and a re-render says so', () => {
    const set = v1();
    const spec = set.specFor({ template: 'web' }, 'operator', 'w');
    set.replace([fallback]);
    expect(set.outdated(spec)).toBeUndefined();
    expect(() => set.rerender(spec, 'w', 'operator')).toThrow('template web is no longer offered (templates: default)');
  });

  it('a template that became admin-only cannot be re-rendered by an operator; the server itself may', () => {
    const set = v1();
    const spec = set.specFor({ template: 'web' }, 'operator', 'w');
    set.replace(TemplateSet.fromConfig(parseConfig('c.json', { templates: { web: { ...WEB, role: 'admin', docker: { ...WEB.docker, image: 'wsup-test:3' } } } }), fallback).all);
    expect(() => set.rerender(spec, 'w', 'operator')).toThrow('template web is for role admin');
    expect(set.rerender(spec, 'w')).toMatchObject({ image: 'wsup-test:3' });
  });
});

describe('parseDuration', () => {
  it.each([
    ['45s', 45_000],
    ['30m', 1_800_000],
    ['8h', 28_800_000],
    ['14d', 1_209_600_000],
    ['1h30m', 5_400_000],
    ['250ms', 250],
    ['1500', 1_500],
    [2_000, 2_000],
  ])('%j → %d', (text, ms) => {
    expect(parseDuration(text)).toBe(ms);
  });

  it.each(['30x', '', 'm', '1.5h', '-5m', '1h 30m', -1, 1.5])('%j is not a duration', (text) => {
    expect(parseDuration(text)).toBeNull();
  });
});
