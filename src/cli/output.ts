/**
 * Output rules: with `--json`, exactly one JSON document on stdout (the result, or `{ error }`) and
 * nothing else; otherwise short human lines. Errors always set the exit code: 1 failure, 2 usage.
 */
import { WsupConnectionError, WsupRpcError, WsupTimeoutError } from '../client/index.ts';
import { UsageError } from './context.ts';

export function emit(json: boolean | undefined, value: unknown, human: () => string): void {
  process.stdout.write(json ? `${JSON.stringify(value)}\n` : `${human()}\n`);
}

export function fail(json: boolean | undefined, err: unknown): number {
  const code = err instanceof UsageError ? 2 : 1;
  const detail =
    err instanceof WsupRpcError
      ? { code: err.code, wsupCode: err.wsupCode ?? null, message: err.message, data: err.data ?? null }
      : err instanceof WsupTimeoutError || err instanceof WsupConnectionError
        ? { code: err.code, message: err.message }
        : { code: code === 2 ? 'USAGE' : 'ERROR', message: err instanceof Error ? err.message : String(err) };
  if (json) process.stdout.write(`${JSON.stringify({ error: detail })}\n`);
  else process.stderr.write(`wsup: ${detail.message}\n`);
  return code;
}

export function table(rows: Array<Record<string, unknown>>, cols: string[]): string {
  if (rows.length === 0) return '(none)';
  const cell = (v: unknown): string => (v === null || v === undefined ? '-' : typeof v === 'string' ? v : JSON.stringify(v));
  const widths = cols.map((c) => Math.max(c.length, ...rows.map((r) => cell(r[c]).length)));
  const line = (vals: string[]) => vals.map((v, i) => v.padEnd(widths[i]!)).join('  ').trimEnd();
  return [line(cols.map((c) => c.toUpperCase())), ...rows.map((r) => line(cols.map((c) => cell(r[c]))))].join('\n');
}
