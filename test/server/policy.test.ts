/**
 * Lifecycle policies over /control on a real server and supervisor: who may set and see them, bad input,
 * activity and its idle deadline, a flood of activity, and the methods through a client we did not write.
 */
import { runInNewContext } from 'node:vm';
import { setFlagsFromString } from 'node:v8';
import { JSONRPCClient } from 'json-rpc-2.0';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import WebSocket from 'ws';
import type { MethodName, Role, WorkspaceView } from '../../src/protocol/index.ts';
import { startRig, TOKENS, type ServerRig } from './rig.ts';

let rig: ServerRig;
/** What reached the bus hook of `files.written` (a server wired to the bus hands file writes over, not restarts). */
const handedOver: Array<{ id: string; paths: string[] }> = [];
beforeAll(async () => {
  // The flood below sends 10,000 calls on one socket: lift the per-connection rate limit so all of them reach the supervisor.
  rig = await startRig({ server: { limits: { ratePerSec: 1_000_000, burst: 20_000 }, onFilesWritten: (id, paths) => void handedOver.push({ id, paths }) } });
});
afterAll(() => rig.close());

const IDLE = 30 * 60_000;

async function running(id: string): Promise<WorkspaceView> {
  await rig.client('admin').call('workspace.create', { id });
  await rig.client('admin').call('workspace.ensure', { id });
  return rig.client('admin').call('workspace.get', { id });
}

/** The error a call gets (fails the test when it succeeds). */
async function refusal(role: Role, method: MethodName, params: Record<string, unknown>) {
  const c = rig.client(role);
  const err = await c.call(method, params as never).then(
    () => null,
    (e: unknown) => e,
  );
  expect(err, `${role} ${method} should be refused`).not.toBeNull();
  return err as { code: number; wsupCode?: string; message: string; data?: { path?: unknown[] } };
}

describe('who may set and see a policy', () => {
  it('a viewer can neither set a policy, nor report activity, nor update: forbidden, and nothing changed', async () => {
    const before = await running('pol-viewer');
    for (const [method, params] of [
      ['workspace.setPolicy', { id: 'pol-viewer', policy: { idleTimeoutMs: 60_000 } }],
      ['workspace.activity', { id: 'pol-viewer', source: 'viewer' }],
      ['workspace.update', { id: 'pol-viewer' }],
    ] as const) {
      expect(await refusal('viewer', method, params)).toMatchObject({ code: -32003, wsupCode: 'WSUP_FORBIDDEN' });
    }
    const after = await rig.client('admin').call('workspace.get', { id: 'pol-viewer' });
    expect(after.policy).toEqual(before.policy);
    expect(after.lastActivityAt).toBe(before.lastActivityAt);
    expect(after.cycle).toBe(before.cycle);
    expect(after.spec.wsupPolicy).toBeUndefined();
  });

  it('a viewer sees the policy an operator set, and its next action', async () => {
    await running('pol-seen');
    const set = await rig.client('operator').call('workspace.setPolicy', { id: 'pol-seen', policy: { idleTimeoutMs: IDLE } });
    expect(set.policy.idleTimeoutMs).toBe(IDLE);
    const seen = await rig.client('viewer').call('workspace.get', { id: 'pol-seen' });
    expect(seen.policy).toEqual(set.policy);
    expect(seen.spec.wsupPolicy).toEqual({ idleTimeoutMs: IDLE });
    expect(seen.next).toMatchObject({ action: 'stop', source: 'idle' });
  });

  it('an operator cannot pass a raw spec to workspace.create, even with a policy: refused, nothing created', async () => {
    const err = await refusal('operator', 'workspace.create', { id: 'pol-raw', spec: { cmd: ['sh'] }, policy: { idleTimeoutMs: IDLE } });
    expect(err).toMatchObject({ wsupCode: 'WSUP_POLICY' });
    expect(err.message).toMatch(/spec/);
    expect(await rig.supervisor.has('pol-raw')).toBe(false);
  });

  it('workspace.create {policy} stores it as the workspace\'s own layer, with the creator as owner', async () => {
    const v = await rig.client('operator').call('workspace.create', { id: 'pol-created', policy: { maxLifetimeMs: 8 * 3_600_000, maxLifetimeWarnMs: 15 * 60_000 } });
    expect(v.policy).toMatchObject({ maxLifetimeMs: 8 * 3_600_000, maxLifetimeWarnMs: 15 * 60_000, idleTimeoutMs: null });
    expect(v.spec).toMatchObject({ wsupPolicy: { maxLifetimeMs: 8 * 3_600_000 }, wsupOwner: expect.stringMatching(/^operator:/) as string });
  });

  it('a create whose policy is refused leaves no workspace behind', async () => {
    const err = await refusal('operator', 'workspace.create', { id: 'pol-bad-create', policy: { autostart: { cron: 'every morning', tz: 'UTC' } } });
    expect(err.code).toBe(-32602);
    expect(err.message).toMatch(/autostart/);
    expect(await rig.supervisor.has('pol-bad-create')).toBe(false);
  });
});

