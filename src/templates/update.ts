/**
 * Moving a workspace onto its template's current version: `workspace.update` (re-render, store, restart
 * now) and `autoUpdate: 'on-start'` (re-render and store just before a provider start). Both replay the
 * params the workspace was created with (`wsupParams`) through the template's current rules, so a param
 * the new version no longer allows is refused by name, never passed on.
 *
 * Written against the little they need of a supervisor (structural types), so templates import no layer
 * above them.
 *
 * @example
 * const auto = new AutoUpdate(templates, { onError: (err, ctx) => logger.warn({ err, ...ctx }, ctx.what) });
 * const rt = await buildRuntime({ ..., prepareSpec: auto.prepareSpec });
 * auto.attach(rt.supervisor);
 * await updateWorkspace(rt.supervisor, templates, 'ws-1', { requester: 'rpc:alice', role: 'operator' });
 */
import { errorMessage } from '../errors.ts';
import type { LifecycleState, Outcome, Policy, Role } from '../protocol/index.ts';
import { isPlainRecord } from './params.ts';
import { templateStamp, type TemplateSet } from './set.ts';

type MaybeAsync<T> = T | Promise<T>;
type Spec = Record<string, unknown>;
/** A spec as a provider start gets it: with the workspace's id. */
type RunSpec = { id: string; [k: string]: unknown };

export interface UpdateAnswer {
  id: string;
  outcome: Outcome;
  cycle: number | null;
  state: LifecycleState;
}

/** What storing a new spec needs: the supervisor's `create` (an existing workspace's spec, used from its next start). */
export interface SpecTarget {
  create(id: string, spec: Spec): Promise<unknown>;
}

export interface UpdateTarget extends SpecTarget {
  get(id: string): MaybeAsync<{ spec: Spec }>;
  restart(id: string, opts: { source: 'manual'; reason: string; requester: string; requestId?: string }): Promise<UpdateAnswer>;
  /** A restart with source `update`, when the backend has one (the local supervisor does). */
  update?(id: string, opts: { reason: string; requester: string; requestId?: string }): Promise<UpdateAnswer>;
}

/**
 * `workspace.update`: render the workspace's spec again from its template's current version, store it, then
 * restart onto it. `role` is the caller's: it must still be allowed the template.
 */
export async function updateWorkspace(target: UpdateTarget, templates: TemplateSet, id: string, opts: { requester: string; role: Role; requestId?: string | undefined }): Promise<UpdateAnswer> {
  const { spec: old } = await target.get(id);
  const spec = templates.rerender(old, id, opts.role);
  await target.create(id, spec);
  const who = opts.requestId === undefined ? { requester: opts.requester } : { requester: opts.requester, requestId: opts.requestId };
  const r = await restartForUpdate(target, id, who, updateReason(old, spec));
  return { id: r.id, outcome: r.outcome, cycle: r.cycle, state: r.state };
}

/**
 * The restart half of an update: a restart with source `update` where the backend has one; otherwise (a
 * cluster replica) a manual restart with a reason naming the update. Never programmatic: an operator asked
 * for it, so it must not wait out the self-fire window like an automatic one.
 */
function restartForUpdate(target: UpdateTarget, id: string, who: { requester: string; requestId?: string }, reason: string): Promise<UpdateAnswer> {
  return target.update ? target.update(id, { reason, ...who }) : target.restart(id, { source: 'manual', reason, ...who });
}

function updateReason(old: Spec, spec: Spec): string {
  const from = templateStamp(old);
  const to = templateStamp(spec);
  return `update to template ${to?.name ?? '?'} version ${to?.version ?? '?'}${from && from.version !== to?.version ? ` (from ${from.version})` : ''}`;
}

export type AutoUpdateSetting = Policy['autoUpdate'];

/**
 * The `autoUpdate` that applies to a spec, read from its layers as the supervisor merges them: the
 * workspace's own (`wsupPolicy`) over its template's (`wsupPolicyDefaults`) over the server default.
 */
export function autoUpdateOf(spec: Spec, serverDefault: AutoUpdateSetting = null): AutoUpdateSetting {
  for (const layer of [spec.wsupPolicy, spec.wsupPolicyDefaults]) {
    if (!isPlainRecord(layer) || !('autoUpdate' in layer) || layer.autoUpdate === undefined) continue;
    const v = layer.autoUpdate;
    return v === 'on-start' || v === 'never' ? v : null;
  }
  return serverDefault;
}

export interface AutoUpdateOptions {
  /** The server's default `autoUpdate` (null: off). */
  serverDefault?: () => AutoUpdateSetting;
  /** A re-render that could not be done (the start goes ahead on the stored spec); never thrown. */
  onError?: (err: unknown, context: { id: string; what: string }) => void;
}

/**
 * `autoUpdate: 'on-start'` as a `prepareSpec` hook, run before every provider start. An outdated workspace
 * that opted in is rendered from its template's current version and the new spec is stored (so the view
 * and the store show what runs) before the provider sees it. When the re-render is refused (a param the
 * new version does not allow) the start goes ahead on the stored spec, the workspace stays `outdated`, and
 * `onError` says why: a template change must not keep a workspace from starting.
 */
export class AutoUpdate {
  private target: SpecTarget | null = null;

  constructor(
    private readonly templates: TemplateSet,
    private readonly opts: AutoUpdateOptions = {},
  ) {}

  /** Where re-rendered specs are stored; starts before this (a start resumed by recovery) keep their spec. */
  attach(target: SpecTarget): void {
    this.target = target;
  }

  readonly prepareSpec = async (input: { id: string; spec: RunSpec }): Promise<RunSpec> => {
    const { id, spec } = input;
    const target = this.target;
    if (target === null || this.templates.outdated(spec) !== true) return spec;
    if (autoUpdateOf(spec, this.opts.serverDefault?.() ?? null) !== 'on-start') return spec;
    try {
      const fresh = this.templates.rerender(spec, id);
      await target.create(id, fresh);
      return { ...fresh, id };
    } catch (err) {
      this.report(err, id);
      return spec;
    }
  };

  private report(err: unknown, id: string): void {
    try {
      this.opts.onError?.(err, { id, what: `auto-update to the template's current version refused, starting on the stored spec: ${errorMessage(err)}` });
    } catch {
      // a throwing reporter must not fail the start
    }
  }
}
