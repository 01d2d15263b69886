/**
 * `wsup pool`: prebuild pools that keep themselves full.
 *
 * @example
 * wsup pool set node --desired 3 --template node --policy '{"idleTimeoutMs":1800000}'
 * wsup pool list
 * wsup pool get node --json
 * wsup pool delete node
 */
import type { Command } from 'commander';
import type { PoolView } from '../protocol/index.ts';
import { jsonObject, withClient } from './commands.ts';
import { UsageError, type ClientFlags } from './context.ts';
import { emit, table } from './output.ts';

type SetFlags = ClientFlags & { desired?: string; template?: string; params?: string; spec?: string; policy?: string };

const COLS = ['pool', 'desired', 'ready', 'starting', 'failing', 'template', 'backoffUntil'];

/** One pool in a few lines. */
function describePool(p: PoolView): string {
  return [
    `${p.pool}: ${p.ready} ready, ${p.starting} starting, ${p.failing} failing of ${p.desired} desired (template ${p.template ?? 'raw spec'})`,
    p.backoffUntil !== null ? `backing off until ${new Date(p.backoffUntil).toISOString()}` : '',
    p.lastError ? `last error at ${new Date(p.lastError.at).toISOString()}: ${p.lastError.message}` : '',
  ]
    .filter(Boolean)
    .join('\n');
}

export const poolSet = (pool: string, f: SetFlags) =>
  withClient(f, async (c) => {
    const desired = Number(f.desired);
    if (f.desired === undefined || !Number.isInteger(desired) || desired < 0) throw new UsageError('--desired <n> is required: a whole number of prebuilds, 0 or more');
    if (f.template !== undefined && f.spec !== undefined) throw new UsageError('pass --template or --spec, not both');
    const spec = jsonObject('--spec', f.spec);
    const params = jsonObject('--params', f.params);
    const policy = jsonObject('--policy', f.policy);
    const r = await c.call('pool.set', {
      pool,
      desired,
      ...(f.template !== undefined ? { template: f.template } : {}),
      ...(params ? { params } : {}),
      ...(spec ? { spec } : {}),
      ...(policy ? { policy } : {}),
    });
    emit(f.json, r, () => describePool(r));
  });

export const poolGet = (pool: string, f: ClientFlags) =>
  withClient(f, async (c) => {
    const r = await c.call('pool.get', { pool });
    emit(f.json, r, () => describePool(r));
  });

export const poolList = (f: ClientFlags) =>
  withClient(f, async (c) => {
    const r = await c.call('pool.list', {});
    const rows = r.items.map((p) => ({ ...p, backoffUntil: p.backoffUntil === null ? null : new Date(p.backoffUntil).toISOString() }));
    emit(f.json, r, () => table(rows, COLS));
  });

export const poolDelete = (pool: string, f: ClientFlags) =>
  withClient(f, async (c) => {
    const r = await c.call('pool.delete', { pool });
    emit(f.json, r, () => `${r.pool} deleted (${r.destroyed} unclaimed prebuild(s) destroyed; claimed ones kept)`);
  });

/** Add `wsup pool set|get|list|delete` to `program`; `client` adds the connection options, `run` records the exit code. */
export function registerPoolCommands(program: Command, client: (c: Command) => Command, run: (p: Promise<number>) => Promise<void>): void {
  const pool = program.command('pool').description('prebuild pools that keep <desired> prebuilds started and unclaimed');
  client(
    pool
      .command('set <pool>')
      .description('create or change a pool; it fills (or shrinks) to --desired')
      .option('--desired <n>', 'prebuilds to keep started and unclaimed')
      .option('--template <name>', 'a template of the server\'s --config (default: the pool\'s current one, else default)')
      .option('--params <json>', 'the template\'s parameters as a JSON object')
      .option('--spec <json>', 'admin only: a raw provider spec as a JSON object instead of a template')
      .option('--policy <json>', 'the lifecycle policy defaults of the pool\'s prebuilds, as a JSON object'),
  ).action((name: string, f: SetFlags) => run(poolSet(name, f)));
  client(pool.command('get <pool>').description('one pool: desired, ready, starting, failing, backoff')).action((name: string, f: ClientFlags) => run(poolGet(name, f)));
  client(pool.command('list').description('every pool in a table')).action((f: ClientFlags) => run(poolList(f)));
  client(pool.command('delete <pool>').description('stop keeping a pool: its unclaimed prebuilds are destroyed, claimed ones kept')).action(
    (name: string, f: ClientFlags) => run(poolDelete(name, f)),
  );
}
