/**
 * Skip-or-fail for suites that need a real component (dockerd, PostgreSQL, chromium...).
 *
 * On a bare machine a missing component skips its suite and says why, so `npm test` stays useful.
 * Under `.ci/run` (`WSUP_REQUIRE_ALL=1`) every component is supposed to be up, so a missing one is a
 * CI failure, never a silent skip.
 *
 * @example
 * const dockerUp = await pingDocker();
 * const run = requireComponent('docker', dockerUp, 'DOCKER_HOST is not set: source .ci/components/10-docker.sh');
 * describe.runIf(run)('docker provider', () => { ... });
 */

export class MissingComponentError extends Error {
  readonly code = 'WSUP_MISSING_COMPONENT';
  constructor(name: string, why: string) {
    super(`required component ${name} is unavailable under WSUP_REQUIRE_ALL=1: ${why}`);
    this.name = 'MissingComponentError';
  }
}

/** True when the suite should run; logs and returns false to skip; throws under WSUP_REQUIRE_ALL=1. */
export function requireComponent(name: string, available: boolean, why: string): boolean {
  if (available) return true;
  if (process.env.WSUP_REQUIRE_ALL === '1') throw new MissingComponentError(name, why);
  console.warn(`[wsup tests] skipping ${name} suite: ${why}`);
  return false;
}
