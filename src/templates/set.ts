/**
 * The templates a server offers, and the one decision of `workspace.create`: which spec a caller gets.
 * Without `template` the `default` template applies (from `wsup serve --image/--cmd/--ami...` unless the
 * config names its own). A raw spec reaches here only from an admin (the method's param table says so).
 */
import { PolicyError } from '../errors.ts';
import { roleAtLeast, type Role } from '../protocol/index.ts';
import { compileTemplate, resolveTemplate, type Template } from './template.ts';
import type { WsupConfig } from './schema.ts';

export const DEFAULT_TEMPLATE = 'default';

export interface CreateRequest {
  template?: string | undefined;
  params?: Record<string, unknown> | undefined;
  spec?: Record<string, unknown> | undefined;
}

export class TemplateSet {
  private readonly byName: ReadonlyMap<string, Template>;

  constructor(templates: Iterable<Template>) {
    this.byName = new Map([...templates].map((t) => [t.name, t]));
  }

  /** The config's templates, plus `fallback` as `default` when the config has none of that name. */
  static fromConfig(config: WsupConfig, fallback: Template): TemplateSet {
    const compiled = Object.entries(config.templates).map(([name, t]) => compileTemplate(name, t));
    return new TemplateSet(compiled.some((t) => t.name === DEFAULT_TEMPLATE) ? compiled : [fallback, ...compiled]);
  }

  get names(): string[] {
    return [...this.byName.keys()];
  }

  get(name: string): Template | undefined {
    return this.byName.get(name);
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
    const name = req.template ?? DEFAULT_TEMPLATE;
    const t = this.byName.get(name);
    if (t === undefined) throw new PolicyError('template', `no template ${name} (templates: ${this.names.join(', ') || 'none'})`, id);
    if (!roleAtLeast(role, t.role)) throw new PolicyError('template', `template ${name} is for role ${t.role}`, id);
    return resolveTemplate(t, req.params, id);
  }
}

/** The `default` template of a server started without a config: the provider's defaults, no parameters. */
export function providerDefaultTemplate(provider: string | null, base: Record<string, unknown> = {}): Template {
  return { name: DEFAULT_TEMPLATE, provider, role: 'operator', base, params: {} };
}
