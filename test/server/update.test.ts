/**
 * Template versions through the control server: views of a workspace whose template changed say
 * `outdated`; `workspace.update` renders its spec again from the current version (with the params it was
 * created with) and restarts onto it; `autoUpdate: 'on-start'` does the same at its next start, `'never'`
 * keeps the old spec. What the provider is started with is read from its own log of starts.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import WebSocket from 'ws';
import { WsupClient, WsupRpcError } from '../../src/client/index.ts';
import type { Role } from '../../src/protocol/index.ts';
import { FakeProvider } from '../../src/providers/fake.ts';
import type { Endpoint, WorkspaceSpec } from '../../src/providers/types.ts';
import { createServer, staticTokens, type WsupServer } from '../../src/server/index.ts';
import { Supervisor } from '../../src/supervisor/supervisor.ts';
import { AutoUpdate, parseConfig, providerDefaultTemplate, TemplateSet } from '../../src/templates/index.ts';

/** The fake provider, also keeping the spec of every start it was asked for. */
class RecordingProvider extends FakeProvider {
  readonly started: WorkspaceSpec[] = [];
  override start(spec: WorkspaceSpec, signal: AbortSignal): Promise<Endpoint> {
    this.started.push(structuredClone(spec));
    return super.start(spec, signal);
  }
  startsOf(id: string): WorkspaceSpec[] {
    return this.started.filter((s) => s.id === id);
  }
}

const TOKENS: Record<Role, string> = { admin: 'upd-admin', operator: 'upd-operator', viewer: 'upd-viewer' };

const template = (version: string, extra: Record<string, unknown> = {}) => ({
  provider: 'process',
  process: { env: { APP_VERSION: version } },
  params: { env: { keys: ['LOG_LEVEL'], values: ['debug', 'info'] } },
  ...extra,
});
const config = (version: string, logLevels = ['debug', 'info']) =>
  parseConfig('update test', {
    templates: {
      web: template(version, { params: { env: { keys: ['LOG_LEVEL'], values: logLevels } } }),
      auto: template(version, { policy: { autoUpdate: 'on-start' } }),
      pinned: template(version, { policy: { autoUpdate: 'never' } }),
    },
  });
const compiled = (version: string, logLevels?: string[]) => TemplateSet.fromConfig(config(version, logLevels), providerDefaultTemplate(null)).all;

let provider: RecordingProvider;
let supervisor: Supervisor;
let templates: TemplateSet;
let server: WsupServer;
let clients: WsupClient[];
let port: number;
let autoUpdateErrors: string[];

beforeEach(async () => {
  provider = new RecordingProvider({ latencyMs: 1 });
  templates = new TemplateSet(compiled('1'));
  autoUpdateErrors = [];
  const auto = new AutoUpdate(templates, { onError: (_err, ctx) => autoUpdateErrors.push(`${ctx.id}: ${ctx.what}`) });
  supervisor = new Supervisor({ provider, prepareSpec: auto.prepareSpec });
  auto.attach(supervisor);
  const tokens = staticTokens((Object.keys(TOKENS) as Role[]).map((role) => ({ token: TOKENS[role], role })));
  server = createServer({ supervisor, tokens, port: 0, templates });
  ({ port } = await server.listen());
  clients = [];
});

afterEach(async () => {
  for (const c of clients) c.close();
  await server.close();
  await supervisor.shutdown({ deadlineMs: 1000 });
});

function client(role: Role): WsupClient {
  const c = new WsupClient({ url: `ws://127.0.0.1:${port}/control`, token: TOKENS[role], WebSocket, reconnect: false });
  clients.push(c);
  return c;
}

async function refusal(p: Promise<unknown>): Promise<WsupRpcError> {
  const err = await p.then(
    (v) => new Error(`expected a refusal, got ${JSON.stringify(v)}`),
    (e: unknown) => e,
  );
  if (!(err instanceof WsupRpcError)) throw err;
  return err;
}

async function running(id: string, starts: number): Promise<void> {
  await vi.waitFor(
    async () => {
      expect(provider.startsOf(id)).toHaveLength(starts);
      expect((await supervisor.get(id)).state).toBe('running');
    },
    { timeout: 5000, interval: 5 },
  );
}

const versionOf = (name: string) => templates.get(name)!.version;

