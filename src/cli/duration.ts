/**
 * Durations on the command line and in the serve config: `45s`, `30m`, `8h`, `14d`, `1h30m`, `500ms`, or
 * a plain number of ms. Policy flags also take `off` (the rule is turned off: null on the wire).
 *
 * @example
 * parseDuration('1h30m'); // 5_400_000
 * formatDuration(5_400_000); // '1h30m'
 */
import { parseDuration as parseConfigDuration } from '../templates/duration.ts';
import { UsageError } from './context.ts';

const UNIT_MS = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

export const DURATION_HINT = 'use e.g. 45s, 30m, 8h, 14d';

/** Milliseconds, or null when `text` is not a duration (the config file's grammar: one parser for both). */
export const parseDuration = (text: string): number | null => parseConfigDuration(text);

/** A duration flag's value in ms, or a usage error naming the flag. */
export function durationFlag(flag: string, text: string): number {
  const ms = parseDuration(text);
  if (ms === null) throw new UsageError(`${flag}: "${text}" is not a duration: ${DURATION_HINT}`);
  return ms;
}

/** Like durationFlag, and `off` turns the rule off (null). */
export function policyDurationFlag(flag: string, text: string): number | null {
  return text.trim() === 'off' ? null : durationFlag(flag, text);
}

/** `5_400_000` → `1h30m`; the two largest units, rounded to the second (below a second: ms). */
export function formatDuration(ms: number): string {
  if (ms < 1_000) return `${Math.max(0, Math.round(ms))}ms`;
  let left = Math.round(ms / 1_000) * 1_000;
  const parts: string[] = [];
  for (const unit of ['d', 'h', 'm', 's'] as const) {
    const n = Math.floor(left / UNIT_MS[unit]);
    if (n === 0 && parts.length === 0) continue;
    if (n > 0) parts.push(`${n}${unit}`);
    left -= n * UNIT_MS[unit];
    if (parts.length === 2 || (parts.length > 0 && n === 0)) break;
  }
  return parts.join('');
}
