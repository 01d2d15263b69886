/**
 * Host paths a docker bind mount may use. A source is judged after normalisation (`/srv/a/../../etc` is
 * `/etc`) and after resolving the symlinks of its deepest existing ancestor (a link under an allowed root
 * that points at `/` is the target it points at, whatever follows it). The engine's own socket is never mountable: it is root on the host.
 */
import { realpathSync } from 'node:fs';
import { posix } from 'node:path';

/** Where dockerd listens on this host: the default sockets and DOCKER_HOST when it is a unix socket. */
export function dockerSockets(env: NodeJS.ProcessEnv = process.env): string[] {
  const out = ['/var/run/docker.sock', '/run/docker.sock'];
  const host = env.DOCKER_HOST;
  if (host?.startsWith('unix://')) out.push(posix.normalize(host.slice('unix://'.length)));
  return out;
}

/** `child` is `parent` or inside it (both normalised absolute paths). */
export function isWithin(child: string, parent: string): boolean {
  return parent === '/' || child === parent || child.startsWith(`${parent}/`);
}

/**
 * The path the engine would mount: normalised, then with symlinks resolved in its deepest existing
 * ancestor (a link to `/` followed by a name that does not exist yet is still under `/`).
 */
function effective(path: string): string[] {
  const normal = posix.normalize(path).replace(/(.)\/$/, '$1');
  for (let dir = normal, rest = ''; ; ) {
    try {
      return [normal, posix.join(realpathSync(dir), rest)];
    } catch {
      if (dir === '/') return [normal];
      rest = posix.join(posix.basename(dir), rest);
      dir = posix.dirname(dir);
    }
  }
}

/** Why `source` may not be bind-mounted under `roots`, or null when it may. */
export function bindSourceProblem(source: string, roots: readonly string[]): string | null {
  if (!source.startsWith('/')) return 'must be a volume name or under an allowed root (a bind source is an absolute path)';
  if (source.includes('\0')) return 'must not contain NUL';
  const candidates = effective(source);
  for (const p of candidates) {
    if (p === '/') return 'must not be the host root';
    if (dockerSockets().some((s) => isWithin(s, p))) return 'must not be or contain the docker socket';
    if (!roots.some((r) => effective(r).some((root) => isWithin(p, root)))) return 'must be a volume name or under an allowed root';
  }
  return null;
}

/** Why `root` cannot be an allowed bind root, or null. */
export function bindRootProblem(root: string): string | null {
  if (!root.startsWith('/')) return 'must be an absolute path';
  if (posix.normalize(root) !== root || (root.length > 1 && root.endsWith('/'))) return `must be written normalised (${posix.normalize(root).replace(/(.)\/$/, '$1')})`;
  // A root that is (or sits under) a symlink is judged where it leads: a link to `/` would allow everything.
  for (const p of effective(root)) {
    if (p === '/') return 'must not be the host root';
    if (dockerSockets().some((s) => isWithin(s, p))) return 'must not contain the docker socket';
  }
  return null;
}
