/** Run the CLI from the sources as its own process, through the repo's launcher (scripts/wsup-dev.js, what `npm start` runs), with bounded time. */
import { spawn } from 'node:child_process';

export function runCli(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['scripts/wsup-dev.js', ...args], {
      cwd: new URL('../..', import.meta.url).pathname,
      env: { ...process.env, WSUP_URL: '', WSUP_TOKEN: '', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, stdout, stderr });
    });
  });
}


/**
 * Run `wsup serve <args>` through the launcher until `stop()`: resolves with its URL once it prints its
 * ready line, and rejects if it exits first.
 */
export async function serveCli(args: string[]): Promise<{ url: string; stop: () => Promise<void> }> {
  const { createInterface } = await import('node:readline');
  const proc = spawn(process.execPath, ['scripts/wsup-dev.js', 'serve', ...args], {
    cwd: new URL('../..', import.meta.url).pathname,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = new Promise<number | null>((r) => proc.once('exit', r));
  const stop = async () => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
    await exited;
  };
  try {
    const url = await new Promise<string>((resolve, reject) => {
      createInterface({ input: proc.stdout }).on('line', (l) => {
        const m = /^wsup ready on (\S+)/.exec(l);
        if (m) resolve(m[1]!);
      });
      void exited.then((code) => reject(new Error(`wsup serve exited with ${code} before it was ready`)));
    });
    return { url, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
