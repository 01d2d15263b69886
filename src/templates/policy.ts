/**
 * A template's default lifecycle policy, as the config file gives it: the wire's policy fields
 * (`policySchema`), with durations also accepted as text (`"30m"`, `"14d"`), and schedules checked when
 * the file loads (a cron croner can parse, an IANA time zone), so a bad one stops the server at startup
 * with the template and the field named.
 */
import { Cron } from 'croner';
import { z } from 'zod';
import { policySchema } from '../protocol/index.ts';
import { DURATION_HINT, parseDuration } from './duration.ts';

const MIN_MS = 1_000;
const MAX_MS = 366 * 24 * 3_600_000;

/** A duration in ms or as text; null turns the rule off. */
const duration = z
  .union([z.number(), z.string()])
  .nullable()
  .transform((v, ctx) => {
    if (v === null) return null;
    const ms = parseDuration(v);
    if (ms === null) {
      ctx.addIssue({ code: 'custom', message: `${JSON.stringify(v)} is not a duration: ${DURATION_HINT}` });
      return z.NEVER;
    }
    if (ms < MIN_MS || ms > MAX_MS) {
      ctx.addIssue({ code: 'custom', message: `${JSON.stringify(v)} is out of range: give at least 1s and at most 366d` });
      return z.NEVER;
    }
    return ms;
  })
  .optional();

const schedule = z.strictObject({ cron: z.string().min(1).max(128), tz: z.string().min(1).max(64) }).nullable().optional();

/** Same fields as `policySchema`: a field the wire does not know is refused here too. */
export const templatePolicySchema = policySchema
  .extend({
    idleTimeoutMs: duration,
    maxLifetimeMs: duration,
    maxLifetimeWarnMs: duration,
    autostart: schedule,
    autostop: schedule,
    dormantAfterMs: duration,
    deleteDormantAfterMs: duration,
  })
  .superRefine((p, ctx) => {
    for (const key of ['autostart', 'autostop'] as const) {
      const s = p[key];
      if (s === null || s === undefined) continue;
      const why = cronProblem(s.cron);
      if (why !== null) ctx.addIssue({ code: 'custom', path: [key, 'cron'], message: why });
      if (!validTimeZone(s.tz)) ctx.addIssue({ code: 'custom', path: [key, 'tz'], message: `${JSON.stringify(s.tz)} is not an IANA time zone (e.g. Europe/Berlin, UTC)` });
    }
    const { maxLifetimeMs: life, maxLifetimeWarnMs: warn } = p;
    if (typeof life === 'number' && typeof warn === 'number' && warn >= life) {
      ctx.addIssue({ code: 'custom', path: ['maxLifetimeWarnMs'], message: 'must be shorter than maxLifetimeMs (the warning comes before the stop)' });
    }
  });

function cronProblem(expr: string): string | null {
  try {
    new Cron(expr, { paused: true }).stop();
    return null;
  } catch (err) {
    return `${JSON.stringify(expr)} is not a cron expression (${err instanceof Error ? err.message : String(err)})`;
  }
}

function validTimeZone(tz: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: tz });
    return true;
  } catch {
    return false;
  }
}

export type TemplatePolicy = z.output<typeof templatePolicySchema>;
