/**
 * Allocation per answered request through the real Supervisor (FakeProvider, system clock, no store): bytes the
 * V8 heap allocated (`v8.getHeapStatistics().total_allocated_bytes`, which counts every allocation, collected or
 * not) over many requests, divided by their number. Three kinds, each answered by the workspace's actor:
 *  - join: RESTART while a restart's stop half runs (its provider start has not begun): it joins that cycle;
 *  - queue: RESTART while a cycle's provider start runs: it sets the pending flag (queued);
 *  - ensure: ENSURE of a running workspace, answered at once with its endpoint.
 * Requests go round robin over the workspaces of a round, each awaited before the next is sent, so every
 * request finds its workspace as the kind describes and the clock has moved since its workspace's last one.
 * Each kind is measured on workspaces of its own, after a warm-up round of the same kind on others (the JIT's
 * first compilations are not counted); the best of three rounds is reported. Restarts are answered without
 * `wait` (the outcome is the answer); an ensure is answered when the workspace runs, here at once.
 *
 * Beside them: the hand-written coalesce flag of the restart storm (a request during a cycle sets the flag and
 * shares the cycle's promise); two floors of the statechart, measured on bare actors of the workspace machine
 * with no supervisor: an event no transition takes, and an ENSURE of a running workspace that changes nothing
 * and is answered with one emitted event (the least any answered request through the actor allocates); and the
 * measuring loop itself, awaiting a request that does nothing.
 *
 * Run: `npm run bench -- requests`; `WSUP_BENCH_REQUESTS=1000` for a quick look.
 */
import { getHeapStatistics } from 'node:v8';
import { createActor, fromPromise, waitFor, type Actor } from 'xstate';
import { workspaceMachine } from '../../machines/workspace.machine.ts';
import { FakeProvider } from '../../src/providers/fake.ts';
import { Supervisor } from '../../src/supervisor/supervisor.ts';

export interface RequestsRow {
  kind: string;
  answer: string;
  requests: number;
  bytesPerRequest: number;
  target: string;
  met: string;
}

/** Workspaces per round, and requests sent to each. */
const WORKSPACES = Number(process.env.WSUP_BENCH_REQUESTS ?? 5_000);
const PER_WORKSPACE = 10;
const ROUNDS = 3;
const TARGET_BYTES = 2_048;
/** A provider call that outlasts the round: the workspace stays in `stopping` or `starting` while it is measured. */
const HELD_MS = 3_600_000;

const gc = (): void => (globalThis as { gc?: () => void }).gc?.();
/** Every byte the heap has allocated since the process began (Node's types may not name the field yet). */
const allocated = (): number => (getHeapStatistics() as { total_allocated_bytes?: number }).total_allocated_bytes ?? Number.NaN;

type Kind = 'join' | 'queue' | 'ensure';
const ANSWER: Record<Kind, string> = { join: 'joined', queue: 'queued', ensure: 'running' };

/**
 * Bytes allocated per request over `count` requests, each awaited before the next. `send(i)` returns whether
 * the request got the answer its kind expects; any other answer fails the bench.
 */
async function measure(count: number, send: (i: number) => Promise<boolean> | boolean, what: string): Promise<number> {
  let wrong = 0;
  gc();
  const before = allocated();
  for (let i = 0; i < count; i++) if (!(await send(i))) wrong++;
  const bytes = (allocated() - before) / count;
  if (wrong > 0) throw new Error(`requests bench: ${wrong} of ${count} ${what} requests got another answer than expected`);
  return bytes;
}

/** One round of one kind on fresh workspaces: set them up, then measure PER_WORKSPACE requests on each. */
async function round(kind: Kind, tag: string): Promise<number> {
  const provider = new FakeProvider({ latencyMs: 0 });
  const sup = new Supervisor({ provider });
  const ids = Array.from({ length: WORKSPACES }, (_, i) => `${kind}-${tag}-${i}`);
  if (kind !== 'queue') await Promise.all(ids.map((id) => sup.ensure(id)));
  provider.latencyMs = HELD_MS;
  // join: the restart's stop half is in flight; queue: a cycle's provider start is in flight (from idle).
  if (kind !== 'ensure') for (const id of ids) await sup.restart(id, { reason: 'bench' });
  const opts = { reason: 'bench' };
  const answer = ANSWER[kind];
  const send =
    kind === 'ensure'
      ? async (i: number) => !(await sup.ensure(ids[i % ids.length]!)).started
      : async (i: number) => (await sup.restart(ids[i % ids.length]!, opts)).outcome === answer;
  const bytes = await measure(ids.length * PER_WORKSPACE, send, kind);
  await sup.shutdown({ deadlineMs: 0 });
  return bytes;
}