describe('outdated', () => {
  it('appears in get and list once the template changes, only on workspaces of that template', async () => {
    const admin = client('admin');
    await admin.call('workspace.create', { id: 'o-web', template: 'web' });
    await admin.call('workspace.create', { id: 'o-raw', spec: { command: ['true'] } });
    expect((await admin.call('workspace.get', { id: 'o-web' })).outdated).toBe(false);
    const v1 = versionOf('web');

    templates.replace(compiled('2'));
    expect(versionOf('web')).not.toBe(v1);
    const viewer = client('viewer');
    expect((await viewer.call('workspace.get', { id: 'o-web' })).outdated).toBe(true);
    const { items } = await viewer.call('workspace.list', {});
    expect(Object.fromEntries(items.map((v) => [v.id, v.outdated]))).toEqual({ 'o-web': true, 'o-raw': undefined });
  });
});

describe('workspace.update', () => {
  it('restarts onto the new version with the params the workspace was created with', async () => {
    const op = client('operator');
    await op.call('workspace.create', { id: 'u-1', template: 'web', params: { env: { LOG_LEVEL: 'debug' } } });
    await op.call('workspace.ensure', { id: 'u-1' });
    expect(provider.startsOf('u-1')[0]).toMatchObject({ env: { APP_VERSION: '1', LOG_LEVEL: 'debug' } });

    templates.replace(compiled('2'));
    const answer = await op.call('workspace.update', { id: 'u-1' });
    expect(answer).toMatchObject({ id: 'u-1', outcome: 'started', cycle: 2 });
    expect(['starting', 'stopping']).toContain(answer.state);
    await running('u-1', 2);
    expect(provider.startsOf('u-1')[1]).toMatchObject({ env: { APP_VERSION: '2', LOG_LEVEL: 'debug' }, wsupTemplate: { name: 'web', version: versionOf('web') } });
    const view = await client('admin').call('workspace.get', { id: 'u-1' });
    expect(view).toMatchObject({ outdated: false, cycle: 2, spec: { env: { APP_VERSION: '2', LOG_LEVEL: 'debug' } } });
    const history = await op.call('events.history', { id: 'u-1' });
    const started = history.events.filter((e) => e.type === 'cycle.started').map((e) => (e.type === 'cycle.started' ? e.cycle.reason : ''));
    expect(started.at(-1)).toContain(`update to template web version ${versionOf('web')}`);
  });

  it('a viewer cannot update: refused, and nothing moves', async () => {
    await client('operator').call('workspace.create', { id: 'u-view', template: 'web' });
    await client('operator').call('workspace.ensure', { id: 'u-view' });
    templates.replace(compiled('2'));
    const err = await refusal(client('viewer').call('workspace.update', { id: 'u-view' }));
    expect(err.data).toMatchObject({ wsupCode: 'WSUP_FORBIDDEN' });
    expect(provider.startsOf('u-view')).toHaveLength(1);
    expect(await supervisor.get('u-view')).toMatchObject({ cycle: 1, state: 'running', spec: { env: { APP_VERSION: '1' } } });
    expect((await client('viewer').call('workspace.get', { id: 'u-view' })).outdated).toBe(true);
  });

  it('a param the new version no longer allows is refused by name, and the workspace stays as it was', async () => {
    const op = client('operator');
    await op.call('workspace.create', { id: 'u-param', template: 'web', params: { env: { LOG_LEVEL: 'debug' } } });
    await op.call('workspace.ensure', { id: 'u-param' });
    templates.replace(compiled('2', ['info']));
    const err = await refusal(op.call('workspace.update', { id: 'u-param' }));
    expect(err.data).toMatchObject({ wsupCode: 'WSUP_POLICY', field: 'params.env.LOG_LEVEL' });
    expect(err.message).toContain('must be one of "info"');
    expect(await supervisor.get('u-param')).toMatchObject({ cycle: 1, spec: { env: { APP_VERSION: '1', LOG_LEVEL: 'debug' } } });
  });

  it('a workspace from a raw spec has no template version to move to', async () => {
    await client('admin').call('workspace.create', { id: 'u-raw', spec: { command: ['true'] } });
    const err = await refusal(client('admin').call('workspace.update', { id: 'u-raw' }));
    expect(err.data).toMatchObject({ wsupCode: 'WSUP_POLICY', field: 'template' });
    expect(err.message).toContain('not created from a template');
  });

  it('below admin, the stored params show env keys with their values hidden, like the spec env', async () => {
    await client('operator').call('workspace.create', { id: 'u-redact', template: 'web', params: { env: { LOG_LEVEL: 'debug' } } });
    const seen = await client('viewer').call('workspace.get', { id: 'u-redact' });
    expect(seen.spec.wsupParams).toEqual({ env: { LOG_LEVEL: '[redacted]' } });
    expect((await client('admin').call('workspace.get', { id: 'u-redact' })).spec.wsupParams).toEqual({ env: { LOG_LEVEL: 'debug' } });
  });
});

