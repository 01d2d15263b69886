/**
 * `wsup serve` for the million-workspace bench: the CLI's own serve, with a FakeProvider (no start time of
 * its own) that already runs the bench's running workspaces, as a provider would after a restart. Prints the
 * banner; on SIGUSR2 prints one `memory {...}` line (after a full GC) with this process's memory.
 *
 * Environment: WSUP_BENCH_DATA_DIR, WSUP_BENCH_DATABASE_URL (absent: PGlite in the data dir),
 * WSUP_BENCH_RUNNING (how many `run-NNNNNNN` workspaces the provider runs), WSUP_BENCH_DEACTIVATE (the
 * --deactivate-after flag; absent: the default).
 */
import { serve } from '../../src/cli/serve.ts';
import { FakeProvider } from '../../src/providers/fake.ts';
import { runningId } from './million-ids.ts';

const provider = new FakeProvider({ latencyMs: 0 });
const running = Number(process.env.WSUP_BENCH_RUNNING ?? 0);
const signal = new AbortController().signal;
for (let i = 0; i < running; i++) await provider.start({ id: runningId(i) }, signal);
provider.calls.length = 0;

process.on('SIGUSR2', () => {
  (globalThis as { gc?: () => void }).gc?.();
  process.stdout.write(`memory ${JSON.stringify(process.memoryUsage())}\n`);
});

const code = await serve(
  {
    port: '0',
    host: '127.0.0.1',
    dataDir: process.env.WSUP_BENCH_DATA_DIR!,
    provider: 'fake',
    ...(process.env.WSUP_BENCH_DATABASE_URL ? { databaseUrl: process.env.WSUP_BENCH_DATABASE_URL } : {}),
    orphans: 'report',
    ...(process.env.WSUP_BENCH_DEACTIVATE ? { deactivateAfter: process.env.WSUP_BENCH_DEACTIVATE } : {}),
  },
  { provider },
);
process.exit(code);
