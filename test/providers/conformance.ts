/**
 * The provider conformance suite: the `Provider` contract (src/providers/types.ts) checked against a real
 * backend. Every provider's test file calls it once:
 *
 * @example
 * describeProviderConformance('docker', () => createDockerProvider({ defaultSpec: { image } }), {
 *   skip: !run,
 *   createForeign: async (id) => { ...create an unlabelled container...; return () => remove() },
 * });
 *
 * Each test uses fresh workspace ids and `afterAll` stops every id it touched, so the suite leaves nothing
 * running even when an assertion fails half-way.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Provider, ProviderResource, WorkspaceSpec } from '../../src/providers/types.ts';

export interface ConformanceOptions {
  /** Skip the whole suite (decide with `requireComponent`). */
  skip?: boolean;
  /** The spec for a workspace id; default `{ id }` (the provider's defaultSpec fills the rest). */
  spec?: (id: string) => WorkspaceSpec;
  /** Prefix of generated workspace ids; keep it short, ids are at most 63 chars. Default `conf`. */
  idPrefix?: string;
  /**
   * Create a resource of the same kind that wsup does not own (an unlabelled container, a process with no
   * record...). Returns the name a naive `list` might report it under, and a cleanup function.
   */
  createForeign?: (id: string) => Promise<{ cleanup: () => Promise<void> }>;
  /** Per-test timeout in ms. Default 60 000. */
  timeoutMs?: number;
  /** Called once after the suite, after every workspace was stopped (e.g. to assert no leaks). */
  afterSuite?: (provider: Provider) => Promise<void>;
}

const aborted = (): AbortSignal => AbortSignal.abort(new Error('conformance: aborted on purpose'));
const never = (): AbortSignal => new AbortController().signal;

/** Live resources of one workspace id: the contract says at most one, whatever happened. */
const mine = (all: ProviderResource[], id: string) => all.filter((r) => r.id === id && r.status !== 'absent');
/** `null` is the contract's answer for "no resource"; a provider that keeps tombstones may say `absent`. */
const gone = (r: ProviderResource | null): boolean => r === null || r.status === 'absent';

export function describeProviderConformance(
  name: string,
  makeProvider: () => Provider | Promise<Provider>,
  opts: ConformanceOptions = {},
): void {
  const timeout = opts.timeoutMs ?? 60_000;
  const specOf = opts.spec ?? ((id: string) => ({ id }));
  const used = new Set<string>();
  const freshId = (label: string): string => {
    const id = `${opts.idPrefix ?? 'conf'}-${label}-${randomBytes(3).toString('hex')}`;
    used.add(id);
    return id;
  };

  describe.skipIf(opts.skip === true)(`${name} provider conformance`, () => {
    let provider: Provider;

    beforeAll(async () => {
      provider = await makeProvider();
    });

    afterAll(async () => {
      if (provider === undefined) return;
      const failures: unknown[] = [];
      for (const id of used) await provider.stop(id, never()).catch((e: unknown) => failures.push(e));
      if (opts.afterSuite) await opts.afterSuite(provider);
      await provider.close?.();
      expect(failures).toEqual([]);
    }, timeout * 2);

    describe('start', () => {
      it('returns the same endpoint when called twice and keeps one resource', async () => {
        const id = freshId('idem');
        const first = await provider.start(specOf(id), never());
        const second = await provider.start(specOf(id), never());
        expect(second).toBe(first);
        expect(mine(await provider.list(), id)).toHaveLength(1);
        const seen = await provider.inspect(id);
        expect(seen?.status).toBe('running');
        expect(seen?.endpoint).toBe(first);
      }, timeout);
    });

    describe('stop', () => {
      it('succeeds for a workspace that never existed', async () => {
        const id = freshId('absent');
        await expect(provider.stop(id, never())).resolves.toBeUndefined();
        expect(gone(await provider.inspect(id))).toBe(true);
      }, timeout);

      it('succeeds when called twice after a start', async () => {
        const id = freshId('stop2');
        await provider.start(specOf(id), never());
        await provider.stop(id, never());
        await expect(provider.stop(id, never())).resolves.toBeUndefined();
        expect(mine(await provider.list(), id)).toEqual([]);
      }, timeout);
    });

    describe('inspect', () => {
      it('reports nothing before start, running after start and nothing after stop', async () => {
        const id = freshId('insp');
        expect(gone(await provider.inspect(id))).toBe(true);
        const endpoint = await provider.start(specOf(id), never());
        const running = await provider.inspect(id);
        expect(running).toMatchObject({ id, status: 'running', endpoint });
        await provider.stop(id, never());
        expect(gone(await provider.inspect(id))).toBe(true);
      }, timeout);
    });

    describe('list', () => {
      it('finds our running workspaces and none that wsup does not own', async () => {
        const id = freshId('list');
        const foreignId = freshId('foreign');
        await provider.start(specOf(id), never());
        const foreign = await opts.createForeign?.(foreignId);
        try {
          const all = await provider.list();
          expect(mine(all, id)).toHaveLength(1);
          expect(mine(all, foreignId)).toEqual([]);
          expect(gone(await provider.inspect(foreignId))).toBe(true);
        } finally {
          await foreign?.cleanup();
        }
      }, timeout);
    });

    describe('abort', () => {
      it('rejects a start whose signal is already aborted and creates nothing a later start cannot adopt', async () => {
        const id = freshId('abrt');
        await expect(provider.start(specOf(id), aborted())).rejects.toThrow();
        const endpoint = await provider.start(specOf(id), never());
        expect(mine(await provider.list(), id)).toHaveLength(1);
        expect((await provider.inspect(id))?.endpoint).toBe(endpoint);
      }, timeout);

      it('leaves a start aborted mid-flight convergent: the next start runs exactly one resource', async () => {
        const id = freshId('mid');
        const ac = new AbortController();
        const first = provider.start(specOf(id), ac.signal);
        // Abort once the call has had a chance to reach the backend (create sent, spawn done...).
        setImmediate(() => ac.abort(new Error('conformance: aborted mid-flight')));
        const outcome = await first.then(
          () => 'resolved' as const,
          (e: unknown) => e,
        );
        if (outcome !== 'resolved') expect(outcome).toBeInstanceOf(Error);
        const endpoint = await provider.start(specOf(id), never());
        expect(mine(await provider.list(), id)).toHaveLength(1);
        expect(await provider.inspect(id)).toMatchObject({ status: 'running', endpoint });
        await provider.stop(id, never());
        expect(mine(await provider.list(), id)).toEqual([]);
      }, timeout);

      it('rejects a stop whose signal is already aborted, and a later stop still succeeds', async () => {
        const id = freshId('abstop');
        await provider.start(specOf(id), never());
        await expect(provider.stop(id, aborted())).rejects.toThrow();
        await provider.stop(id, never());
        expect(gone(await provider.inspect(id))).toBe(true);
      }, timeout);
    });
  });
}
