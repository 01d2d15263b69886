/**
 * Client commands of `wsup`: each opens one connection, makes its call(s), prints, and returns an exit code.
 */
import type { WorkspaceEvent } from '../client/index.ts';
import { RESTART_SOURCES, type RestartSource, type Result } from '../protocol/index.ts';
import { connect, UsageError, type ClientFlags, type CommandClient } from './context.ts';
import { emit, fail, table } from './output.ts';
import { checkPolicyFlags, clockTime, describeIdleDeadline, describeNext, describePolicy, ownLayer, policyPatch, type PolicyFlags } from './policy.ts';

type Run = (client: CommandClient, flags: ClientFlags) => Promise<void>;

/** Connect, run, close; map every failure to an exit code. */
export async function withClient(flags: ClientFlags, run: Run): Promise<number> {
  let client: CommandClient | null = null;
  try {
    client = connect(flags);
    await run(client, flags);
    return 0;
  } catch (err) {
    return fail(flags.json, err);
  } finally {
    client?.close();
  }
}

export const ensure = (id: string, f: ClientFlags) =>
  withClient(f, async (c) => {
    const r = await c.call('workspace.ensure', { id });
    emit(f.json, r, () => `${r.id} ${r.state} ${r.endpoint}${r.started ? ' (started by this call)' : ''}`);
  });

export const restart = (id: string, f: ClientFlags & { source?: string; reason?: string; wait?: boolean }) =>
  withClient(f, async (c) => {
    if (f.source !== undefined && !RESTART_SOURCES.includes(f.source as RestartSource)) {
      throw new UsageError(`--source must be one of ${RESTART_SOURCES.join(', ')}`);
    }
    // Live progress only for a person at a terminal; --json and pipes get the single result.
    const live = f.wait && !f.json && process.stdout.isTTY;
    const sub = live ? await c.subscribe({ ids: [id] }, (ev) => process.stdout.write(`  ${describe(ev)}\n`)) : null;
    const r = await c.call('workspace.restart', {
      id,
      ...(f.source ? { source: f.source as RestartSource } : {}),
      ...(f.reason ? { reason: f.reason } : {}),
      ...(f.wait ? { wait: true } : {}),
    });
    await sub?.unsubscribe();
    emit(f.json, r, () => `${r.id} ${r.outcome} (cycle ${r.cycle ?? 'pending'}) now ${r.state}`);
  });

const viewCommand = (method: 'workspace.stop' | 'workspace.destroy') => (id: string, f: ClientFlags) =>
  withClient(f, async (c) => {
    const r = await c.call(method, { id });
    emit(f.json, r, () => `${r.id} ${r.state}`);
  });
export const stop = viewCommand('workspace.stop');
export const destroy = viewCommand('workspace.destroy');

const COLS = ['id', 'state', 'desired', 'cycle', 'endpoint'];

export const status = (id: string | undefined, f: ClientFlags) =>
  withClient(f, async (c) => {
    if (id === undefined) {
      const r = await listPages(c, {}, undefined);
      const quota = await c.call('quota.usage', {}).catch(() => null);
      emit(f.json, { ...r, ...(quota ? { quota } : {}) }, () => [table(r.items as unknown as Array<Record<string, unknown>>, COLS), ...quotaLines(quota)].join('\n'));
      return;
    }
    const r = await c.call('workspace.get', { id });
    const now = Date.now();
    emit(f.json, r, () =>
      [
        `${r.id}: ${r.state} (desired ${r.desired}), cycle ${r.cycle}${r.dormant ? ', dormant' : ''}`,
        `endpoint: ${r.endpoint ?? '-'}`,
        r.lastError ? `last error: ${r.lastError.message}` : '',
        r.lastActivityAt !== null ? `last activity: ${clockTime(r.lastActivityAt, now)}` : '',
        describeNext(r.next, now),
      ]
        .filter(Boolean)
        .join('\n'),
    );
  });

