/**
 * Whether the process behind a request is going away. A FUSE_INTERRUPT means a signal reached
 * the caller, which is most often one it handles and returns from (Go's runtime preempts its
 * threads with SIGURG all the time): a listing that answered EINTR then would fail where a
 * local filesystem never does (Go retries no getdents). Work is worth abandoning only for a
 * caller that will never read the answer: gone, a zombie, or with SIGKILL pending (the
 * kernel turns every fatal signal into one for each thread).
 */
import { readFileSync } from 'fs';

const SIGKILL_BIT = 1n << 8n;

function pendingKill(status: string, field: 'SigPnd' | 'ShdPnd'): boolean {
  const hex = new RegExp(`^${field}:\\s*([0-9a-f]+)`, 'm').exec(status)?.[1];
  return hex !== undefined && (BigInt(`0x${hex}`) & SIGKILL_BIT) !== 0n;
}

/** /proc/PID/status of the calling thread `pid`, or undefined once it is gone. */
function procStatus(pid: number): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/status`, 'latin1');
  } catch {
    return undefined;
  }
}

/** `pid` is the calling thread as the daemon's pid namespace sees it (0: the kernel's own). */
export function callerDying(pid: number): boolean {
  if (pid <= 0) return false;
  const status = procStatus(pid);
  if (status === undefined) return true;
  const state = /^State:\s*(\S)/m.exec(status)?.[1];
  return state === 'Z' || state === 'X' || pendingKill(status, 'SigPnd') || pendingKill(status, 'ShdPnd');
}

const CAP_FSETID_BIT = 1n << 4n;

/** What the kernel weighs when it lets a caller keep a set-group-ID bit (in_group_or_capable). */
export interface CallerGroups {
  /** Supplementary groups, as the daemon's user namespace sees them. */
  groups: number[];
  /** CAP_FSETID is effective (in the caller's own user namespace). */
  fsetid: boolean;
}

/** The calling thread `pid`'s groups and CAP_FSETID, as /proc shows them; undefined once it is gone. */
export function callerGroups(pid: number): CallerGroups | undefined {
  const status = pid > 0 ? procStatus(pid) : undefined;
  if (status === undefined) return undefined;
  const groups = (/^Groups:[ \t]*(.*)$/m.exec(status)?.[1] ?? '').split(/\s+/).filter(Boolean).map(Number);
  const capEff = /^CapEff:\s*([0-9a-f]+)/m.exec(status)?.[1];
  return { groups, fsetid: capEff !== undefined && (BigInt(`0x${capEff}`) & CAP_FSETID_BIT) !== 0n };
}