describe('workspace.update', () => {
  it('an operator\'s update is a restart with source update, requested by the caller', async () => {
    const before = await running('pol-update');
    const r = await rig.client('operator').call('workspace.update', { id: 'pol-update' });
    expect(r).toMatchObject({ id: 'pol-update', outcome: 'started', cycle: before.cycle + 1 });
    const { events } = await rig.client('viewer').call('events.history', { id: 'pol-update' });
    const started = events.filter((e) => e.type === 'cycle.started').at(-1);
    expect(started).toMatchObject({ cycle: { n: before.cycle + 1, source: 'update' } });
    expect(started?.type === 'cycle.started' && started.cycle.requesters[0]?.requester).toMatch(/^rpc:operator:/);
  });
});

describe('bad input', () => {
  const setPolicy = (policy: Record<string, unknown>) => refusal('admin', 'workspace.setPolicy', { id: 'pol-input', policy });

  it('names the field of a bad cron, a bad time zone, a bad duration or an unknown field (-32602); the server stays up', async () => {
    const before = await running('pol-input');
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [{ autostart: { cron: 'at nine', tz: 'UTC' } }, /autostart/],
      [{ autostop: { cron: '0 19 * * 1-5', tz: 'Mars/Olympus_Mons' } }, /autostop/],
      [{ idleTimeoutMs: 0 }, /idleTimeoutMs/],
      [{ maxLifetimeMs: -60_000 }, /maxLifetimeMs/],
      [{ dormantAfterMs: 400 * 86_400_000 }, /dormantAfterMs/],
      [{ idleTimeoutMs: 1.5 }, /idleTimeoutMs/],
      [{ idle: '30m' }, /idle/],
      [{ autoUpdate: 'always' }, /autoUpdate/],
    ];
    for (const [policy, field] of cases) {
      const err = await setPolicy(policy);
      expect(err.code, JSON.stringify(policy)).toBe(-32602);
      expect(err.message, JSON.stringify(policy)).toMatch(field);
    }
    const zero = await setPolicy({ idleTimeoutMs: 0 });
    expect(zero.data?.path).toEqual(['policy', 'idleTimeoutMs']);
    const after = await rig.client('admin').call('workspace.get', { id: 'pol-input' });
    expect(after.policy).toEqual(before.policy);
    expect(rig.server.lifecycle).toBe('ready');
  });

  it('an unknown workspace is not found, for setPolicy and activity alike', async () => {
    expect(await refusal('operator', 'workspace.setPolicy', { id: 'pol-nope', policy: {} })).toMatchObject({ wsupCode: 'WSUP_NOT_FOUND' });
    expect(await refusal('operator', 'workspace.activity', { id: 'pol-nope' })).toMatchObject({ wsupCode: 'WSUP_NOT_FOUND' });
  });
});

