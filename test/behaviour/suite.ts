/**
 * One behaviour suite, two targets: `behaviour(title, opts, body)` runs `body` against one `wsup serve`
 * and against a 3-replica `wsup serve --cluster` (skipped, with the reason, without PostgreSQL).
 *
 * @example
 * behaviour('workspaces', {}, (target) => {
 *   it('restarts', async () => { await target().client().call('workspace.ensure', { id: 'a' }); });
 * });
 */
import { afterAll, beforeAll, describe } from 'vitest';
import { describeWith, postgresUrl } from '../helpers/require.ts';
import { Target, type TargetKind } from './target.ts';

export function behaviour(title: string, opts: { flags?: string[] }, body: (target: () => Target) => void): void {
  const url = postgresUrl();
  const run = (kind: TargetKind, base: string | null) => {
    let t: Target | null = null;
    beforeAll(async () => {
      t = await Target.start(kind, { url: base, ...opts });
    }, 120_000);
    afterAll(async () => {
      await t?.dispose();
    }, 60_000);
    body(() => {
      if (!t) throw new Error(`the ${kind} target did not start`);
      return t;
    });
  };
  describe(`${title} (one node)`, () => run('node', url));
  describeWith(url, `${title} (3-replica cluster)`, (u) => run('cluster', u));
}
