/**
 * The supervisor under test in the crash test: a real process that the test SIGKILLs at random points.
 *
 * Environment:
 * - `WSUP_CRASH_PGLITE_DIR` (PGlite data dir) or `WSUP_CRASH_PG_URL` + `WSUP_CRASH_PG_SCHEMA` (PostgreSQL)
 * - `WSUP_CRASH_PROC_DIR`: the local-process provider's data dir (agent logs)
 * - `WSUP_CRASH_WINDOW_MS`: the self-fire window, short so deferred deadlines fire within the test
 *
 * Protocol: prints `READY <recovery report json>` once the store is open and recovery is done, then reads
 * newline-delimited JSON commands on stdin, `{seq, op, id, source?}`, and answers each with one line
 * `{seq, ok, result | error}` only after the supervisor resolved it (ack ⇒ committed is the supervisor's
 * promise; this process adds nothing in between). Commands run concurrently, in arrival order per actor.
 * `row`, `events` and `records` read the store, for the test's final checks: a PGlite data dir can be
 * opened by one process at a time, so the test asks the supervisor that holds it.
 *
 * Process records go to the store (`store.processes`) through a small adapter, not to JSON files: on PostgreSQL that is the only copy a second machine
 * could see. Agents are detached and outlive this process, which is the point of the test.
 */
import { createInterface } from 'node:readline';
import { WsupError } from '../../src/errors.ts';
import { createProcessProvider, type ProcessRecord, type ProcessRecords } from '../../src/providers/process.ts';
import { WorkspaceStore, type ProcessRecordStore } from '../../src/store/index.ts';
import { openDurableSupervisor } from '../../src/supervisor/durable.ts';
import type { RestartSource } from '../../src/supervisor/types.ts';
import type { ChildCommand, ChildReply } from './protocol.ts';

/** `ProcessRecords` on the store's `process_records` table (one jsonb row per workspace). */
export function storeProcessRecords(table: ProcessRecordStore): ProcessRecords {
  return {
    get: async (id) => (await table.get(id)) as ProcessRecord | null,
    put: (id, rec) => table.put(id, { ...rec }),
    delete: (id) => table.delete(id),
    all: async () => (await table.list()).map((r) => r.data as ProcessRecord),
  };
}

function env(name: string): string | undefined {
  const v = process.env[name];
  return v === undefined || v === '' ? undefined : v;
}

function fail(message: string): never {
  process.stderr.write(`crash child: ${message}\n`);
  process.exit(2);
}

const pgUrl = env('WSUP_CRASH_PG_URL');
const pgliteDir = env('WSUP_CRASH_PGLITE_DIR');
const procDir = env('WSUP_CRASH_PROC_DIR') ?? fail('WSUP_CRASH_PROC_DIR is required');
const windowMs = Number(env('WSUP_CRASH_WINDOW_MS') ?? '1500');
if (pgUrl === undefined && pgliteDir === undefined) fail('set WSUP_CRASH_PGLITE_DIR or WSUP_CRASH_PG_URL');

const store = await WorkspaceStore.open(
  pgUrl !== undefined ? { url: pgUrl, ...(env('WSUP_CRASH_PG_SCHEMA') ? { schema: env('WSUP_CRASH_PG_SCHEMA') } : {}) } : { dataDir: pgliteDir! },
);
const provider = createProcessProvider({ dataDir: procDir, records: storeProcessRecords(store.processes), stopGraceMs: 2_000 });
const { supervisor, recovery } = await openDurableSupervisor({
  store,
  provider,
  config: { selfFireWindowMs: windowMs },
  orphans: 'remove',
  onError: (err, ctx) => process.stderr.write(`crash child: ${ctx.what}${ctx.id ? ` (${ctx.id})` : ''}: ${err instanceof Error ? err.message : String(err)}\n`),
});

const write = (line: string) => process.stdout.write(`${line}\n`);
write(`READY ${JSON.stringify(recovery)}`);

function toError(err: unknown): { code: string; message: string } {
  if (err instanceof WsupError) return { code: err.code, message: err.message };
  if (err instanceof Error) return { code: (err as { code?: string }).code ?? 'ERROR', message: err.message };
  return { code: 'ERROR', message: String(err) };
}

async function run(cmd: ChildCommand): Promise<unknown> {
  const requester = `c${cmd.seq}`;
  switch (cmd.op) {
    case 'create':
      return supervisor.create(cmd.id, cmd.spec ?? {});
    case 'setPolicy':
      return supervisor.setPolicy(cmd.id, cmd.policy ?? {});
    case 'ensure':
      return supervisor.ensure(cmd.id, { requester });
    case 'restart':
      return supervisor.restart(cmd.id, { source: (cmd.source ?? 'manual') as RestartSource, reason: `crash test #${cmd.seq}`, requester });
    case 'stop':
      return supervisor.stop(cmd.id, { requester });
    case 'destroy':
      return supervisor.destroy(cmd.id, { requester });
    case 'get':
      return supervisor.get(cmd.id);
    case 'list':
      return supervisor.list();
    case 'row':
      return store.getWorkspace(cmd.id);
    case 'events':
      return store.events(cmd.id, { limit: 10_000 });
    case 'records':
      return store.processes.list();
  }
}

const lines = createInterface({ input: process.stdin });
lines.on('line', (line) => {
  if (line.trim() === '') return;
  let cmd: ChildCommand;
  try {
    cmd = JSON.parse(line) as ChildCommand;
  } catch {
    process.stderr.write(`crash child: unreadable command ${JSON.stringify(line)}\n`);
    return;
  }
  const answer = (reply: ChildReply) => write(JSON.stringify(reply));
  Promise.resolve()
    .then(() => run(cmd))
    .then(
      (result) => answer({ seq: cmd.seq, ok: true, result }),
      (err: unknown) => answer({ seq: cmd.seq, ok: false, error: toError(err) }),
    );
});
// The test went away: leave as a crash would (no shutdown), agents keep running for the next owner.
lines.on('close', () => process.exit(0));