describe('activity', () => {
  it('answers the new idle deadline and names its source in the idle stop\'s reason', async () => {
    await running('pol-act');
    await rig.client('admin').call('workspace.setPolicy', { id: 'pol-act', policy: { idleTimeoutMs: IDLE } });
    const t = Date.now();
    const r = await rig.client('operator').call('workspace.activity', { id: 'pol-act', source: 'ide keystroke' });
    expect(r.id).toBe('pol-act');
    expect(r.idleDeadline).toBeGreaterThanOrEqual(t + IDLE);
    const v = await rig.client('viewer').call('workspace.get', { id: 'pol-act' });
    expect(v.lastActivityAt).toBeGreaterThanOrEqual(t);
    expect(v.next).toMatchObject({ action: 'stop', source: 'idle', at: r.idleDeadline });
    expect(v.next?.reason).toContain('ide keystroke');
  });

  it('without a source, names the caller; without an idle rule, answers no deadline', async () => {
    await running('pol-act-default');
    const r = await rig.client('operator').call('workspace.activity', { id: 'pol-act-default' });
    expect(r.idleDeadline).toBeNull();
    await rig.client('admin').call('workspace.setPolicy', { id: 'pol-act-default', policy: { idleTimeoutMs: IDLE } });
    await rig.client('operator').call('workspace.activity', { id: 'pol-act-default' });
    const v = await rig.client('viewer').call('workspace.get', { id: 'pol-act-default' });
    expect(v.next?.reason).toMatch(/since rpc:operator:\w+ at /);
  });

  it('files.written handed to the bus counts as activity, with source files.written', async () => {
    await running('pol-files');
    await rig.client('admin').call('workspace.setPolicy', { id: 'pol-files', policy: { idleTimeoutMs: IDLE } });
    const t = Date.now();
    await rig.client('operator').call('files.written', { id: 'pol-files', paths: ['src/a.ts'] });
    expect(handedOver).toContainEqual({ id: 'pol-files', paths: ['src/a.ts'] });
    const v = await rig.client('viewer').call('workspace.get', { id: 'pol-files' });
    expect(v.lastActivityAt).toBeGreaterThanOrEqual(t);
    expect(v.next?.reason).toContain('since files.written at');
  });

  it('a flood of 10,000 activity calls costs bounded memory and sends subscribers nothing', async () => {
    await running('pol-flood');
    await rig.client('admin').call('workspace.setPolicy', { id: 'pol-flood', policy: { idleTimeoutMs: IDLE } });
    const watcher = rig.client('viewer');
    const seen: string[] = [];
    await watcher.subscribe({ ids: ['pol-flood'] }, (ev) => seen.push(ev.type));
    const spy = vi.spyOn(rig.supervisor, 'activity');
    const published: string[] = [];
    const tap = rig.supervisor.events.subscribe((ev) => published.push(ev.type));
    const raw = await rig.raw('operator');
    const N = 10_000;
    const batch = async (from: number) => {
      for (let i = 0; i < 1_000; i++) raw.send(JSON.stringify({ jsonrpc: '2.0', id: from + i, method: 'workspace.activity', params: { id: 'pol-flood', source: 'flood' } }));
      await vi.waitFor(() => expect(raw.frames.length).toBeGreaterThanOrEqual(from + 1_000), { timeout: 60_000 });
    };
    await batch(0); // warm up: JIT, buffers
    const base = heapAfterGc();
    for (let from = 1_000; from < N; from += 1_000) await batch(from);
    const grown = heapAfterGc() - base;
    const calls = spy.mock.calls.length;
    spy.mockRestore();
    tap.unsubscribe();
    const replies = raw.frames as Array<{ result?: { idleDeadline: number | null }; error?: unknown }>;
    expect(replies).toHaveLength(N);
    expect(replies.filter((f) => f.error !== undefined)).toEqual([]);
    expect(calls).toBe(N);
    // Each call may leave nothing behind: 9,000 calls retaining even 2 KB each would be 18 MB.
    expect(grown).toBeLessThan(16 * 1024 * 1024);
    // Activity is no event: nothing is published (so nothing goes to history) and subscribers get no frame.
    expect(published).toEqual([]);
    expect(seen).toEqual([]);
  }, 120_000);
});

describe('through a JSON-RPC client we did not write', () => {
  it('json-rpc-2.0 sets a policy and reports activity', async () => {
    await running('pol-3p');
    const ws = new WebSocket(rig.wsUrl, { headers: { authorization: `Bearer ${TOKENS.operator}` } });
    const client = new JSONRPCClient((request) => {
      ws.send(JSON.stringify(request));
    });
    ws.on('message', (data: Buffer) => client.receive(JSON.parse(data.toString()) as Parameters<typeof client.receive>[0]));
    await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
    try {
      const view = (await client.request('workspace.setPolicy', { id: 'pol-3p', policy: { idleTimeoutMs: IDLE, autostop: { cron: '0 19 * * 1-5', tz: 'Europe/Berlin' } } })) as WorkspaceView;
      expect(view.policy).toMatchObject({ idleTimeoutMs: IDLE, autostop: { cron: '0 19 * * 1-5', tz: 'Europe/Berlin' } });
      const act = (await client.request('workspace.activity', { id: 'pol-3p', source: 'third party' })) as { id: string; idleDeadline: number };
      expect(act).toMatchObject({ id: 'pol-3p', idleDeadline: expect.any(Number) as number });
      await expect(client.request('workspace.setPolicy', { id: 'pol-3p', policy: { idleTimeoutMs: 'soon' } })).rejects.toMatchObject({ code: -32602 });
    } finally {
      ws.close();
    }
  });
});

/** Heap in use after a full collection (gc exposed for this measurement only). */
function heapAfterGc(): number {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  gc();
  gc();
  return process.memoryUsage().heapUsed;
}
