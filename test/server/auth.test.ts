/**
 * Auth matrix: every method × every role × no token / bad token / expired token, by header and by query;
 * and the Origin allow-list for browser upgrades.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { METHOD_NAMES, METHOD_ROLE, ROLES, type MethodName, type Role } from '../../src/protocol/index.ts';
import { startRig, TOKENS, upgradeStatus, type ServerRig } from './rig.ts';

let rig: ServerRig;
beforeAll(async () => {
  rig = await startRig({ server: { originAllowList: ['https://console.example.com'] } });
  await rig.supervisor.ensure('auth-1');
});
afterAll(() => rig.close());

/** Valid params for each method, so that only the role decides. */
const PARAMS: Record<MethodName, Record<string, unknown>> = {
  'workspace.create': { id: 'auth-new' },
  'workspace.claim': { id: 'auth-1', userId: 'auth-user' },
  'workspace.setPolicy': { id: 'auth-1', policy: {} },
  'workspace.activity': { id: 'auth-1' },
  'workspace.update': { id: 'auth-1' },
  'pool.set': { pool: 'auth-pool', desired: 0 },
  'pool.get': { pool: 'auth-pool' },
  'pool.list': {},
  'quota.usage': {},
  'pool.delete': { pool: 'auth-pool' },
  'workspace.ensure': { id: 'auth-1' },
  'workspace.restart': { id: 'auth-1' },
  'workspace.stop': { id: 'auth-stop' },
  'workspace.destroy': { id: 'auth-destroy' },
  'workspace.get': { id: 'auth-1' },
  'workspace.list': {},
  'files.written': { id: 'auth-1', paths: ['a'] },
  'events.subscribe': {},
  'events.unsubscribe': { subscription: 's0' },
  'events.history': { id: 'auth-1' },
  'machine.definition': {},
  'cluster.members': {},
};
const RANK: Record<Role, number> = { viewer: 0, operator: 1, admin: 2 };

describe('auth', () => {
  describe.each(ROLES)('role %s', (role) => {
    it.each(METHOD_NAMES)(`%s is allowed exactly when the role ranks high enough`, async (method) => {
      await rig.supervisor.create('auth-stop').catch(() => undefined);
      await rig.supervisor.create('auth-destroy').catch(() => undefined);
      const s = await rig.raw(role);
      const reply = (await s.rpc(JSON.stringify({ jsonrpc: '2.0', id: 1, method, params: PARAMS[method] }))) as { error?: { code: number; message: string } };
      const allowed = RANK[role] >= RANK[METHOD_ROLE[method]];
      if (allowed) expect(reply.error?.code, JSON.stringify(reply.error)).not.toBe(-32003);
      else {
        expect(reply.error).toMatchObject({ code: -32003 });
        expect(reply.error?.message).toContain(method);
      }
      expect(s.closed).toBeNull();
    });
  });

  it('a viewer cannot restart, and the workspace is untouched', async () => {
    const before = (await rig.supervisor.get('auth-1')).cycle;
    const err = await rig.client('viewer').call('workspace.restart', { id: 'auth-1' }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: -32003, wsupCode: 'WSUP_FORBIDDEN' });
    expect((await rig.supervisor.get('auth-1')).cycle).toBe(before);
  });

  describe.each([
    ['no token', {}, ''],
    ['bad token', { authorization: 'Bearer nope' }, '?token=nope'],
    ['expired token', { authorization: `Bearer ${TOKENS.expired}` }, `?token=${TOKENS.expired}`],
    ['malformed header', { authorization: 'Basic abc' }, '?token='],
  ] as const)('%s', (_name, headers, query) => {
    it('is refused at the upgrade with 401, by header and by query', async () => {
      expect(await upgradeStatus(rig.wsUrl, headers)).toBe(401);
      expect(await upgradeStatus(`${rig.wsUrl}${query}`, {})).toBe(401);
    });
  });

  it('accepts a token in the query string (browsers cannot set headers)', async () => {
    expect(await upgradeStatus(`${rig.wsUrl}?token=${TOKENS.viewer}`, {})).toBe(101);
  });

  describe('origin allow-list', () => {
    const auth = { authorization: `Bearer ${TOKENS.admin}` };
    it('refuses a browser Origin not on the list with 403', async () => {
      expect(await upgradeStatus(rig.wsUrl, { ...auth, origin: 'https://evil.example.com' })).toBe(403);
    });
    it('accepts a listed Origin, the server’s own origin, and clients that send none', async () => {
      expect(await upgradeStatus(rig.wsUrl, { ...auth, origin: 'https://console.example.com' })).toBe(101);
      expect(await upgradeStatus(rig.wsUrl, { ...auth, origin: `http://127.0.0.1:${rig.port}` })).toBe(101);
      expect(await upgradeStatus(rig.wsUrl, auth)).toBe(101);
    });
  });

  it('answers 404 for upgrades on other paths of its own server', async () => {
    expect(await upgradeStatus(`ws://127.0.0.1:${rig.port}/elsewhere`, { authorization: `Bearer ${TOKENS.admin}` })).toBe(404);
  });
});
