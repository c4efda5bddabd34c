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

/** `pid` is the calling thread as the daemon's pid namespace sees it (0: the kernel's own). */
export function callerDying(pid: number): boolean {
  if (pid <= 0) return false;
  let status: string;
  try {
    status = readFileSync(`/proc/${pid}/status`, 'latin1');
  } catch {
    return true;
  }
  const state = /^State:\s*(\S)/m.exec(status)?.[1];
  return state === 'Z' || state === 'X' || pendingKill(status, 'SigPnd') || pendingKill(status, 'ShdPnd');
}
