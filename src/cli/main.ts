/**
 * The `wsup` command line. Exit codes: 0 ok, 1 failure, 2 usage.
 *
 * @example
 * wsup serve --data-dir .wsup            # embedded default; prints the visualizer URL
 * wsup ensure ws-1 --json                 # {"id":"ws-1","started":true,"endpoint":"…","state":"running"}
 * wsup restart ws-1 --reason deploy --wait
 */
import { Command, CommanderError, Option } from 'commander';
import * as cmd from './commands.ts';
import { registerPoolCommands } from './pool.ts';
import { EDGE_DEFAULTS } from '../server/edge-defaults.ts';
import { defaultDataDir, type ClientFlags } from './context.ts';
import type { ServeFlags } from './serve.ts';
import type { TokenFlags } from './token.ts';

const program = new Command('wsup')
  .description('workspace lifecycle supervisor')
  .version('0.1.0')
  .exitOverride()
  .showHelpAfterError();

/** A repeatable option's values, in order. */
const collect = (value: string, previous: string[]): string[] => [...previous, value];

/** A repeated --url adds to the list (a comma list, as one --url may also give). */
const joinUrls = (value: string, previous: string | undefined): string => (previous === undefined ? value : `${previous},${value}`);

/** The options every client command takes. */
function client(c: Command): Command {
  return c
    .addOption(new Option('--url <url>', 'server URL (default http://127.0.0.1:7070); a cluster\'s replicas: a comma list or repeated, each command goes to its workspace\'s owner').env('WSUP_URL').argParser(joinUrls))
    .addOption(new Option('--token <token>', 'API token (default: <data-dir>/admin.token)').env('WSUP_TOKEN'))
    .option('--data-dir <dir>', 'local data dir to find the admin token in', defaultDataDir())
    .option('--timeout <ms>', 'per-call timeout in ms (0: none)')
    .option('--json', 'print exactly one JSON document on stdout');
}

let exitCode = 0;
const set = (p: Promise<number> | number) => Promise.resolve(p).then((c) => void (exitCode = c));

program
  .command('serve')
  .description('run the server (embedded default: PGlite + local-process provider)')
  .option('--port <port>', 'port (0: any free port)', '7070')
  .option('--host <host>', 'address to bind', '127.0.0.1')
  .option('--data-dir <dir>', 'data directory (tokens, PGlite, process records)', defaultDataDir())
  .option('--provider <kind>', 'process | docker | ec2 | fake', 'process')
  .addOption(new Option('--database-url <url>', 'PostgreSQL URL instead of embedded PGlite').env('DATABASE_URL'))
  .option('--allowed-origin <origin>', 'browser origin allowed to connect besides the server\'s own address (repeatable; * allows any)', collect, [])
  .option('--origin <origin...>', 'same as --allowed-origin (older spelling)')
  .addOption(new Option('--metrics-token <token>', 'require Authorization: Bearer <token> on /metrics (default: /metrics is open)').env('WSUP_METRICS_TOKEN'))
  .option('--headers-timeout <ms>', 'cut off a client that has not sent its request headers (an upgrade\'s too) in time', String(EDGE_DEFAULTS.headersTimeoutMs))
  .option('--upgrade-timeout <ms>', 'cut off a WebSocket upgrade not completed in time', String(EDGE_DEFAULTS.upgradeTimeoutMs))
  .option('--max-upgrades-per-address <n>', 'upgrades in progress from one address; more get 429', String(EDGE_DEFAULTS.maxPendingUpgradesPerAddress))
  .option('--max-connections-per-address <n>', 'TCP connections from one address; more are closed', String(EDGE_DEFAULTS.maxConnectionsPerAddress))
  .option('--image <image>', 'docker: default image for workspaces created without a spec')
  .option('--cmd <command>', 'docker: default command (words split on spaces; quotes group)')
  .option('--ami <ami>', 'ec2: default AMI for workspaces created without a spec')
  .option('--instance-type <type>', 'ec2: default instance type')
  .option('--config <file>', 'templates operators may create workspaces from (JSON; see README "Security model")')
  .option('--orphans <policy>', 'provider resources no stored workspace owns: report | remove', 'report')
  .option('--memory', 'keep no state (nothing survives a restart); for demos and benchmarks')
  .option('--cluster', 'run as one replica of a cluster on PostgreSQL (needs --database-url / DATABASE_URL)')
  .option('--replica-id <id>', 'this replica\'s name in the cluster (default: random)')
  .option('--advertise-url <url>', 'cluster: the URL clients reach this replica on (default: the one it listens on)')
  .option('--shutdown-grace <ms>', 'longest shutdown after SIGTERM/SIGINT; a second signal exits at once (default 10000)')
  .option('--idle-timeout <duration>', 'default policy: stop a running workspace this long after its last activity (30m; off)')
  .option('--max-lifetime <duration>', 'default policy: stop a running workspace this long after it started (8h; off)')
  .option('--max-lifetime-warn <duration>', 'default policy: warn its agent this long before a max-lifetime stop (15m; off)')
  .option('--dormant-after <duration>', 'default policy: mark a stopped workspace dormant after this long unused (14d; off)')
  .option('--deactivate-after <duration>', 'a workspace with nothing to do leaves memory after this long quiet (its state is in the store; the next use brings it back) (5m; off keeps every one in memory)')
  .option('--max-running-per-owner <n>', 'quota: running workspaces one owner may have; a start past it is refused at once')
  .option('--max-running-per-template <n>', 'quota: running workspaces per template or pool (a template\'s maxRunning in --config wins)')
  .action(async (f: ServeFlags) => {
    // Loaded on demand: client commands must not pay for the server, store and providers at boot.
    const { serve } = await import('./serve.ts');
    await set(serve(f));
  });

