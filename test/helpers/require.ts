/**
 * Skip-or-fail for suites that need a real component: PostgreSQL, dockerd, Chromium. Every such suite
 * asks here, and nowhere else.
 *
 * On a bare machine a missing component skips its suite and says why (one line on stderr, naming the
 * component, what is missing and which `.ci/components/` script provides it), so `npm test` stays useful.
 * Under `.ci/run` (`WSUP_REQUIRE_ALL=1`) every component is supposed to be up, so a missing one fails
 * the file instead of skipping it.
 *
 * A skipped suite's body is never run: vitest runs a `describe.skipIf` body while collecting, so a body
 * that reads the component's URL or path would throw there. `describeWith` passes the value in instead.
 *
 * @example
 * const url = postgresUrl();
 * describeWith(url, 'store on PostgreSQL', (url) => { ... });
 */
import { accessSync, constants, statSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import Docker from 'dockerode';
import { describe } from 'vitest';
import { dockerUnavailable } from '../../src/providers/docker.ts';
import { isPostgresUrl } from '../../src/store/engine.ts';

export class MissingComponentError extends Error {
  readonly code = 'WSUP_MISSING_COMPONENT';
  constructor(reason: string) {
    super(`required component unavailable under WSUP_REQUIRE_ALL=1: ${reason}`);
    this.name = 'MissingComponentError';
  }
}

/**
 * True when the component is there (`why` is null). Otherwise prints why and returns false to skip, or
 * throws under WSUP_REQUIRE_ALL=1.
 */
export function requireComponent(name: string, why: string | null): boolean {
  if (why === null) return true;
  const reason = `${name}: ${why}`;
  if (process.env.WSUP_REQUIRE_ALL === '1') throw new MissingComponentError(reason);
  console.warn(`[wsup tests] skipping, ${reason}`);
  return false;
}

/** The PostgreSQL to test against (`DATABASE_URL`), or null when there is none. */
export function postgresUrl(): string | null {
  const url = process.env.DATABASE_URL;
  const why = !url
    ? 'DATABASE_URL not set — .ci/components/20-postgres.sh starts one'
    : !isPostgresUrl(url)
      ? 'DATABASE_URL is not a postgres:// url — .ci/components/20-postgres.sh exports one'
      : null;
  return requireComponent('PostgreSQL', why) ? (url ?? null) : null;
}

/** The dockerd to test against (`DOCKER_HOST`), answering and holding `image`, or null. */
export async function dockerHost(image: string): Promise<string | null> {
  const host = process.env.DOCKER_HOST;
  const why = host
    ? await dockerUnavailable(new Docker(), image)
    : `DOCKER_HOST not set — .ci/components/10-docker.sh starts dockerd and imports ${image}`;
  return requireComponent('dockerd', why) ? (host ?? null) : null;
}

const CHROMIUM_NAMES = ['chromium', 'chromium-browser'];

function executable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

/**
 * The Chromium binary: `WSUP_CHROMIUM` when set (set it empty to test as if there were none), else the
 * first `chromium` or `chromium-browser` on PATH. Null when there is none.
 */
export function chromiumPath(): string | null {
  const override = process.env.WSUP_CHROMIUM;
  let found: string | null = null;
  let why: string | null;
  if (override !== undefined) {
    if (override !== '' && executable(override)) found = override;
    why = found
      ? null
      : override === ''
        ? 'WSUP_CHROMIUM is empty, so no browser is used — unset it to look for chromium on PATH'
        : `WSUP_CHROMIUM=${override} is not an executable file — .ci/components/30-chromium.sh installs chromium`;
  } else {
    const dirs = (process.env.PATH ?? '').split(delimiter).filter((d) => d !== '');
    found = dirs.flatMap((d) => CHROMIUM_NAMES.map((n) => join(d, n))).find(executable) ?? null;
    why = found ? null : 'no chromium on PATH (nor WSUP_CHROMIUM set) — .ci/components/30-chromium.sh installs one';
  }
  return requireComponent('Chromium', why) ? found : null;
}

/**
 * `describe(title, () => body(value))` when the component is there; a skipped, empty `describe` when
 * `value` is null, whose body is never run.
 */
export function describeWith<T>(value: T | null, title: string, body: (value: T) => void): void {
  if (value === null) describe.skip(title, () => undefined);
  else describe(title, () => body(value));
}
