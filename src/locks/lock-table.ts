import { LockSpan, locksConflict } from './conflict';
import { F_RDLCK, F_WRLCK, HeldLock } from './types';

/**
 * The locks held on one inode within one family, grouped by owner. Indexed so that a read
 * request only looks at owners holding write locks and RELEASE finds its fh's owners directly.
 */
export class LockTable {
  private readonly byOwner = new Map<bigint, readonly HeldLock[]>();
  private readonly writeOwners = new Set<bigint>();
  private readonly ownersByFh = new Map<number, Set<bigint>>();

  get isEmpty(): boolean {
    return this.byOwner.size === 0;
  }

  locksOf(owner: bigint): readonly HeldLock[] {
    return this.byOwner.get(owner) ?? [];
  }

  /** Sets an owner's complete list of locks (sorted, disjoint); empty removes the owner. */
  replace(owner: bigint, locks: readonly HeldLock[]): void {
    for (const lock of this.locksOf(owner)) this.unindexFh(lock.fh, owner);
    this.byOwner.delete(owner);
    this.writeOwners.delete(owner);
    if (locks.length === 0) return;
    this.byOwner.set(owner, locks);
    if (locks.some((lock) => lock.type === F_WRLCK)) this.writeOwners.add(owner);
    for (const lock of locks) {
      let owners = this.ownersByFh.get(lock.fh);
      if (owners === undefined) this.ownersByFh.set(lock.fh, (owners = new Set()));
      owners.add(owner);
    }
  }

  ownersUsingFh(fh: number): bigint[] {
    return [...(this.ownersByFh.get(fh) ?? [])];
  }

  /** Any held lock of another owner that conflicts with the span. */
  findConflict(span: LockSpan): HeldLock | undefined {
    for (const lock of this.conflictCandidates(span)) {
      if (locksConflict(lock, span)) return lock;
    }
    return undefined;
  }

  /** The conflicting lock that starts lowest in the file (GETLK's answer). */
  lowestConflict(span: LockSpan): HeldLock | undefined {
    let lowest: HeldLock | undefined;
    for (const lock of this.conflictCandidates(span)) {
      if (locksConflict(lock, span) && (lowest === undefined || lock.start < lowest.start)) lowest = lock;
    }
    return lowest;
  }

  conflictingOwners(span: LockSpan): Set<bigint> {
    const owners = new Set<bigint>();
    for (const lock of this.conflictCandidates(span)) {
      if (locksConflict(lock, span)) owners.add(lock.owner);
    }
    return owners;
  }

  all(): HeldLock[] {
    return [...this.byOwner.values()].flat();
  }

  private *conflictCandidates(span: LockSpan): Generator<HeldLock> {
    const owners = span.type === F_RDLCK ? this.writeOwners : this.byOwner.keys();
    for (const owner of owners) {
      if (owner === span.owner) continue;
      for (const lock of this.locksOf(owner)) {
        if (lock.start > span.end) break;
        yield lock;
      }
    }
  }

  private unindexFh(fh: number, owner: bigint): void {
    const owners = this.ownersByFh.get(fh);
    if (owners === undefined) return;
    owners.delete(owner);
    if (owners.size === 0) this.ownersByFh.delete(fh);
  }
}
