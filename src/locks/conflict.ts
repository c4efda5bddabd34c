import { F_WRLCK } from './types';

/** The part of a lock or request that decides conflicts (always within one family). */
export interface LockSpan {
  readonly owner: bigint;
  readonly type: number;
  readonly start: bigint;
  readonly end: bigint;
}

export function rangesOverlap(a: LockSpan, b: LockSpan): boolean {
  return a.start <= b.end && b.start <= a.end;
}

/** Different owners, overlapping ranges, and at least one writer. */
export function locksConflict(a: LockSpan, b: LockSpan): boolean {
  return a.owner !== b.owner && (a.type === F_WRLCK || b.type === F_WRLCK) && rangesOverlap(a, b);
}