client(program.command('ensure <id>').description('get-or-start a workspace; prints its endpoint')).action((id: string, f: ClientFlags) => set(cmd.ensure(id, f)));
client(
  program
    .command('restart <id>')
    .description('restart a workspace; prints the outcome (started, joined, queued, deferred)')
    .option('--source <source>', 'manual | programmatic | file-write | liveness | claim', 'manual')
    .option('--reason <text>', 'why, recorded on the cycle')
    .option('--wait', 'return after the satisfying cycle completes (live progress on a terminal)'),
).action((id: string, f: Parameters<typeof cmd.restart>[1]) => set(cmd.restart(id, f)));
client(program.command('stop <id>').description('stop a workspace')).action((id: string, f: ClientFlags) => set(cmd.stop(id, f)));
client(program.command('destroy <id>').description('stop a workspace and remove it for good')).action((id: string, f: ClientFlags) => set(cmd.destroy(id, f)));
client(program.command('status [id]').description('one workspace in detail, or all in a table')).action((id: string | undefined, f: ClientFlags) => set(cmd.status(id, f)));
client(program.command('list').description('list workspaces').option('--state <state>', 'only this state').option('--limit <n>', 'at most n')).action(
  (f: Parameters<typeof cmd.list>[0]) => set(cmd.list(f)),
);
client(program.command('watch [id]').description('live transitions with their why (NDJSON with --json)')).action((id: string | undefined, f: ClientFlags) => set(cmd.watch(id, f)));
client(program.command('files-written <id> <paths...>').description('report written files (restart with source file-write)')).action(
  (id: string, paths: string[], f: ClientFlags) => set(cmd.filesWritten(id, paths, f)),
);
client(
  program
    .command('create <id>')
    .description('create a workspace without starting it; --prebuild makes it claimable')
    .option('--template <name>', 'a template of the server\'s --config (default: its default template)')
    .option('--params <json>', 'the template\'s parameters as a JSON object')
    .option('--spec <json>', 'admin only: a raw provider spec as a JSON object instead of a template')
    .option('--prebuild', 'a prebuild, owned by the system until claimed')
    .option('--pool <pool>', 'the prebuild pool (template) it belongs to'),
).action((id: string, f: Parameters<typeof cmd.create>[1]) => set(cmd.create(id, f)));
client(
  program
    .command('claim [id]')
    .description('claim a prebuild for a user; its agent reinitializes once the claim build completes')
    .option('--pool <pool>', 'claim the oldest unclaimed prebuild of this pool instead of an id')
    .option('--user <user>', 'the new owner'),
).action((id: string | undefined, f: Parameters<typeof cmd.claim>[1]) => set(cmd.claim(id, f)));
client(
  program
    .command('policy <id>')
    .description('show a workspace\'s lifecycle policy, or set its own rules (durations: 45s, 30m, 8h, 14d, 1h30m; off turns a rule off)')
    .option('--idle <duration>', 'stop it this long after its last activity')
    .option('--max-lifetime <duration>', 'stop it this long after it started, active or not')
    .option('--warn <duration>', 'warn its agent this long before the max-lifetime stop')
    .option('--autostart <cron>', 'start it at these times (5-field cron, or off)')
    .option('--autostop <cron>', 'stop it at these times (5-field cron, or off)')
    .option('--tz <zone>', 'IANA time zone of --autostart/--autostop (default UTC, or the schedule\'s own)')
    .option('--dormant-after <duration>', 'mark it dormant when stopped and unused this long')
    .option('--delete-dormant-after <duration>', 'destroy it this long after it became dormant (opt-in)')
    .option('--auto-update <mode>', 'on-start: the next start uses its template\'s new version; never; off')
    .option('--clear', 'turn every rule off (before the other flags apply)'),
).action((id: string, f: Parameters<typeof cmd.policy>[1]) => set(cmd.policy(id, f)));
client(
  program
    .command('touch <id>')
    .description('report activity on a workspace: pushes its idle deadline out; prints the new one')
    .option('--source <text>', 'where the activity came from, shown in the idle stop\'s reason (default: rpc:<your token\'s name>)'),
).action((id: string, f: Parameters<typeof cmd.touch>[1]) => set(cmd.touch(id, f)));
registerPoolCommands(program, client, set);
program
  .command('token')
  .description('print the local admin token, rotate it, issue, list or remove role tokens (a cluster\'s: --cluster)')
  .option('--data-dir <dir>', 'data directory', defaultDataDir())
  .option('--rotate', 'replace the admin token (the old one stops working)')
  .option('--add <role>', 'issue a new token for admin | operator | viewer')
  .option('--label <name>', 'with --add: who the token is for (names its requests in cycles, history and logs)')
  .option('--expires-in <duration>', 'with --add: 90s, 15m, 12h, 7d')
  .option('--remove <id-or-label>', 'remove a token by label or short id; sockets opened with it are closed')
  .option('--list', 'list the tokens (hashes\' short ids, roles, labels, expiries; never the tokens)')
  .option('--cluster', 'the tokens of a cluster, in its PostgreSQL (DATABASE_URL or --database-url)')
  .option('--database-url <url>', 'the cluster\'s PostgreSQL (implies --cluster)')
  .option('--import [file]', 'with --cluster: copy a single node\'s tokens.json (default: the data dir\'s) into the cluster')
  .option('--json', 'print exactly one JSON document on stdout')
  .action(async (f: TokenFlags) => {
    const { token } = await import('./token.ts');
    await set(token(f));
  });

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) {
    exitCode = err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help' ? 0 : 2;
  } else {
    process.stderr.write(`wsup: ${err instanceof Error ? err.message : String(err)}\n`);
    exitCode = 1;
  }
}
process.exitCode = exitCode;
// Sockets, timers or the store may linger after a one-shot command; do not let them hold the shell. Exit
// once what was written to stdout is flushed: a pipe takes large output (a long list) asynchronously.
if (process.argv[2] !== 'serve' && process.argv[2] !== 'watch') process.stdout.write('', () => process.exit(exitCode));
