/** The line protocol between the crash test and its supervisor child (test/crash/child.ts). */

/** Supervisor commands, then read-only probes of the store (`row`, `events`, `records`) for the final checks. */
export type ChildOp = 'create' | 'setPolicy' | 'ensure' | 'restart' | 'stop' | 'destroy' | 'get' | 'list' | 'row' | 'events' | 'records';

export interface ChildCommand {
  seq: number;
  op: ChildOp;
  id: string;
  /** For `restart`: the restart source (`manual`, `programmatic`, `file-write`, `claim`). */
  source?: string;
  /** For `create`: the spec (its `wsupPolicy` is the workspace's own policy). */
  spec?: Record<string, unknown>;
  /** For `setPolicy`: the workspace's own policy layer. */
  policy?: Record<string, unknown>;
}

export type ChildReply =
  | { seq: number; ok: true; result: unknown }
  | { seq: number; ok: false; error: { code: string; message: string } };