/**
 * Show a workspace's effective policy, or change its own layer: each flag sets one rule (`off` turns it
 * off), `--clear` turns every rule off. Rules no flag names keep what the workspace had.
 */
export const policy = (id: string, f: ClientFlags & PolicyFlags) =>
  withClient(f, async (c) => {
    checkPolicyFlags(f);
    const before = await c.call('workspace.get', { id });
    const patch = policyPatch(f, ownLayer(before.spec));
    const r = patch === null ? before : await c.call('workspace.setPolicy', { id, policy: patch });
    emit(f.json, r, () => [`${r.id} policy:`, ...describePolicy(r.policy).map((l) => `  ${l}`), `next: ${describeNext(r.next, Date.now())}`].join('\n'));
  });

/** Report activity on a workspace (pushes its idle deadline out); prints the new deadline. */
export const touch = (id: string, f: ClientFlags & { source?: string }) =>
  withClient(f, async (c) => {
    const r = await c.call('workspace.activity', { id, ...(f.source !== undefined ? { source: f.source } : {}) });
    emit(f.json, r, () => `${r.id}: ${describeIdleDeadline(r.idleDeadline, Date.now())}`);
  });

export const list = (f: ClientFlags & { state?: string; limit?: string }) =>
  withClient(f, async (c) => {
    const limit = f.limit === undefined ? undefined : Number(f.limit);
    if (limit !== undefined && !Number.isInteger(limit)) throw new UsageError('--limit must be an integer');
    const r = await listPages(c, f.state ? { state: f.state as 'running' } : {}, limit);
    emit(f.json, r, () => table(r.items as unknown as Array<Record<string, unknown>>, COLS));
  });

/**
 * Workspaces page by page, following `nextCursor` (the server cuts a page short when it would not fit one
 * frame): all of them, or the first `limit`. `nextCursor` is set when `limit` stopped the listing early.
 */
async function listPages(c: CommandClient, filter: { state?: 'running' }, limit: number | undefined): Promise<Result<'workspace.list'>> {
  const items: Result<'workspace.list'>['items'] = [];
  let cursor: string | null = null;
  do {
    const want = limit === undefined ? undefined : Math.min(10_000, limit - items.length);
    const page: Result<'workspace.list'> = await c.call('workspace.list', { ...filter, ...(want !== undefined ? { limit: want } : {}), ...(cursor !== null ? { cursor } : {}) });
    items.push(...page.items);
    cursor = page.nextCursor;
  } while (cursor !== null && (limit === undefined || items.length < limit));
  return { items, nextCursor: cursor };
}

export const filesWritten = (id: string, paths: string[], f: ClientFlags) =>
  withClient(f, async (c) => {
    const r = await c.call('files.written', { id, paths });
    emit(f.json, r, () => `${r.id}: ${r.accepted} path(s) accepted`);
  });

