/**
 * The migration list itself: the runner applies the first version above the highest one a database has,
 * so a version that appears below one already released (two branches merged out of order) would never
 * run on a database that has the higher one. Versions are 1..N, each once, in order.
 */
import { expect, it } from 'vitest';
import { LATEST_SCHEMA_VERSION, MIGRATIONS } from '../../src/store/migrations.ts';

it('numbers the migrations 1..N without a gap or a repeat, in order', () => {
  expect(MIGRATIONS.map((m) => m.version)).toEqual(Array.from({ length: MIGRATIONS.length }, (_, i) => i + 1));
  expect(LATEST_SCHEMA_VERSION).toBe(MIGRATIONS.length);
  expect(new Set(MIGRATIONS.map((m) => m.name)).size).toBe(MIGRATIONS.length);
});
