/**
 * Operator parameters, checked against one template's rules. Each check either returns the value to put
 * into the spec or throws a `PolicyError` naming the field (`params.env.PATH`) and the rule it broke.
 */
import { posix } from 'node:path';
import { PolicyError } from '../errors.ts';
import { globMatch } from './glob.ts';
import { ENV_KEY, loaderEnvReason } from './loader-env.ts';
import { mountProblem, sharesNamespace, VOLUME_NAME, IMAGE_REF } from './schema.ts';

export interface Choice {
  values?: string[] | undefined;
  patterns?: string[] | undefined;
}

const MAX_VALUE = 4096;

const allowedBy = (c: Choice, v: string): boolean => (c.values?.includes(v) ?? false) || (c.patterns?.some((p) => globMatch(p, v)) ?? false);
const describe = (c: Choice): string => [...(c.values ?? []), ...(c.patterns ?? [])].map((v) => JSON.stringify(v)).join(', ');

export function checkString(field: string, value: unknown, c: Choice, id: string): string {
  if (typeof value !== 'string' || value === '' || value.length > MAX_VALUE) throw new PolicyError(field, 'must be a non-empty string', id);
  if (!allowedBy(c, value)) throw new PolicyError(field, `must be one of ${describe(c)}`, id);
  return value;
}

export function checkImage(field: string, value: unknown, c: Choice, id: string): string {
  const image = checkString(field, value, c, id);
  if (!IMAGE_REF.test(image)) throw new PolicyError(field, 'must be an image reference', id);
  return image;
}

export function checkNetworkMode(field: string, value: unknown, values: string[], id: string): string {
  const mode = checkString(field, value, { values }, id);
  // The config refuses such values already; a second look costs nothing.
  if (sharesNamespace(mode)) throw new PolicyError(field, 'shares a host or container namespace', id);
  return mode;
}

export interface EnvRule extends Choice {
  keys: string[];
}

export function checkEnv(field: string, value: unknown, rule: EnvRule, id: string): Record<string, string> {
  if (!isPlainRecord(value)) throw new PolicyError(field, 'must be an object of strings', id);
  const out: Record<string, string> = {};
  for (const [key, v] of Object.entries(value)) {
    const at = `${field}.${key}`;
    if (!ENV_KEY.test(key)) throw new PolicyError(at, 'must be a letter or _ followed by letters, digits or _', id);
    const why = loaderEnvReason(key);
    if (why !== null) throw new PolicyError(at, `${why}: never an operator parameter`, id);
    if (!rule.keys.includes(key)) throw new PolicyError(at, `not an allowed key (allowed: ${rule.keys.join(', ')})`, id);
    if (typeof v !== 'string' || v.length > MAX_VALUE || v.includes('\0')) throw new PolicyError(at, `must be a string of at most ${MAX_VALUE} chars without NUL`, id);
    if ((rule.values !== undefined || rule.patterns !== undefined) && !allowedBy(rule, v)) throw new PolicyError(at, `must be one of ${describe(rule)}`, id);
    out[key] = v;
  }
  return out;
}

export interface MountRule {
  volumes?: string[] | undefined;
  bind?: boolean | undefined;
  tmpfs?: boolean | undefined;
  readOnly?: boolean | undefined;
  max?: number | undefined;
}

export interface Mount {
  source: string;
  target: string;
  type: 'bind' | 'volume' | 'tmpfs';
  readOnly: boolean;
}

const DEFAULT_MAX_MOUNTS = 8;

