/**
 * kill -9 with armed policy deadlines: a real supervisor process (PGlite, the local-process provider, the
 * system clock) runs workspaces with an idle timeout, a max lifetime and a scheduled stop, and is SIGKILLed.
 * A new process on the same data brings each deadline back from the store: one still ahead fires at its
 * time (not before it); one that passed while nobody ran fires once, at once. Durations are seconds, so
 * this runs in real time; waits are `vi.waitFor` with generous timeouts, never fixed sleeps.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import type { EventRecord } from '../../src/store/types.ts';
import type { SupervisorEvent, WorkspaceView } from '../../src/supervisor/types.ts';
import { agentProcesses, killAgents, SupervisorChild } from './harness.ts';
import type { ChildCommand } from './protocol.ts';

const RUN = `${process.pid.toString(36)}${Math.random().toString(36).slice(2, 6)}`;
const PREFIX = `cp${RUN}`;
const root = mkdtempSync(join(tmpdir(), 'wsup-policy-crash-'));
afterAll(() => {
  killAgents(PREFIX);
  rmSync(root, { recursive: true, force: true });
}, 60_000);

const env = {
  WSUP_CRASH_PGLITE_DIR: join(root, 'db'),
  WSUP_CRASH_PROC_DIR: join(root, 'proc'),
};

let seq = 0;
const ask = <T,>(child: SupervisorChild, cmd: Omit<ChildCommand, 'seq'>): Promise<T> => child.ask<T>({ seq: ++seq, ...cmd });

/** A cron (with seconds) that matches the instant `t`, in UTC: a scheduled stop at a known time. */
function cronAt(t: number): string {
  const d = new Date(t);
  return `${d.getUTCSeconds()} ${d.getUTCMinutes()} ${d.getUTCHours()} ${d.getUTCDate()} ${d.getUTCMonth() + 1} *`;
}

async function boot(): Promise<SupervisorChild> {
  const child = new SupervisorChild(env);
  await child.ready;
  return child;
}

/** Create and start three workspaces, one rule each, whose deadlines fall `leadMs` from now (to the second). */
async function arm(child: SupervisorChild, tag: string, leadMs: number): Promise<Record<string, number>> {
  const stopAt = Math.ceil((Date.now() + leadMs) / 1_000) * 1_000;
  const ids = { idle: `${PREFIX}-${tag}-idle`, life: `${PREFIX}-${tag}-life`, stop: `${PREFIX}-${tag}-stop` };
  await ask(child, { op: 'create', id: ids.idle, spec: { wsupPolicy: { idleTimeoutMs: leadMs } } });
  await ask(child, { op: 'create', id: ids.life, spec: { wsupPolicy: { maxLifetimeMs: leadMs } } });
  await ask(child, { op: 'create', id: ids.stop, spec: { wsupPolicy: { autostop: { cron: cronAt(stopAt), tz: 'UTC' } } } });
  await Promise.all(Object.values(ids).map((id) => ask(child, { op: 'ensure', id })));
  const due: Record<string, number> = {};
  for (const id of Object.values(ids)) {
    const view = await ask<WorkspaceView>(child, { op: 'get', id });
    expect(view.state).toBe('running');
    expect(view.next, id).toMatchObject({ action: 'stop' });
    due[id] = view.next!.at;
  }
  expect(due[ids.stop]).toBe(stopAt);
  return due;
}

/**
 * Wait until every workspace of `ids` is stopped, probing all of them each round; answers, per workspace,
 * when the last probe that still found it running was sent.
 */
async function settled(child: SupervisorChild, ids: string[]): Promise<Record<string, number>> {
  const seen: Record<string, number> = {};
  await vi.waitFor(
    async () => {
      const sent = Date.now();
      const states = await Promise.all(ids.map((id) => ask<WorkspaceView>(child, { op: 'get', id }).then((v) => [id, v.state] as const)));
      for (const [id, state] of states) if (state === 'running') seen[id] = sent;
      expect(Object.fromEntries(states)).toEqual(Object.fromEntries(ids.map((id) => [id, 'idle'])));
    },
    { timeout: 60_000, interval: 100 },
  );
  return seen;
}

async function policyStops(child: SupervisorChild, id: string): Promise<Array<Extract<SupervisorEvent, { type: 'policy' }>>> {
  const rows = await ask<EventRecord[]>(child, { op: 'events', id });
  return rows.map((r) => r.data as SupervisorEvent).flatMap((e) => (e.type === 'policy' && e.action === 'stop' ? [e] : []));
}

describe('kill -9 with armed policy deadlines', () => {
  it('a deadline still ahead fires on time after the restart; one that passed while down fires once, at once', async () => {
    // Life 1 arms short deadlines and dies; they all pass before life 2 starts.
    const first = await boot();
    const passed = await arm(first, 'p', 3_000);
    await first.kill();
    const latest = Math.max(...Object.values(passed));
    await vi.waitFor(() => expect(Date.now()).toBeGreaterThan(latest + 500), { timeout: 30_000, interval: 100 });

    const second = await boot();
    const back = second.readyAt!;
    await settled(second, Object.keys(passed));
    for (const id of Object.keys(passed)) {
      const stops = await policyStops(second, id);
      expect(stops, id).toHaveLength(1);
      expect(stops[0]!.at, id).toBeGreaterThanOrEqual(passed[id]!);
      expect(stops[0]!.at, `${id}: fired by the new life, at its recovery`).toBeGreaterThan(first.killedAt!);
      expect(stops[0]!.at, `${id}: fired at once`).toBeLessThanOrEqual(back + 5_000);
      expect(agentProcesses(id).get(id) ?? [], id).toEqual([]);
    }

    // Life 2 arms deadlines far enough ahead to outlive a kill and a boot, and dies at once.
    const ahead = await arm(second, 'a', 20_000);
    await second.kill();
    const third = await boot();
    for (const id of Object.keys(ahead)) expect((await ask<WorkspaceView>(third, { op: 'get', id })).next?.at, id).toBe(ahead[id]);
    const lastSeenRunning = await settled(third, Object.keys(ahead));
    for (const id of Object.keys(ahead)) {
      // Seen running by a probe sent less than 1.5 s before its deadline: it did not stop early.
      expect(lastSeenRunning[id], `${id} was not seen running close to its deadline`).toBeGreaterThanOrEqual(ahead[id]! - 1_500);
      const stops = await policyStops(third, id);
      expect(stops.map((s) => s.at), id).toEqual([ahead[id]]);
      expect(agentProcesses(id).get(id) ?? [], id).toEqual([]);
    }
    // Nothing fires a second time afterwards, and the passed ones stayed stopped.
    for (const id of [...Object.keys(passed), ...Object.keys(ahead)]) expect(await policyStops(third, id), id).toHaveLength(1);
    await third.kill();
  }, 180_000);
});