/** The storm's coalesce flag: a request during a cycle sets the flag and shares the cycle's promise. */
async function coalesceRound(): Promise<number> {
  const state = new Map<string, { running: Promise<void>; pending: boolean }>();
  const cycle = new Promise<void>((resolve) => setTimeout(resolve, 0));
  const ids = Array.from({ length: WORKSPACES }, (_, i) => `c-${i}`);
  for (const id of ids) state.set(id, { running: cycle, pending: false });
  const request = (id: string): Promise<void> => {
    const s = state.get(id)!;
    s.pending = true;
    return s.running;
  };
  // The cycle's promise is awaited once the loop is done: each request only gets it.
  const bytes = await measure(ids.length * PER_WORKSPACE, (i) => request(ids[i % ids.length]!) === cycle, 'coalesce');
  await cycle;
  return bytes;
}

/** Bare actors of the machine, running (provider calls answered at once), with a listener like the supervisor's. */
async function bareRunning(): Promise<Array<Actor<typeof workspaceMachine>>> {
  const machine = workspaceMachine.provide({
    actors: {
      provision: fromPromise(async () => ({ endpoint: 'bare://', at: 0 })),
      deprovision: fromPromise(async () => ({ at: 0 })),
    },
  });
  const actors = Array.from({ length: WORKSPACES }, (_, i) => createActor(machine, { input: { id: `f-${i}`, now: 0 } }).start());
  for (const a of actors) {
    a.on('*', () => undefined);
    a.send({ type: 'ENSURE', requester: 'setup', at: 0 });
  }
  await Promise.all(actors.map((a) => waitFor(a, (s) => s.value === 'running')));
  return actors;
}

/** Floor: one event that no transition takes. */
async function idleEventRound(): Promise<number> {
  const actors = await bareRunning();
  const event = { type: 'DEFERRED_DUE' } as const;
  const bytes = await measure(actors.length * PER_WORKSPACE, (i) => (actors[i % actors.length]!.send(event), true), 'bare');
  for (const a of actors) a.stop();
  return bytes;
}

/** Floor: an ENSURE of a running workspace with nothing new in it (no activity, no later time): one emitted answer. */
async function answeredEventRound(): Promise<number> {
  const actors = await bareRunning();
  const event = { type: 'ENSURE', requester: 'floor', at: 0 } as const;
  const bytes = await measure(actors.length * PER_WORKSPACE, (i) => (actors[i % actors.length]!.send(event), true), 'bare');
  for (const a of actors) a.stop();
  return bytes;
}

/** The measuring loop alone: a request that does nothing, awaited. */
async function loopRound(): Promise<number> {
  const nothing = async (): Promise<boolean> => true;
  return measure(WORKSPACES * PER_WORKSPACE, nothing, 'loop');
}

async function best(run: (tag: string) => Promise<number>): Promise<number> {
  await run('warm');
  let min = Infinity;
  for (let r = 0; r < ROUNDS; r++) min = Math.min(min, await run(String(r)));
  return Math.round(min);
}

export async function benchRequests(): Promise<RequestsRow[]> {
  const n = WORKSPACES * PER_WORKSPACE;
  const rows: RequestsRow[] = [];
  for (const kind of ['join', 'queue', 'ensure'] as const) {
    const bytes = await best((tag) => round(kind, tag));
    rows.push({ kind, answer: ANSWER[kind], requests: n, bytesPerRequest: bytes, target: `≤ ${TARGET_BYTES} B`, met: bytes <= TARGET_BYTES ? 'yes' : 'NO' });
  }
  const beside = (kind: string, answer: string, bytes: number): RequestsRow => ({ kind, answer, requests: n, bytesPerRequest: bytes, target: '', met: '' });
  rows.push(beside('baseline: coalesce flag', 'the cycle in flight', await best(coalesceRound)));
  rows.push(beside('floor: bare actor, no transition', 'none', await best(idleEventRound)));
  rows.push(beside('floor: bare actor, ENSURE running', 'settled (one emit)', await best(answeredEventRound)));
  rows.push(beside('the measuring loop alone', '', await best(loopRound)));
  return rows;
}
