import { F_RDLCK, F_UNLCK, F_WRLCK, HeldLock, ValidRequest } from './types';

export interface OwnerLocksUpdate {
  /** The owner's locks afterwards: sorted by start, disjoint, same-type neighbours coalesced. */
  readonly locks: readonly HeldLock[];
  /** Some range became less restrictive (unlocked, or write turned read): waiters may proceed. */
  readonly relaxed: boolean;
}

/**
 * What one owner's locks on one inode become after that owner's request. POSIX: the request's
 * range replaces whatever the owner held there (splitting locks it cuts through) and then
 * coalesces with adjacent or overlapping same-type locks. flock: one whole-file lock, replaced.
 * A coalesced lock carries the fh and pid of the newest request.
 */
export function applyToOwnerLocks(current: readonly HeldLock[], request: ValidRequest): OwnerLocksUpdate {
  return request.family === 'flock' ? applyFlock(current, request) : applyPosix(current, request);
}

function applyFlock(current: readonly HeldLock[], request: ValidRequest): OwnerLocksUpdate {
  const relaxed = current.some((lock) => request.type === F_UNLCK || (lock.type === F_WRLCK && request.type === F_RDLCK));
  if (request.type === F_UNLCK) return { locks: [], relaxed };
  return { locks: [{ ...request, type: request.type }], relaxed };
}

function applyPosix(current: readonly HeldLock[], request: ValidRequest): OwnerLocksUpdate {
  const before: HeldLock[] = [];
  const after: HeldLock[] = [];
  let relaxed = false;
  for (const lock of current) {
    if (lock.end < request.start) {
      before.push(lock);
    } else if (lock.start > request.end) {
      after.push(lock);
    } else {
      if (request.type === F_UNLCK || (lock.type === F_WRLCK && request.type === F_RDLCK)) relaxed = true;
      if (lock.start < request.start) before.push({ ...lock, end: request.start - 1n });
      if (lock.end > request.end) after.push({ ...lock, start: request.end + 1n });
    }
  }
  if (request.type === F_UNLCK) return { locks: [...before, ...after], relaxed };

  // The owner's locks were already coalesced, so only the immediate neighbours can merge.
  let { start, end } = request;
  const previous = before.at(-1);
  if (previous !== undefined && previous.type === request.type && previous.end + 1n === start) {
    before.pop();
    start = previous.start;
  }
  const next = after[0];
  if (next !== undefined && next.type === request.type && next.start === end + 1n) {
    after.shift();
    end = next.end;
  }
  return { locks: [...before, { ...request, type: request.type, start, end }, ...after], relaxed };
}
