/**
 * The agent's memory of the reinits it has already yielded, keyed by `(ownerId, claimBuildId)`. With a
 * state file it survives the agent's own restarts (an agent that re-execs itself on reinit must not
 * reinitialize again when the server re-sends an event it had not yet seen acknowledged).
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';

export interface ReinitLedger {
  has(ownerId: string, claimBuildId: string): boolean;
  /** Resolves once the entry is durable (written and renamed into place, for the file ledger). */
  add(ownerId: string, claimBuildId: string): Promise<void>;
}

interface Entry {
  ownerId: string;
  claimBuildId: string;
  at: number;
}

/** Entries kept: a workspace is claimed once, so this is generous. */
const MAX_ENTRIES = 256;
const key = (ownerId: string, claimBuildId: string) => `${ownerId}\u0000${claimBuildId}`;

export function memoryLedger(): ReinitLedger {
  const seen = new Set<string>();
  return {
    has: (o, b) => seen.has(key(o, b)),
    add: async (o, b) => void seen.add(key(o, b)),
  };
}

/** A ledger in `path` (JSON, replaced atomically). A missing file is an empty ledger; an unreadable one is an error. */
export async function fileLedger(path: string, now: () => number = Date.now): Promise<ReinitLedger> {
  let entries: Entry[] = [];
  try {
    const parsed = JSON.parse(await readFile(path, 'utf8')) as { version?: unknown; seen?: unknown };
    if (parsed.version !== 1 || !Array.isArray(parsed.seen)) throw new Error('not a wsup agent state file (version 1)');
    entries = (parsed.seen as Entry[]).filter((e) => typeof e?.ownerId === 'string' && typeof e.claimBuildId === 'string');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new Error(`agent state file ${path} is unreadable (${(err as Error).message}): fix or delete it`, { cause: err });
    }
  }
  const seen = new Set(entries.map((e) => key(e.ownerId, e.claimBuildId)));
  return {
    has: (o, b) => seen.has(key(o, b)),
    async add(ownerId, claimBuildId) {
      if (seen.has(key(ownerId, claimBuildId))) return;
      entries = [...entries, { ownerId, claimBuildId, at: now() }].slice(-MAX_ENTRIES);
      await mkdir(dirname(path), { recursive: true });
      const tmp = `${path}.${randomBytes(4).toString('hex')}.tmp`;
      await writeFile(tmp, JSON.stringify({ version: 1, seen: entries }), { mode: 0o600 });
      await rename(tmp, path);
      seen.add(key(ownerId, claimBuildId));
    },
  };
}
