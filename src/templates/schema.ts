/**
 * The `wsup serve --config` file: named templates per provider, each with the fields it fixes and the
 * parameters an operator may set (with their rules). Checked whole at startup; every refusal names its
 * path, e.g. `templates.web.docker.mounts[0].source: must be a volume name or under an allowed root`.
 *
 * Host-equivalent settings (host or another container's network, loader environment keys) are allowed
 * only in a template with `role: "admin"`, and never as an operator parameter.
 */
import { z } from 'zod';
import { ENV_KEY, loaderEnvReason } from './loader-env.ts';
import { bindRootProblem, bindSourceProblem } from './paths.ts';
import { templatePolicySchema } from './policy.ts';

/** Template names appear in specs, logs and CLI flags. */
export const TEMPLATE_NAME = /^[a-z0-9][a-z0-9_.-]{0,62}$/;
/** A docker image reference: `[registry/]name[:tag][@digest]`, nothing a shell or URL would read differently. */
export const IMAGE_REF = /^[a-z0-9][a-z0-9._/:@-]{0,254}$/i;
/** A docker volume name. */
export const VOLUME_NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$/;

const str = z.string().min(1).max(4096);
const envMap = z.record(z.string(), z.string().max(65_536));
/** Allowed values of a string parameter: exact `values`, glob `patterns` (see glob.ts), or both. */
const choice = z
  .strictObject({ values: z.array(str).min(1).optional(), patterns: z.array(str).min(1).optional() })
  .refine((c) => c.values !== undefined || c.patterns !== undefined, { message: 'give values, patterns or both' });
/** Environment keys an operator may set, and (optionally) what their values may be. */
const envParam = z.strictObject({
  keys: z.array(z.string()).min(1),
  values: z.array(z.string()).min(1).optional(),
  patterns: z.array(z.string()).min(1).optional(),
});
const mount = z.strictObject({
  source: z.string(),
  target: z.string().min(1),
  type: z.enum(['bind', 'volume', 'tmpfs']).optional(),
  readOnly: z.boolean().optional(),
});
const mountParam = z.strictObject({
  /** Volume names (globs) an operator may mount. */
  volumes: z.array(str).optional(),
  /** Whether an operator may add bind mounts (sources under `docker.bindRoots`). */
  bind: z.boolean().optional(),
  tmpfs: z.boolean().optional(),
  /** Force every operator mount read-only. */
  readOnly: z.boolean().optional(),
  max: z.number().int().min(1).max(64).optional(),
});
const role = z.enum(['operator', 'admin']).optional();
/** What every template may have, whatever its provider. */
const common = {
  role,
  description: z.string().optional(),
  /** Lifecycle defaults of its workspaces (over the server's, under each workspace's own). */
  policy: templatePolicySchema.optional(),
  /** At most this many of its workspaces running at once (a quota). */
  maxRunning: z.number().int('must be a whole number').min(1, 'must be at least 1').optional(),
};
const positive = z.number().int().positive();
/** Engine limits a template fixes. */
const resources = z.strictObject({ memoryBytes: positive.optional(), nanoCpus: positive.optional(), pidsLimit: positive.optional() });
/** What an operator may ask for: each limit up to its maximum; a limit without a maximum cannot be set. */
const resourcesParam = z
  .strictObject({ maxMemoryBytes: positive.optional(), maxNanoCpus: positive.optional(), maxPidsLimit: positive.optional() })
  .refine((r) => Object.keys(r).length > 0, { message: 'give at least one of maxMemoryBytes, maxNanoCpus, maxPidsLimit' });
const SECURITY_GROUP = /^sg-[0-9a-f]{1,32}$/;

const processTemplate = z.strictObject({
  provider: z.literal('process'),
  ...common,
  /** argv; unset: the built-in agent. Never an operator parameter. */
  process: z.strictObject({ command: z.array(z.string()).min(1).optional(), env: envMap.optional() }).optional(),
  params: z.strictObject({ env: envParam.optional() }).optional(),
});

const dockerTemplate = z.strictObject({
  provider: z.literal('docker'),
  ...common,
  docker: z
    .strictObject({
      image: z.string().regex(IMAGE_REF, 'must be an image reference').optional(),
      cmd: z.array(z.string()).min(1).optional(),
      env: envMap.optional(),
      mounts: z.array(mount).optional(),
      networkMode: z.string().min(1).optional(),
      resources: resources.optional(),
      /** Host directories bind sources must be under (after normalising and resolving symlinks). */
      bindRoots: z.array(z.string()).optional(),
    })
    .optional(),
  params: z
    .strictObject({
      image: choice.optional(),
      env: envParam.optional(),
      mounts: mountParam.optional(),
      networkMode: z.strictObject({ values: z.array(str).min(1) }).optional(),
      resources: resourcesParam.optional(),
    })
    .optional(),
});

