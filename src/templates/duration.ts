/**
 * Durations as an admin writes them in a config file: `45s`, `30m`, `8h`, `14d`, `1h30m`, `250ms`, or a
 * plain number of ms (as a number or as digits).
 *
 * @example
 * parseDuration('1h30m'); // 5_400_000
 * parseDuration('30x');   // null
 */
const UNIT_MS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const PART = /(\d+)(ms|s|m|h|d)/g;
const WHOLE = /^(?:\d+(?:ms|s|m|h|d))+$/;

/** The duration in ms, or null when `text` is not one. */
export function parseDuration(text: string | number): number | null {
  if (typeof text === 'number') return Number.isSafeInteger(text) && text >= 0 ? text : null;
  const s = text.trim();
  if (/^\d+$/.test(s)) return toSafe(Number(s));
  if (!WHOLE.test(s)) return null;
  let ms = 0;
  for (const [, n, unit] of s.matchAll(PART)) ms += Number(n) * UNIT_MS[unit!]!;
  return toSafe(ms);
}

const toSafe = (n: number): number | null => (Number.isSafeInteger(n) ? n : null);

export const DURATION_HINT = 'use e.g. 45s, 30m, 8h, 14d, 1h30m or a number of ms';
