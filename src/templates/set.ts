/**
 * The templates a server offers, and the one decision of `workspace.create`: which spec a caller gets.
 * Without `template` the `default` template applies (from `wsup serve --image/--cmd/--ami...` unless the
 * config names its own). A raw spec reaches here only from an admin (the method's param table says so).
 *
 * A spec rendered from a template carries what it takes to render it again: `wsupTemplate {name, version}`,
 * the operator's `wsupParams` (already checked) and the template's `wsupPolicyDefaults`. Providers read
 * only their own fields, so none of these reach a container, process or instance.
 */
import { PolicyError } from '../errors.ts';
import { roleAtLeast, type Role } from '../protocol/index.ts';
import { isPlainRecord } from './params.ts';
import { compileTemplate, resolveTemplate, type Template } from './template.ts';
import type { WsupConfig } from './schema.ts';
import { templateVersion } from './version.ts';

export const DEFAULT_TEMPLATE = 'default';
/** Spec keys a template render stamps; re-rendering replaces them, and keeps every other `wsup*` key. */
export const SPEC_TEMPLATE = 'wsupTemplate';
export const SPEC_PARAMS = 'wsupParams';
export const SPEC_POLICY_DEFAULTS = 'wsupPolicyDefaults';
const RENDERED_KEYS: readonly string[] = [SPEC_TEMPLATE, SPEC_PARAMS, SPEC_POLICY_DEFAULTS];

export interface CreateRequest {
  template?: string | undefined;
  params?: Record<string, unknown> | undefined;
  spec?: Record<string, unknown> | undefined;
}

/** Which template, at which version, a spec was rendered from. */
export interface TemplateStamp {
  name: string;
  version: string;
}

export class TemplateSet {
  private byName: ReadonlyMap<string, Template>;

  constructor(templates: Iterable<Template>) {
    this.byName = byName(templates);
  }

  /** The config's templates, plus `fallback` as `default` when the config has none of that name. */
  static fromConfig(config: WsupConfig, fallback: Template): TemplateSet {
    return new TemplateSet(compileConfig(config, fallback));
  }

  get names(): string[] {
    return [...this.byName.keys()];
  }

  get all(): Template[] {
    return [...this.byName.values()];
  }

  get(name: string): Template | undefined {
    return this.byName.get(name);
  }

  /**
   * Swap in a new set of templates at once (a config reload). Workspaces keep the spec they have: those whose
   * template changed show `outdated`, and move to the new version on `workspace.update` (or their next start
   * with `autoUpdate: 'on-start'`).
   */
  replace(templates: Iterable<Template>): void {
    this.byName = byName(templates);
  }

  /** Per-template running limits from the config's `maxRunning`, for the supervisor's quota. */
  limits(): { perTemplate: Record<string, number> } {
    return { perTemplate: Object.fromEntries(this.all.flatMap((t) => (t.maxRunning === null ? [] : [[t.name, t.maxRunning]]))) };
  }

  /**
   * The spec to store and run for `req` from a caller with `role`; throws a `PolicyError` when refused.
   * Who may pass a raw `spec` at all is the method's param table (PARAM_ROLE), checked before this.
   */
  specFor(req: CreateRequest, role: Role, id: string): Record<string, unknown> {
    if (req.spec !== undefined) {
      if (req.template !== undefined || req.params !== undefined) throw new PolicyError('spec', 'pass a raw spec or a template with params, not both', id);
      return req.spec;
    }
    return this.render(this.named(req.template ?? DEFAULT_TEMPLATE, id), req.params, role, id);
  }

  /**
   * Whether a workspace with `spec` was built from another version of its template than this set has:
   * undefined when it was not built from a template, or its template is gone (nothing to update to).
   */
  outdated(spec: Record<string, unknown>): boolean | undefined {
    const stamp = templateStamp(spec);
    if (stamp === null) return undefined;
    const t = this.byName.get(stamp.name);
    return t === undefined ? undefined : t.version !== stamp.version;
  }

  /**
   * `spec` rendered again from its template's current version with the params it was created with. Keys
   * the workspace holds of its own (`wsupPolicy`, `wsupOwner`, ...) are kept. With `role`, the caller must
   * still be allowed the template; without, the re-render is the server's own (an automatic update).
   * Throws a `PolicyError` naming what stands in the way (the template is gone, a param is no longer allowed).
   */
  rerender(spec: Record<string, unknown>, id: string, role?: Role): Record<string, unknown> {
    const stamp = templateStamp(spec);
    if (stamp === null) throw new PolicyError('template', 'this workspace was not created from a template: there is no newer version to update to', id);
    const t = this.byName.get(stamp.name);
    if (t === undefined) throw new PolicyError('template', `template ${stamp.name} is no longer offered (templates: ${this.names.join(', ') || 'none'}): there is nothing to update to`, id);
    const params = spec[SPEC_PARAMS];
    const fresh = this.render(t, isPlainRecord(params) ? params : undefined, role, id);
    for (const [key, value] of Object.entries(spec)) {
      if (key.startsWith('wsup') && !RENDERED_KEYS.includes(key) && !(key in fresh)) fresh[key] = value;
    }
    return fresh;
  }

  private named(name: string, id: string): Template {
    const t = this.byName.get(name);
    if (t === undefined) throw new PolicyError('template', `no template ${name} (templates: ${this.names.join(', ') || 'none'})`, id);
    return t;
  }

  private render(t: Template, params: Record<string, unknown> | undefined, role: Role | undefined, id: string): Record<string, unknown> {
    if (role !== undefined && !roleAtLeast(role, t.role)) throw new PolicyError('template', `template ${t.name} is for role ${t.role}`, id);
    const spec = resolveTemplate(t, params, id);
    spec[SPEC_TEMPLATE] = { name: t.name, version: t.version } satisfies TemplateStamp;
    // Checked by resolveTemplate just now; kept so the next version can be rendered from the same choices.
    if (params !== undefined) spec[SPEC_PARAMS] = structuredClone(params);
    if (t.policy !== null) spec[SPEC_POLICY_DEFAULTS] = { ...t.policy };
    return spec;
  }
}

/** The config's templates compiled, with `fallback` as `default` unless the config has its own. */
export function compileConfig(config: WsupConfig, fallback: Template): Template[] {
  const compiled = Object.entries(config.templates).map(([name, t]) => compileTemplate(name, t));
  return compiled.some((t) => t.name === DEFAULT_TEMPLATE) ? compiled : [fallback, ...compiled];
}

/** The `wsupTemplate` stamp of a spec, or null when it has none (a raw spec, or one from before versions). */
export function templateStamp(spec: Record<string, unknown>): TemplateStamp | null {
  const s = spec[SPEC_TEMPLATE];
  return isPlainRecord(s) && typeof s.name === 'string' && typeof s.version === 'string' ? { name: s.name, version: s.version } : null;
}

/** The `default` template of a server started without a config: the provider's defaults, no parameters. */
export function providerDefaultTemplate(provider: string | null, base: Record<string, unknown> = {}): Template {
  return { name: DEFAULT_TEMPLATE, provider, role: 'operator', base, params: {}, version: templateVersion({ provider, base }), policy: null, maxRunning: null };
}

function byName(templates: Iterable<Template>): ReadonlyMap<string, Template> {
  return new Map([...templates].map((t) => [t.name, t]));
}
