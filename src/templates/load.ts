/**
 * Reading `wsup serve --config FILE`: JSON, checked whole against the schema; the first problem is reported
 * with its path so the admin can find it (`templates.web.docker.mounts[0].source: ...`).
 */
import { readFileSync } from 'node:fs';
import type { z } from 'zod';
import { WsupError } from '../errors.ts';
import { configSchema, type WsupConfig } from './schema.ts';

export class ConfigError extends WsupError {
  constructor(file: string, where: string, message: string) {
    super('WSUP_INVALID_ARGUMENT', `config ${file}: ${where ? `${where}: ` : ''}${message}`);
  }
}

/** `['templates', 'web', 'docker', 'mounts', 0, 'source']` → `templates.web.docker.mounts[0].source`. */
export function formatPath(path: ReadonlyArray<PropertyKey>): string {
  return path.reduce<string>((out, p) => (typeof p === 'number' ? `${out}[${p}]` : out === '' ? String(p) : `${out}.${String(p)}`), '');
}

export function parseConfig(file: string, data: unknown, opts: { provider?: string } = {}): WsupConfig {
  const parsed = configSchema.safeParse(data);
  if (!parsed.success) {
    const issue = firstIssue(parsed.error.issues);
    throw new ConfigError(file, formatPath(issue.path), issue.message);
  }
  if (opts.provider !== undefined && opts.provider !== 'fake') {
    for (const [name, t] of Object.entries(parsed.data.templates)) {
      if (t.provider !== opts.provider) throw new ConfigError(file, `templates.${name}.provider`, `is ${t.provider}, but this server runs --provider ${opts.provider}`);
    }
  }
  return parsed.data;
}

export function loadConfig(file: string, opts: { provider?: string } = {}): WsupConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(file, '', `cannot be read (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(file, '', `is not JSON (${(err as Error).message})`);
  }
  return parseConfig(file, data, opts);
}

/** A union's issue points at the branch that failed, not at the discriminator: dig for the deepest one. */
function firstIssue(issues: z.core.$ZodIssue[]): { path: PropertyKey[]; message: string } {
  const issue = issues[0]!;
  if (issue.code === 'invalid_union' && issue.errors.length > 0) {
    const branch = issue.errors.find((e) => e.length > 0) ?? [];
    if (branch.length > 0) {
      const inner = firstIssue(branch);
      return { path: [...issue.path, ...inner.path], message: inner.message };
    }
  }
  return { path: issue.path, message: issue.message };
}
