/**
 * Text formatting for the visualizer: durations, countdowns and clock times. Pure (time is a parameter),
 * so what a person reads is unit-tested with a fake clock.
 *
 * @example
 * formatCountdown(12_340); // 'in 12.3 s'
 * formatDuration(1_500);   // '1.50 s'
 */

/** A duration as a person reads it: `850 ms`, `1.50 s`, `2 min 5 s`, `1 h 02 min`. */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms)) return '—';
  const v = Math.max(0, ms);
  if (v < 1000) return `${Math.round(v)} ms`;
  if (v < 60_000) return `${(v / 1000).toFixed(v < 10_000 ? 2 : 1)} s`;
  const s = Math.floor(v / 1000);
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, '0')} min`;
}

/** Time left until a deadline: `in 12.3 s`, or `due now` once it has passed. */
export function formatCountdown(remainingMs: number): string {
  if (remainingMs <= 0) return 'due now';
  if (remainingMs < 60_000) return `in ${(Math.ceil(remainingMs / 100) / 10).toFixed(1)} s`;
  return `in ${formatDuration(remainingMs)}`;
}

/** `HH:MM:SS.mmm` in local time: timeline rows happen within seconds of each other. */
export function formatClock(at: number): string {
  const d = new Date(at);
  const p = (n: number, w = 2) => String(n).padStart(w, '0');
  return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
}

/** Short "how long ago": `just now`, `4 s ago`, `3 min ago`. */
export function formatAgo(at: number, now: number): string {
  const d = now - at;
  if (d < 1000) return 'just now';
  return `${formatDuration(d).replace(/\.\d+ s$/, ' s')} ago`;
}
