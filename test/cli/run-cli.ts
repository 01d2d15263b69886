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

