/**
 * A CPU hog for tests that must hold on a busy machine: one child process per core, each spinning flat out.
 * The children are plain `node -e` loops (no TypeScript loader, so they start in milliseconds). Each spins
 * in slices of about 50 ms and looks up between slices, so it exits on its own once its parent is gone
 * (its stdin pipe closes) even if the test process is SIGKILLed before it could dispose the hog.
 *
 * @example
 * let hog: CpuHog;
 * beforeAll(async () => { hog = await CpuHog.start(); });  // os.availableParallelism() children
 * afterAll(() => hog.dispose());
 * // or, scoped: await using hog = await CpuHog.start(2);
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';

/** Spin ~50 ms, yield to the event loop (stdin's end, a signal), repeat. Prints HOT once spinning. */
const SPIN = `
process.stdin.on('end', () => process.exit(0)).on('error', () => process.exit(0)).resume();
const slice = () => { const until = Date.now() + 50; while (Date.now() < until); setImmediate(slice); };
process.stdout.write('HOT\\n');
slice();
`;

export class CpuHog {
  private disposed: Promise<void> | null = null;

  private constructor(readonly children: readonly ChildProcess[]) {}

  /** Start `n` spinning children (default: one per core) and wait until each is spinning. */
  static async start(n = availableParallelism()): Promise<CpuHog> {
    if (!Number.isInteger(n) || n < 1) throw new Error(`CpuHog.start: n must be a positive integer, got ${n}`);
    const children = Array.from({ length: n }, () => spawn(process.execPath, ['-e', SPIN], { stdio: ['pipe', 'pipe', 'inherit'] }));
    const hog = new CpuHog(children);
    try {
      await Promise.all(
        children.map(
          (c) =>
            new Promise<void>((resolve, reject) => {
              c.stdout.once('data', () => resolve());
              c.once('error', reject);
              c.once('exit', (code, signal) => reject(new Error(`cpu hog child exited before spinning (${code ?? signal})`)));
            }),
        ),
      );
    } catch (err) {
      await hog.dispose();
      throw err;
    }
    return hog;
  }

  /** Pids of the children still running. */
  pids(): number[] {
    return this.children.filter((c) => c.exitCode === null && c.signalCode === null).map((c) => c.pid!);
  }

  /** CPU time (user + system, in ms) the children have used so far, from /proc (Linux); null elsewhere. */
  cpuMs(): number | null {
    let ticks = 0;
    try {
      for (const pid of this.pids()) {
        // Fields after the command name (which is in parentheses): utime and stime are the 12th and 13th.
        const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
        const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
        ticks += Number(fields[11]) + Number(fields[12]);
      }
    } catch {
      return null;
    }
    return ticks * 10; // USER_HZ is 100 on Linux
  }

  /** Kill every child and wait until each has exited. Idempotent. */
  dispose(): Promise<void> {
    this.disposed ??= Promise.all(
      this.children.map(async (c) => {
        if (c.exitCode !== null || c.signalCode !== null) return;
        const exited = new Promise<void>((r) => c.once('exit', () => r()));
        c.kill('SIGKILL');
        await exited;
      }),
    ).then(() => undefined);
    return this.disposed;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.dispose();
  }
}
