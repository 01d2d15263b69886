/**
 * A template compiled from its config entry: the spec it fixes and how each operator parameter is checked
 * and merged into that spec. `resolve` turns `{template, params}` into the provider spec a workspace runs.
 */
import { PolicyError } from '../errors.ts';
import { checkEnv, checkImage, checkMounts, checkNetworkMode, checkResources, checkSecurityGroups, checkString, isPlainRecord } from './params.ts';
import type { PolicyPatch } from '../protocol/index.ts';
import type { TemplateConfig } from './schema.ts';
import { templateVersion } from './version.ts';

export type TemplateRole = 'operator' | 'admin';

/** Merges one checked parameter into the spec being built. */
type Param = (spec: Record<string, unknown>, value: unknown, field: string, id: string) => void;

export interface Template {
  readonly name: string;
  /** `process`, `docker`, `ec2`; `null` for the built-in default of a provider without template fields (fake). */
  readonly provider: string | null;
  /** Least role that may use the template. */
  readonly role: TemplateRole;
  /** The fields the template fixes. */
  readonly base: Readonly<Record<string, unknown>>;
  readonly params: Readonly<Record<string, Param>>;
  /** Hash of what shapes its specs (see version.ts): a workspace built from another version is outdated. */
  readonly version: string;
  /** Its workspaces' policy defaults (stamped into each spec as `wsupPolicyDefaults`); null: none. */
  readonly policy: PolicyPatch | null;
  /** At most this many of its workspaces running at once; null: no per-template limit of its own. */
  readonly maxRunning: number | null;
}

/** The spec key a resolved workspace carries its template's name under (providers ignore it). */
export const TEMPLATE_KEY = 'template';

export function compileTemplate(name: string, t: TemplateConfig): Template {
  const { description: _description, role: _role, maxRunning, ...definition } = t;
  const meta = { version: templateVersion(definition), policy: t.policy ?? null, maxRunning: maxRunning ?? null };
  return { ...compileRules(name, t), ...meta };
}

function compileRules(name: string, t: TemplateConfig): Omit<Template, 'version' | 'policy' | 'maxRunning'> {
  const role = t.role ?? 'operator';
  switch (t.provider) {
    case 'process': {
      const p = t.params ?? {};
      const params: Record<string, Param> = {};
      if (p.env) params.env = envParam(p.env);
      return { name, provider: 'process', role, base: { ...t.process }, params };
    }
    case 'docker': {
      const { bindRoots = [], ...base } = t.docker ?? {};
      const p = t.params ?? {};
      const params: Record<string, Param> = {};
      if (p.image) params.image = (spec, v, f, id) => void (spec.image = checkImage(f, v, p.image!, id));
      if (p.env) params.env = envParam(p.env);
      if (p.mounts) params.mounts = (spec, v, f, id) => void (spec.mounts = [...((spec.mounts as unknown[]) ?? []), ...checkMounts(f, v, p.mounts!, bindRoots, id)]);
      if (p.networkMode) params.networkMode = (spec, v, f, id) => void (spec.networkMode = checkNetworkMode(f, v, p.networkMode!.values, id));
      // Asked-for limits override the template's own, one by one.
      if (p.resources) params.resources = (spec, v, f, id) => void (spec.resources = { ...(spec.resources as object | undefined), ...checkResources(f, v, p.resources!, id) });
      return { name, provider: 'docker', role, base, params };
    }
    case 'ec2': {
      const p = t.params ?? {};
      const params: Record<string, Param> = {};
      for (const key of ['ami', 'instanceType', 'subnetId'] as const) {
        const c = p[key];
        if (c) params[key] = (spec, v, f, id) => void (spec[key] = checkString(f, v, c, id));
      }
      if (p.securityGroupIds) params.securityGroupIds = (spec, v, f, id) => void (spec.securityGroupIds = checkSecurityGroups(f, v, p.securityGroupIds!.values, id));
      return { name, provider: 'ec2', role, base: { ...t.ec2 }, params };
    }
  }
}

const envParam =
  (rule: Parameters<typeof checkEnv>[2]): Param =>
  (spec, v, f, id) =>
    void (spec.env = { ...(spec.env as Record<string, string> | undefined), ...checkEnv(f, v, rule, id) });

/** The spec of a workspace made from `t` with `params`; throws a `PolicyError` for anything outside the template. */
export function resolveTemplate(t: Template, params: unknown, id: string): Record<string, unknown> {
  const spec: Record<string, unknown> = structuredClone({ ...t.base });
  if (params !== undefined) {
    if (!isPlainRecord(params)) throw new PolicyError('params', 'must be an object', id);
    for (const [key, value] of Object.entries(params)) {
      const param = Object.hasOwn(t.params, key) ? t.params[key] : undefined;
      if (param === undefined) {
        const allowed = Object.keys(t.params);
        throw new PolicyError(`params.${key}`, `not a parameter of template ${t.name} (${allowed.length > 0 ? `parameters: ${allowed.join(', ')}` : 'it takes none'})`, id);
      }
      param(spec, value, `params.${key}`, id);
    }
  }
  spec[TEMPLATE_KEY] = t.name;
  return spec;
}
