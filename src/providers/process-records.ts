/**
 * Where the local-process provider records its children: one record per workspace (pid, kernel start time,
 * nonce, port, command), written before the fork so no crash leaves an unrecorded child.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { WsupError } from '../errors.ts';

const recordSchema = z.object({
  id: z.string(),
  /** 0 while the spawn is pending: the record is written before the fork, so a crash cannot leak a child. */
  pid: z.number().int().nonnegative(),
  /** Kernel start time of the pid (/proc/<pid>/stat field 22), `null` where /proc is unavailable. */
  startTime: z.string().nullable(),
  /** Random per spawn, echoed by the agent's /healthz: tells our process from a reused pid or port. */
  nonce: z.string(),
  port: z.number().int(),
  host: z.string(),
  command: z.array(z.string()),
  specHash: z.string(),
  startedAt: z.number(),
  logPath: z.string(),
});
export type ProcessRecord = z.infer<typeof recordSchema>;

/** Validate a record read from any `ProcessRecords` backend; `where` names it in the error. */
export function parseProcessRecord(id: string, data: unknown, where: string): ProcessRecord {
  const parsed = recordSchema.safeParse(data);
  if (!parsed.success) throw new WsupError('WSUP_CORRUPT_STATE', `process record ${where} is invalid (${parsed.error.message}): delete it and stop the process by hand`, { workspaceId: id });
  return parsed.data;
}

/** Where process records live: JSON files by default; the supervisor may back it with its store. */
export interface ProcessRecords {
  get(id: string): Promise<ProcessRecord | null>;
  put(id: string, rec: ProcessRecord): Promise<void>;
  delete(id: string): Promise<void>;
  all(): Promise<ProcessRecord[]>;
}

/** One `<dir>/<id>.json` per workspace, written atomically (temp file + rename) so a crash never leaves half a record. */
export class JsonFileProcessRecords implements ProcessRecords {
  constructor(readonly dir: string) {}

  async get(id: string): Promise<ProcessRecord | null> {
    let text: string;
    try {
      text = await readFile(this.file(id), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
    return parseProcessRecord(id, JSON.parse(text), this.file(id));
  }

  async put(id: string, rec: ProcessRecord): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    const tmp = `${this.file(id)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
    await writeFile(tmp, JSON.stringify(rec, null, 2), { mode: 0o600 });
    await rename(tmp, this.file(id));
  }

  async delete(id: string): Promise<void> {
    await rm(this.file(id), { force: true });
  }

  async all(): Promise<ProcessRecord[]> {
    const names = await readdir(this.dir).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return [];
      throw err;
    });
    const recs = await Promise.all(names.filter((n) => n.endsWith('.json')).map((n) => this.get(n.slice(0, -5))));
    return recs.filter((r): r is ProcessRecord => r !== null);
  }

  private file(id: string): string {
    return join(this.dir, `${id}.json`);
  }
}
