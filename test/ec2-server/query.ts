/**
 * EC2 Query-API parameters: the flat, 1-based `Name.N.Sub.M` form encoding the SDK sends, turned back into
 * lists, plus the DescribeInstances filters this server understands.
 */
import { Ec2ApiError, type Instance } from './model.ts';

export type Params = Map<string, string>;

export function parseForm(body: string): Params {
  return new Map(new URLSearchParams(body).entries());
}

/** `InstanceId.1`, `InstanceId.2`...: EC2 lists are 1-based and end at the first gap. */
export function list(params: Params, prefix: string): string[] {
  const out: string[] = [];
  for (let i = 1; params.has(`${prefix}.${i}`); i++) out.push(params.get(`${prefix}.${i}`)!);
  return out;
}

/** Indices N for which some `prefix.N.*` key exists, in order. */
function indices(params: Params, prefix: string): number[] {
  const out: number[] = [];
  for (let i = 1; [...params.keys()].some((k) => k.startsWith(`${prefix}.${i}.`)); i++) out.push(i);
  return out;
}

export function required(params: Params, name: string): string {
  const v = params.get(name);
  if (v === undefined || v === '') throw new Ec2ApiError('MissingParameter', `The request must contain the parameter ${name}`);
  return v;
}

/** Tags for `instance` resources from `TagSpecification.N.ResourceType` / `.Tag.M.Key|Value`. */
export function instanceTags(params: Params): Map<string, string> {
  const tags = new Map<string, string>();
  for (const n of indices(params, 'TagSpecification')) {
    const base = `TagSpecification.${n}`;
    if (params.get(`${base}.ResourceType`) !== 'instance') continue;
    for (const m of indices(params, `${base}.Tag`)) {
      tags.set(required(params, `${base}.Tag.${m}.Key`), params.get(`${base}.Tag.${m}.Value`) ?? '');
    }
  }
  return tags;
}

/** `Tag.N.Key` / `Tag.N.Value` as CreateTags sends them. */
export function plainTags(params: Params): Map<string, string> {
  const tags = new Map<string, string>();
  for (const n of indices(params, 'Tag')) tags.set(required(params, `Tag.${n}.Key`), params.get(`Tag.${n}.Value`) ?? '');
  return tags;
}

export interface Filter {
  name: string;
  values: string[];
}

export function filters(params: Params): Filter[] {
  return indices(params, 'Filter').map((n) => ({
    name: required(params, `Filter.${n}.Name`),
    values: list(params, `Filter.${n}.Value`),
  }));
}

/** EC2 filter values allow `*` and `?` wildcards. */
function globMatch(pattern: string, value: string): boolean {
  const re = pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${re}$`).test(value);
}

/** Filters AND together; the values of one filter OR together, as in EC2. */
export function matches(inst: Instance, fs: Filter[]): boolean {
  return fs.every((f) => {
    const any = (v: string | undefined): boolean => v !== undefined && f.values.some((p) => globMatch(p, v));
    if (f.name === 'instance-state-name') return any(inst.state);
    if (f.name === 'instance-id') return any(inst.instanceId);
    if (f.name === 'client-token') return any(inst.clientToken);
    if (f.name === 'tag-key') return [...inst.tags.keys()].some((k) => any(k));
    if (f.name.startsWith('tag:')) return any(inst.tags.get(f.name.slice(4)));
    throw new Ec2ApiError('InvalidParameterValue', `The filter '${f.name}' is invalid`);
  });
}