export function checkMounts(field: string, value: unknown, rule: MountRule, roots: readonly string[], id: string): Mount[] {
  if (!Array.isArray(value)) throw new PolicyError(field, 'must be an array of mounts', id);
  const max = rule.max ?? DEFAULT_MAX_MOUNTS;
  if (value.length > max) throw new PolicyError(field, `at most ${max} mounts`, id);
  return value.map((m: unknown, i) => {
    const at = `${field}[${i}]`;
    if (!isPlainRecord(m)) throw new PolicyError(at, 'must be {source, target, type?, readOnly?}', id);
    const extra = Object.keys(m).find((k) => !['source', 'target', 'type', 'readOnly'].includes(k));
    if (extra !== undefined) throw new PolicyError(`${at}.${extra}`, 'not a mount field', id);
    const { source, target, type = 'bind', readOnly } = m;
    if (typeof source !== 'string' || typeof target !== 'string') throw new PolicyError(at, 'source and target must be strings', id);
    if (type !== 'bind' && type !== 'volume' && type !== 'tmpfs') throw new PolicyError(`${at}.type`, 'must be bind, volume or tmpfs', id);
    if (readOnly !== undefined && typeof readOnly !== 'boolean') throw new PolicyError(`${at}.readOnly`, 'must be a boolean', id);
    if (type === 'bind' && rule.bind !== true) throw new PolicyError(`${at}.type`, 'bind mounts are not a parameter of this template', id);
    if (type === 'tmpfs' && rule.tmpfs !== true) throw new PolicyError(`${at}.type`, 'tmpfs mounts are not a parameter of this template', id);
    if (type === 'volume' && !(VOLUME_NAME.test(source) && (rule.volumes ?? []).some((p) => globMatch(p, source)))) {
      throw new PolicyError(`${at}.source`, `must be a volume name matching ${(rule.volumes ?? []).join(', ') || '(none allowed)'}`, id);
    }
    const problem = mountProblem({ source, target, type }, roots);
    if (problem !== null) throw new PolicyError(`${at}.${problem.field}`, problem.message, id);
    if (posix.normalize(target) !== target) throw new PolicyError(`${at}.target`, 'must be written normalised', id);
    // The engine resolves the normalised form; pass exactly what was judged.
    const judged = type === 'bind' ? posix.normalize(source) : source;
    return { source: judged, target, type, readOnly: rule.readOnly === true || readOnly === true };
  });
}

export interface ResourceRule {
  maxMemoryBytes?: number | undefined;
  maxNanoCpus?: number | undefined;
  maxPidsLimit?: number | undefined;
}

const RESOURCE_MAX: Record<string, keyof ResourceRule> = { memoryBytes: 'maxMemoryBytes', nanoCpus: 'maxNanoCpus', pidsLimit: 'maxPidsLimit' };

/** Engine limits an operator asked for: each a positive integer up to the template's maximum for it. */
export function checkResources(field: string, value: unknown, rule: ResourceRule, id: string): Record<string, number> {
  if (!isPlainRecord(value)) throw new PolicyError(field, 'must be an object of memoryBytes, nanoCpus, pidsLimit', id);
  const out: Record<string, number> = {};
  for (const [key, v] of Object.entries(value)) {
    const maxKey = Object.hasOwn(RESOURCE_MAX, key) ? RESOURCE_MAX[key] : undefined;
    const max = maxKey === undefined ? undefined : rule[maxKey];
    if (max === undefined) throw new PolicyError(`${field}.${key}`, `not a limit this template lets operators set`, id);
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1) throw new PolicyError(`${field}.${key}`, 'must be a positive integer', id);
    if (v > max) throw new PolicyError(`${field}.${key}`, `must be at most ${max}`, id);
    out[key] = v;
  }
  return out;
}

/** Security groups an operator picked: a non-empty list, each one of the template's `values`. */
export function checkSecurityGroups(field: string, value: unknown, values: string[], id: string): string[] {
  if (!Array.isArray(value) || value.length === 0 || value.length > values.length) throw new PolicyError(field, `must be a non-empty list of ${values.join(', ')}`, id);
  value.forEach((v, i) => checkString(`${field}[${i}]`, v, { values }, id));
  return [...new Set(value as string[])];
}

export function isPlainRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && Object.getPrototypeOf(v) === Object.prototype;
}