describe('autoUpdate', () => {
  async function startedStoppedChanged(ids: Array<[string, string]>): Promise<void> {
    const op = client('operator');
    for (const [id, t] of ids) {
      await op.call('workspace.create', { id, template: t, params: { env: { LOG_LEVEL: 'info' } } });
      await op.call('workspace.ensure', { id });
      await op.call('workspace.stop', { id });
    }
    templates.replace(compiled('2'));
  }

  it("'on-start' starts on the new version and stores it; 'never' keeps the old spec", async () => {
    await startedStoppedChanged([
      ['a-on', 'auto'],
      ['a-never', 'pinned'],
    ]);
    const op = client('operator');
    await op.call('workspace.ensure', { id: 'a-on' });
    await op.call('workspace.ensure', { id: 'a-never' });
    expect(provider.startsOf('a-on').map((s) => (s.env as Record<string, string>).APP_VERSION)).toEqual(['1', '2']);
    expect(provider.startsOf('a-never').map((s) => (s.env as Record<string, string>).APP_VERSION)).toEqual(['1', '1']);
    expect(provider.startsOf('a-on')[1]).toMatchObject({ env: { LOG_LEVEL: 'info' }, wsupTemplate: { version: versionOf('auto') } });
    expect(await op.call('workspace.get', { id: 'a-on' })).toMatchObject({ outdated: false, spec: { wsupTemplate: { version: versionOf('auto') } } });
    expect((await op.call('workspace.get', { id: 'a-never' })).outdated).toBe(true);
    expect(autoUpdateErrors).toEqual([]);
  });

  it("the workspace's own autoUpdate wins over its template's", async () => {
    const spec = { ...templates.specFor({ template: 'pinned' }, 'operator', 'a-own2'), wsupPolicy: { autoUpdate: 'on-start' } };
    await supervisor.create('a-own2', spec);
    await supervisor.ensure('a-own2');
    await supervisor.stop('a-own2');
    templates.replace(compiled('2'));
    await supervisor.ensure('a-own2');
    expect(provider.startsOf('a-own2').map((s) => (s.env as Record<string, string>).APP_VERSION)).toEqual(['1', '2']);
    expect((await supervisor.get('a-own2')).spec).toMatchObject({ wsupPolicy: { autoUpdate: 'on-start' }, env: { APP_VERSION: '2' } });
  });

  it("'on-start' with a param the new version refuses starts on the stored spec and says why", async () => {
    const op = client('operator');
    await op.call('workspace.create', { id: 'a-refused', template: 'auto', params: { env: { LOG_LEVEL: 'debug' } } });
    await op.call('workspace.ensure', { id: 'a-refused' });
    await op.call('workspace.stop', { id: 'a-refused' });
    const next = parseConfig('update test', { templates: { auto: template('2', { policy: { autoUpdate: 'on-start' }, params: { env: { keys: ['LOG_LEVEL'], values: ['info'] } } }) } });
    templates.replace(TemplateSet.fromConfig(next, providerDefaultTemplate(null)).all);
    await op.call('workspace.ensure', { id: 'a-refused' });
    expect(provider.startsOf('a-refused').map((s) => (s.env as Record<string, string>).APP_VERSION)).toEqual(['1', '1']);
    expect((await op.call('workspace.get', { id: 'a-refused' })).outdated).toBe(true);
    expect(autoUpdateErrors).toHaveLength(1);
    expect(autoUpdateErrors[0]).toContain('a-refused: auto-update to the template\'s current version refused, starting on the stored spec: refused by policy: params.env.LOG_LEVEL');
  });
});
