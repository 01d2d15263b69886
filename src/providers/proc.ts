/**
 * Linux /proc helpers of the local-process provider: liveness by pid and kernel start time, and the set of
 * processes that belong to one workspace. Where /proc is missing they degrade to the pid check alone.
 */
import { readdirSync, readFileSync } from 'node:fs';

export interface ProcessIdentity {
  pid: number;
  /** Kernel start time (/proc/<pid>/stat field 22), `null` where /proc is unavailable. */
  startTime: string | null;
}

/** `/proc/<pid>/stat` fields after the command name: [0] state, [1] ppid, [3] session, [19] start time. */
export function procStat(pid: number): string[] | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return null;
  }
}

export function processStartTime(pid: number): string | null {
  return procStat(pid)?.[19] ?? null;
}

/** The recorded process, not merely its pid, is alive: a zombie or a reused pid counts as gone. */
export function isAlive(rec: ProcessIdentity): boolean {
  if (rec.pid <= 0) return false;
  try {
    process.kill(rec.pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  const stat = procStat(rec.pid);
  if (stat === null) return rec.startTime === null; // no /proc here: the pid check is all we have
  return stat[0] !== 'Z' && (rec.startTime === null || stat[19] === rec.startTime);
}

function pids(): number[] {
  try {
    return readdirSync('/proc').filter((e) => /^\d+$/.test(e)).map(Number);
  } catch {
    return [];
  }
}

function hasEnv(pid: number, marker: string): boolean {
  try {
    return readFileSync(`/proc/${pid}/environ`, 'latin1').split('\0').includes(marker);
  } catch {
    return false; // gone meanwhile, or not ours to read
  }
}

/** The first live process whose environment carries `marker` (`NAME=value`), or null. */
export function findByEnv(marker: string): number | null {
  for (const pid of pids()) if (hasEnv(pid, marker) && isAlive({ pid, startTime: null })) return pid;
  return null;
}

/**
 * Every live process of a workspace: its leader (when still the recorded process), every process in the
 * leader's session started after it, and every process whose environment carries `marker`. The marker is
 * inherited through fork, exec, setsid and double forks, so a grandchild that left the session and was
 * re-parented to init is still found; the session catches a descendant that cleared its environment.
 */
export function workspaceProcesses(leader: ProcessIdentity, marker: string): ProcessIdentity[] {
  const leaderStart = leader.startTime === null ? null : Number(leader.startTime);
  const found = new Map<number, ProcessIdentity>();
  // Processes that are not (yet) members, by parent pid: a child of a member is a member too, which
  // catches one that cleared its environment (the marker) and left the session.
  const byParent = new Map<number, ProcessIdentity[]>();
  for (const pid of pids()) {
    if (pid === process.pid) continue;
    const stat = procStat(pid);
    if (stat === null || stat[0] === 'Z') continue;
    const startTime = stat[19] ?? null;
    const isLeader = pid === leader.pid && (leader.startTime === null || startTime === leader.startTime);
    const startedSince = leaderStart !== null && Number(startTime) >= leaderStart;
    const inSession = startedSince && Number(stat[3]) === leader.pid;
    if (isLeader || inSession || hasEnv(pid, marker)) found.set(pid, { pid, startTime });
    else if (startedSince) {
      const ppid = Number(stat[1]);
      byParent.set(ppid, [...(byParent.get(ppid) ?? []), { pid, startTime }]);
    }
  }
  const queue = [...found.keys()];
  for (let pid = queue.pop(); pid !== undefined; pid = queue.pop()) {
    for (const child of byParent.get(pid) ?? []) {
      if (found.has(child.pid)) continue;
      found.set(child.pid, child);
      queue.push(child.pid);
    }
  }
  if (found.size === 0 && pids().length === 0 && isAlive(leader)) found.set(leader.pid, leader); // no /proc
  return [...found.values()];
}

/** Send `sig` to each process that is still the one identified (a reused pid is left alone). */
export function signalAll(procs: readonly ProcessIdentity[], sig: NodeJS.Signals): void {
  for (const p of procs) {
    if (!isAlive(p)) continue;
    try {
      process.kill(p.pid, sig);
    } catch {
      // ESRCH: already gone is what we wanted
    }
  }
}