/** A JSON object flag (`--spec`, `--params`), or a usage error naming the flag. */
/** A flag's JSON object (`--spec '{…}'`), or a usage error saying what is wrong with it. */
export function jsonObject(flag: string, text: string | undefined): Record<string, unknown> | undefined {
  if (text === undefined) return undefined;
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (err) {
    throw new UsageError(`${flag} is not JSON: ${(err as Error).message}`);
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new UsageError(`${flag} must be a JSON object`);
  return v as Record<string, unknown>;
}

/**
 * Create a workspace from a template (`--template T --params JSON`; default: the server's `default`
 * template) or, admins only, from a raw `--spec`; `--prebuild [--pool P]` makes it a claimable prebuild.
 */
export const create = (id: string, f: ClientFlags & { spec?: string; template?: string; params?: string; prebuild?: boolean; pool?: string }) =>
  withClient(f, async (c) => {
    const spec = jsonObject('--spec', f.spec);
    const params = jsonObject('--params', f.params);
    if (f.pool !== undefined && !f.prebuild) throw new UsageError('--pool needs --prebuild');
    const r = await c.call('workspace.create', {
      id,
      ...(spec ? { spec } : {}),
      ...(f.template !== undefined ? { template: f.template } : {}),
      ...(params ? { params } : {}),
      ...(f.prebuild ? { prebuild: true as const } : {}),
      ...(f.pool !== undefined ? { pool: f.pool } : {}),
    });
    emit(f.json, r, () => `${r.id} ${r.state}${f.prebuild ? ` (prebuild${f.pool ? ` in pool ${f.pool}` : ''})` : ''}`);
  });

/** Claim a prebuild (by id, or the oldest unclaimed one of `--pool`) for `--user`. */
export const claim = (id: string | undefined, f: ClientFlags & { pool?: string; user?: string }) =>
  withClient(f, async (c) => {
    if ((id === undefined) === (f.pool === undefined)) throw new UsageError('pass a prebuild id or --pool <pool>, not both');
    if (!f.user) throw new UsageError('--user <user> is required: the owner the agent reinitializes as');
    const r = await c.call('workspace.claim', { ...(id !== undefined ? { id } : { pool: f.pool }), userId: f.user });
    emit(f.json, r, () => `${r.id} claimed by ${r.ownerId} (claim build ${r.claimBuildId})`);
  });

/** Stream events until interrupted. With --json: one JSON document per line (NDJSON). */
export const watch = (id: string | undefined, f: ClientFlags) =>
  withClient(f, async (c) => {
    await c.subscribe(id ? { ids: [id] } : {}, (ev) => {
      process.stdout.write(f.json ? `${JSON.stringify(ev)}\n` : `${new Date(ev.at).toISOString()} ${describe(ev)}\n`);
    }, { onResync: (info) => process.stderr.write(`wsup: resync (${info.reason}${info.dropped ? `, ${info.dropped} events dropped` : ''})\n`) });
    if (!f.json) process.stderr.write(`watching ${id ?? 'all workspaces'} (Ctrl-C to stop)\n`);
    await new Promise<void>((resolve) => {
      process.once('SIGINT', resolve);
      process.once('SIGTERM', resolve);
    });
  });

/** One line: the transition and its why. */
export function describe(ev: WorkspaceEvent): string {
  switch (ev.type) {
    case 'transition':
      return `${ev.id} ${ev.from ?? '∅'} → ${ev.to}${ev.cycle ? ` (cycle ${ev.cycle.n}, ${ev.cycle.source}: ${ev.cycle.reason || '-'})` : ''}`;
    case 'request':
      return `${ev.id} request ${ev.requester} → ${ev.outcome}${ev.cycle !== null ? ` (cycle ${ev.cycle})` : ''}`;
    case 'cycle.started':
      return `${ev.id} cycle ${ev.cycle.n} started: ${ev.cycle.source} "${ev.cycle.reason}" for ${ev.cycle.requesters.map((r) => r.requester).join(', ') || '-'}`;
    case 'cycle.provisioning':
      return `${ev.id} cycle ${ev.cycle} provisioning`;
    case 'cycle.completed':
      return `${ev.id} cycle ${ev.cycle.n} completed in ${ev.durations.totalMs} ms → ${ev.endpoint}`;
    case 'cycle.failed':
      return `${ev.id} cycle ${ev.cycle.n} failed: ${ev.error.message}`;
    case 'policy':
      return `${ev.id} policy ${ev.action} (${ev.source}): ${ev.reason}`;
    case 'policy.warning':
      return `${ev.id} warning (${ev.source}): stops at ${new Date(ev.stopAt).toISOString()}: ${ev.reason}`;
  }
}

/** One line per quota that is limited or in use: `quota owner alice: 2 of 3 running`. */
export function quotaLines(q: Result<'quota.usage'> | null): string[] {
  if (q === null) return [];
  const line = (kind: string) => (c: { name: string; running: number; limit: number | null }) => `quota ${kind} ${c.name}: ${c.running}${c.limit === null ? '' : ` of ${c.limit}`} running`;
  return [...q.perOwner.map(line('owner')), ...q.perTemplate.map(line('template'))];
}