const ec2Template = z.strictObject({
  provider: z.literal('ec2'),
  ...common,
  ec2: z
    .strictObject({
      ami: str.optional(),
      instanceType: str.optional(),
      subnetId: str.optional(),
      securityGroupIds: z.array(z.string().regex(SECURITY_GROUP, 'must be a security group id (sg-…)')).min(1).optional(),
    })
    .optional(),
  params: z
    .strictObject({
      ami: choice.optional(),
      instanceType: choice.optional(),
      subnetId: choice.optional(),
      /** Security groups an operator may pick from (a subset of these, at least one). */
      securityGroupIds: z.strictObject({ values: z.array(z.string().regex(SECURITY_GROUP, 'must be a security group id (sg-…)')).min(1) }).optional(),
    })
    .optional(),
});

const templateSchema = z.discriminatedUnion('provider', [processTemplate, dockerTemplate, ec2Template]);
export type TemplateConfig = z.infer<typeof templateSchema>;

export const configSchema = z.strictObject({ templates: z.record(z.string(), templateSchema) }).superRefine((cfg, ctx) => {
  for (const [name, t] of Object.entries(cfg.templates)) {
    const at = (...path: Array<string | number>) => ['templates', name, ...path];
    const fail = (message: string, ...path: Array<string | number>) => ctx.addIssue({ code: 'custom', path: at(...path), message });
    if (!TEMPLATE_NAME.test(name)) fail('template names are 1-63 chars of a-z, 0-9, _ . -');
    const admin = t.role === 'admin';
    if (t.provider !== 'ec2') checkEnvParam(t.params?.env, (m, ...p) => fail(m, 'params', 'env', ...p));
    const fixedEnv = t.provider === 'process' ? [t.process?.env, 'process'] as const : t.provider === 'docker' ? [t.docker?.env, 'docker'] as const : null;
    for (const key of Object.keys(fixedEnv?.[0] ?? {})) {
      if (!ENV_KEY.test(key)) fail('must be a letter or _ followed by letters, digits or _', fixedEnv![1], 'env', key);
      const why = loaderEnvReason(key);
      if (why !== null && !admin) fail(`${why}: only a template with role "admin" may set it`, fixedEnv![1], 'env', key);
    }
    if (t.provider !== 'docker') continue;
    const roots = t.docker?.bindRoots ?? [];
    roots.forEach((r, i) => {
      const why = bindRootProblem(r);
      if (why !== null) fail(why, 'docker', 'bindRoots', i);
    });
    (t.docker?.mounts ?? []).forEach((m, i) => {
      const why = mountProblem(m, roots);
      if (why !== null) fail(why.message, 'docker', 'mounts', i, why.field);
    });
    const net = t.docker?.networkMode;
    if (net !== undefined && sharesNamespace(net) && !admin) fail(`${net} shares a host or container namespace: only a template with role "admin" may use it`, 'docker', 'networkMode');
    (t.params?.networkMode?.values ?? []).forEach((v, i) => {
      if (sharesNamespace(v)) fail(`${v} shares a host or container namespace: never an operator parameter`, 'params', 'networkMode', 'values', i);
    });
    if (t.params?.mounts?.bind === true && roots.length === 0) fail('bind mounts need docker.bindRoots to be under', 'params', 'mounts', 'bind');
    (t.params?.mounts?.volumes ?? []).forEach((v, i) => {
      if (!/^[a-zA-Z0-9*][a-zA-Z0-9_.*-]*$/.test(v)) fail('must be a volume name or a glob of one', 'params', 'mounts', 'volumes', i);
    });
  }
});
export type WsupConfig = z.infer<typeof configSchema>;

/** Network modes that join the host's or another container's namespaces: host-equivalent or a side door. */
export function sharesNamespace(mode: string): boolean {
  const m = mode.toLowerCase();
  return m === 'host' || m.startsWith('container:') || m.startsWith('ns:');
}

function checkEnvParam(p: z.infer<typeof envParam> | undefined, fail: (message: string, ...path: Array<string | number>) => void): void {
  p?.keys.forEach((key, i) => {
    if (!ENV_KEY.test(key)) fail('must be a letter or _ followed by letters, digits or _', 'keys', i);
    const why = loaderEnvReason(key);
    if (why !== null) fail(`${why}: never an operator parameter`, 'keys', i);
  });
}

/** Why a docker mount is not allowed under `roots` (and which of its fields), or null. */
export function mountProblem(m: z.infer<typeof mount>, roots: readonly string[]): { field: 'source' | 'target'; message: string } | null {
  if (!m.target.startsWith('/')) return { field: 'target', message: 'must be an absolute path in the container' };
  const type = m.type ?? 'bind';
  if (type === 'tmpfs') return null;
  if (type === 'volume') return VOLUME_NAME.test(m.source) ? null : { field: 'source', message: 'must be a volume name' };
  const why = bindSourceProblem(m.source, roots);
  return why === null ? null : { field: 'source', message: why };
}
