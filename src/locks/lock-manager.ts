import debug from 'debug';
import { waitsTransitivelyFor } from './deadlock';
import { LockError, toError } from './errors';
import { askExternal, releaseExternally } from './external';
import { InodeLocks } from './inode-locks';
import { OwnerRegistry } from './owner-registry';
import { applyToOwnerLocks } from './owner-locks';
import { PendingRequest } from './pending-request';
import { afterStep, Step } from './serial-queue';
import {
  ExternalAnswer,
  ExternalLocks,
  F_RDLCK,
  F_UNLCK,
  HeldLock,
  LOCK_FAMILIES,
  LockFamily,
  LockManagerOptions,
  LockRequest,
  PendingLock,
  ValidRequest,
} from './types';
import { validateProbe, validateRequest } from './validate';

const log = debug('ovshift:locks');

const DEFAULT_RETRY_INITIAL_MS = 10;
const DEFAULT_RETRY_MAX_MS = 1000;
/**
 * A request the arbiter queued is woken by it (retryNow); it is asked about again after this
 * long only in case the wake-up was lost (NLM's GRANTED_MSG is a datagram-like one-way call:
 * clients re-send a blocked LOCK every 30 s, as Linux's does).
 */
const QUEUED_RECHECK_MS = 30000;

function describe(request: ValidRequest): string {
  const type = request.type === F_RDLCK ? 'read' : request.type === F_UNLCK ? 'unlock' : 'write';
  return `${request.family} ${type} owner=${request.owner} fh=${request.fh} ${request.start}..${request.end}`;
}

function asUnlock(lock: HeldLock): ValidRequest {
  return { ...lock, type: F_UNLCK };
}

/**
 * Linux file locks for the FUSE daemon: GETLK, SETLK, SETLKW, FLUSH and RELEASE. Nothing
 * blocks: a blocking request that conflicts is queued and its promise settles when granted.
 *
 * Granting order. A queued request is granted, in FIFO order, once it conflicts with no held
 * lock of another owner and, if it "yields", with no earlier request still waiting. A waiting
 * (SETLKW) request of an owner that holds no lock of its family yields: it queues behind
 * earlier conflicting waiters, so a queued writer is not overtaken forever by later readers.
 * An owner that holds locks never yields, because another waiter may be waiting for it and
 * yielding would then deadlock (e.g. upgrading a read lock while a writer waits for it); its
 * queued requests stop yielding as soon as it gets its first lock. Non-blocking requests are
 * checked against held locks only, as on Linux, so SETLK agrees with GETLK.
 *
 * Since only owners holding nothing yield, nobody waits for a yielding owner, and deadlock
 * detection (POSIX family only, as on Linux) only follows held locks.
 *
 * With an external arbiter, every change to an inode's locks is serialized per inode: while
 * the arbiter is being asked about a grant or told about a release, later requests on that
 * inode wait for it. Other inodes are never held up. A blocking request the arbiter refuses
 * keeps its place in the queue and is retried on a doubling timer, and at once whenever locks
 * on its inode are released or downgraded.
 */
export class LockManager {
  private readonly inodes = new Map<number, InodeLocks>();
  private readonly owners: Readonly<Record<LockFamily, OwnerRegistry<PendingRequest>>> = {
    posix: new OwnerRegistry(),
    flock: new OwnerRegistry(),
  };
  private readonly unsettledRequests = new Set<PendingRequest>();
  private readonly unsettledReleases = new Set<(error: Error) => void>();
  private readonly external: ExternalLocks | undefined;
  private readonly onGranted: ((ino: number, request: LockRequest) => void) | undefined;
  private readonly retryInitialMs: number;
  private readonly retryMaxMs: number;
  private waiterTotal = 0;
  private disposed = false;

  constructor(options: LockManagerOptions = {}) {
    this.external = options.external;
    this.onGranted = options.onGranted;
    this.retryInitialMs = options.externalRetry?.initialMs ?? DEFAULT_RETRY_INITIAL_MS;
    this.retryMaxMs = Math.max(this.retryInitialMs, options.externalRetry?.maxMs ?? DEFAULT_RETRY_MAX_MS);
  }

  /**
   * GETLK: the held lock of another owner that conflicts with the probe and starts lowest in
   * the file, or null when the probe could be granted. Throws LockError EINVAL on a bad probe.
   */
  test(ino: number, probe: LockRequest): HeldLock | null {
    this.assertLive();
    const valid = validateProbe(probe);
    const conflict = this.inodes.get(ino)?.held[valid.family].lowestConflict(valid);
    return conflict === undefined ? null : { ...conflict };
  }

  /**
   * SETLK (wait=false) and SETLKW (wait=true), and flock. Without an external arbiter the
   * outcome is decided before this returns (unless the request queues).
   * Rejections: EINVAL, EAGAIN (conflict, wait=false), EDEADLK, EINTR (cancel), EBADF (its fh
   * was released while it waited), or the arbiter's own error.
   */
  set(ino: number, request: LockRequest, wait: boolean): PendingLock {
    this.assertLive();
    let valid: ValidRequest;
    try {
      valid = validateRequest(request);
    } catch (error) {
      return { done: Promise.reject(toError(error)), cancel: () => undefined };
    }
    const inode = this.inodeFor(ino);
    const pending = new PendingRequest(inode, valid, wait, this.retryInitialMs, (settled) => this.unsettledRequests.delete(settled));
    this.unsettledRequests.add(pending);
    inode.serial.run(() => this.process(pending));
    return { done: pending.done, cancel: () => this.cancel(pending) };
  }

  /** FLUSH: drops every POSIX-family lock the owner holds on the inode. Its waiters stay queued. */
  releaseOwner(ino: number, owner: bigint): Promise<void> {
    this.assertLive();
    const inode = this.inodes.get(ino);
    if (inode === undefined) return Promise.resolve();
    return this.release(inode, () => this.releaseLocks(inode, 'posix', [owner], () => true));
  }

  /**
   * RELEASE: drops every lock (both families) acquired through fh, and rejects requests still
   * waiting through it with EBADF: their file is gone, which an interrupt (EINTR) is not.
   */
  releaseFh(ino: number, fh: number): Promise<void> {
    this.assertLive();
    const inode = this.inodes.get(ino);
    if (inode === undefined) return Promise.resolve();
    return this.release(inode, () => {
      for (const family of LOCK_FAMILIES) {
        for (const waiter of inode.waiters[family].withFh(fh)) {
          this.fail(waiter, new LockError('EBADF', `fh ${fh} was released while waiting`));
        }
      }
      return LOCK_FAMILIES.flatMap((family) => this.releaseLocks(inode, family, inode.held[family].ownersUsingFh(fh), (lock) => lock.fh === fh));
    });
  }

  /** The locks held on an inode, POSIX family first, each owner's sorted by start. */
  held(ino: number): HeldLock[] {
    const inode = this.inodes.get(ino);
    if (inode === undefined) return [];
    return LOCK_FAMILIES.flatMap((family) => inode.held[family].all()).map((lock) => ({ ...lock }));
  }

  /** How many requests are queued, on one inode or in total. */
  waiting(ino?: number): number {
    if (ino === undefined) return this.waiterTotal;
    return this.inodes.get(ino)?.waiterCount ?? 0;
  }

  /**
   * Stops everything so the process can exit: timers cleared, unsettled requests and releases
   * rejected with EINTR, state dropped. Later calls throw.
   */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const inode of this.inodes.values()) inode.serial.close();
    const stopped = (): LockError => new LockError('EINTR', 'lock manager disposed');
    for (const request of [...this.unsettledRequests]) {
      this.withdrawExternally(request);
      request.settle(stopped());
    }
    for (const reject of [...this.unsettledReleases]) reject(stopped());
    this.unsettledReleases.clear();
    this.inodes.clear();
    for (const family of LOCK_FAMILIES) this.owners[family].clear();
    this.waiterTotal = 0;
  }

  private assertLive(): void {
    if (this.disposed) throw new Error('lock manager is disposed');
  }

  private inodeFor(ino: number): InodeLocks {
    let inode = this.inodes.get(ino);
    if (inode === undefined) {
      inode = new InodeLocks(ino, (idle) => this.forgetIfUnused(idle));
      this.inodes.set(ino, inode);
    }
    return inode;
  }

  private forgetIfUnused(inode: InodeLocks): void {
    if (inode.unused && this.inodes.get(inode.ino) === inode) this.inodes.delete(inode.ino);
  }

  private process(pending: PendingRequest): Step {
    if (pending.phase !== 'scheduled') return; // interrupted before its turn
    const { inode, request } = pending;
    if (request.type === F_UNLCK) return this.unlock(pending);
    if (request.family === 'flock') {
      const [current] = inode.held.flock.locksOf(request.owner);
      if (current?.type === request.type) {
        pending.settle();
        return;
      }
      if (current !== undefined) {
        // As on Linux, converting a flock lock is not atomic: the old lock goes first.
        this.changeLocks(inode, 'flock', request.owner, [], true);
        return afterStep(
          this.reportReleases(inode.ino, [asUnlock(current)]),
          () => this.decide(pending),
          (error) => pending.settle(error),
        );
      }
    }
    return this.decide(pending);
  }

  private unlock(pending: PendingRequest): Step {
    const { inode, request } = pending;
    const update = applyToOwnerLocks(inode.held[request.family].locksOf(request.owner), request);
    if (!update.relaxed) {
      pending.settle();
      return;
    }
    this.changeLocks(inode, request.family, request.owner, update.locks, true);
    log('ino %d: %s', inode.ino, describe(request));
    return afterStep(
      this.reportReleases(inode.ino, [request]),
      () => pending.settle(),
      (error) => pending.settle(error),
    );
  }

  private decide(pending: PendingRequest): Step {
    const { inode, request, wait } = pending;
    const { family, owner } = request;
    const holdsLocks = this.owners[family].holdsAny(owner);
    if (inode.held[family].findConflict(request) !== undefined) {
      if (!wait) {
        pending.settle(new LockError('EAGAIN', `ino ${inode.ino}: ${describe(request)} conflicts`));
        return;
      }
      // An owner holding nothing cannot be waited for, so it cannot close a cycle.
      if (family === 'posix' && holdsLocks && this.wouldDeadlock(inode, request)) {
        log('ino %d: %s would deadlock', inode.ino, describe(request));
        pending.settle(new LockError('EDEADLK', `ino ${inode.ino}: ${describe(request)} would deadlock`));
        return;
      }
      this.enqueue(pending, !holdsLocks);
      return;
    }
    if (wait && !holdsLocks && inode.waiters[family].conflictsWithWaiting(request)) {
      this.enqueue(pending, true);
      return;
    }
    return this.grant(pending);
  }

  private wouldDeadlock(inode: InodeLocks, request: ValidRequest): boolean {
    return waitsTransitivelyFor(inode.held.posix.conflictingOwners(request), request.owner, (owner) =>
      this.owners.posix.waitersOf(owner).flatMap((waiter) => [...waiter.inode.held.posix.conflictingOwners(waiter.request)]),
    );
  }

  /** Grants a request that passed the local checks, after the arbiter agreed if there is one. */
  private grant(pending: PendingRequest): Step {
    if (this.external === undefined) {
      this.commit(pending);
      return;
    }
    return this.confirmExternally(this.external, pending);
  }

  /** Settles the request, or queues it for a retry; never rejects. */
  private confirmExternally(external: ExternalLocks, pending: PendingRequest): Promise<void> {
    pending.phase = 'confirming';
    return askExternal(external, pending.inode.ino, pending.request, pending.wait).then(
      (granted) => this.afterExternalAnswer(pending, granted),
      (error: unknown) => this.fail(pending, toError(error)),
    );
  }

  private afterExternalAnswer(pending: PendingRequest, answer: ExternalAnswer): void {
    if (pending.phase === 'settled') return; // disposed meanwhile
    if (answer === true) {
      this.commit(pending);
    } else if (pending.interrupted) {
      this.fail(pending, new LockError('EINTR', 'interrupted'));
    } else if (!pending.wait) {
      const where = `ino ${pending.inode.ino}: ${describe(pending.request)}`;
      this.fail(pending, new LockError('EAGAIN', `${where} is held elsewhere`));
    } else {
      this.defer(pending, answer === 'queued');
    }
  }

  private commit(pending: PendingRequest): void {
    this.dequeue(pending);
    const { inode, request } = pending;
    const update = applyToOwnerLocks(inode.held[request.family].locksOf(request.owner), request);
    this.changeLocks(inode, request.family, request.owner, update.locks, update.relaxed);
    log('ino %d: granted %s', inode.ino, describe(request));
    try {
      this.onGranted?.(inode.ino, request);
    } catch (error) {
      log('onGranted threw: %O', error);
    }
    pending.settle();
  }

  private fail(pending: PendingRequest, error: Error): void {
    if (this.dequeue(pending)) this.schedulePass(pending.inode);
    this.withdrawExternally(pending);
    pending.settle(error);
  }

  private withdrawExternally(pending: PendingRequest): void {
    if (!pending.refusedExternally || pending.phase === 'settled') return;
    try {
      this.external?.withdraw?.(pending.inode.ino, pending.request);
    } catch (error) {
      log('withdraw threw: %O', error);
    }
  }

  /**
   * The arbiter says requests it refused on the inode may be had now (a server granted one):
   * they are asked about again at once instead of at their next retry.
   */
  retryNow(ino: number): void {
    const inode = this.inodes.get(ino);
    if (inode === undefined || this.disposed) return;
    for (const deferred of [...inode.deferred]) this.stopRetryTimer(deferred);
    this.schedulePass(inode);
  }

  private cancel(pending: PendingRequest): void {
    switch (pending.phase) {
      case 'scheduled':
      case 'waiting':
        log('ino %d: interrupted %s', pending.inode.ino, describe(pending.request));
        this.fail(pending, new LockError('EINTR', 'interrupted'));
        break;
      case 'confirming':
        pending.interrupted = true;
        break;
      case 'settled':
        break;
    }
  }

  private enqueue(pending: PendingRequest, yields: boolean): void {
    const { inode, request } = pending;
    pending.phase = 'waiting';
    pending.yields = yields;
    inode.waiters[request.family].add(pending);
    this.owners[request.family].addWaiter(request.owner, pending);
    this.waiterTotal += 1;
    log('ino %d: queued %s%s', inode.ino, describe(request), yields ? '' : ' (not yielding)');
  }

  private dequeue(pending: PendingRequest): boolean {
    const { inode, request } = pending;
    const queue = inode.waiters[request.family];
    if (!queue.has(pending)) return false;
    queue.remove(pending);
    this.owners[request.family].removeWaiter(request.owner, pending);
    this.stopRetryTimer(pending);
    this.waiterTotal -= 1;
    return true;
  }

  /** The arbiter refused a blocking request: it waits, retried later or when locks relax. */
  private defer(pending: PendingRequest, queued: boolean): void {
    const { inode, request } = pending;
    if (!inode.waiters[request.family].has(pending)) {
      this.enqueue(pending, !this.owners[request.family].holdsAny(request.owner));
    }
    pending.phase = 'waiting';
    pending.deferred = true;
    pending.refusedExternally = true;
    inode.deferred.add(pending);
    const delay = queued ? QUEUED_RECHECK_MS : pending.retryDelayMs;
    if (!queued) pending.retryDelayMs = Math.min(delay * 2, this.retryMaxMs);
    log('ino %d: arbiter %s %s, retry in %d ms', inode.ino, queued ? 'queued' : 'refused', describe(request), delay);
    pending.retryTimer = setTimeout(() => {
      this.stopRetryTimer(pending);
      this.schedulePass(inode);
    }, delay);
  }

  private stopRetryTimer(pending: PendingRequest): void {
    clearTimeout(pending.retryTimer);
    pending.retryTimer = undefined;
    pending.deferred = false;
    pending.inode.deferred.delete(pending);
  }

  /**
   * Sets an owner's locks on an inode and keeps the owner registry true. `relaxed` says some
   * range became less restrictive, so waiters (and arbiter-refused ones) get another look.
   */
  private changeLocks(inode: InodeLocks, family: LockFamily, owner: bigint, locks: readonly HeldLock[], relaxed: boolean): void {
    const table = inode.held[family];
    const heldBefore = table.locksOf(owner).length > 0;
    table.replace(owner, locks);
    const heldAfter = locks.length > 0;
    if (!heldBefore && heldAfter && this.owners[family].startedHoldingOnInode(owner)) {
      this.stopYielding(family, owner);
    } else if (heldBefore && !heldAfter) {
      this.owners[family].stoppedHoldingOnInode(owner);
    }
    if (relaxed) {
      for (const deferred of [...inode.deferred]) this.stopRetryTimer(deferred);
      this.schedulePass(inode);
    }
  }

  /** The owner now holds a lock, so someone may come to wait for it: it must not yield. */
  private stopYielding(family: LockFamily, owner: bigint): void {
    for (const waiter of this.owners[family].waitersOf(owner)) {
      if (!waiter.yields) continue;
      waiter.inode.waiters[family].stopYielding(waiter);
      waiter.inode.serial.run(() => this.grantIfUnblocked(waiter));
    }
  }

  /**
   * Only this waiter's standing changed, and granting it could block others but never free
   * them, so it alone is looked at, not the whole queue.
   */
  private grantIfUnblocked(waiter: PendingRequest): Step {
    if (waiter.phase !== 'waiting' || waiter.deferred) return;
    if (waiter.inode.held[waiter.request.family].findConflict(waiter.request) !== undefined) return;
    return this.grant(waiter);
  }

  private schedulePass(inode: InodeLocks): void {
    if (inode.passScheduled || this.disposed) return;
    inode.passScheduled = true;
    inode.serial.run(() => this.pass(inode));
  }

  /** Grants what became grantable on the inode; with an arbiter, one request per pass. */
  private pass(inode: InodeLocks): Step {
    inode.passScheduled = false;
    for (const family of LOCK_FAMILIES) {
      for (const waiter of inode.waiters[family].grantable(inode.held[family])) {
        if (this.external === undefined) {
          this.commit(waiter);
          continue;
        }
        return this.confirmExternally(this.external, waiter).then(() => this.schedulePass(inode));
      }
    }
  }

  private releaseLocks(inode: InodeLocks, family: LockFamily, owners: readonly bigint[], shouldRelease: (lock: HeldLock) => boolean): ValidRequest[] {
    const released: ValidRequest[] = [];
    for (const owner of owners) {
      const current = inode.held[family].locksOf(owner);
      const dropped = current.filter(shouldRelease);
      if (dropped.length === 0) continue;
      released.push(...dropped.map(asUnlock));
      this.changeLocks(
        inode,
        family,
        owner,
        current.filter((lock) => !shouldRelease(lock)),
        true,
      );
    }
    if (released.length > 0) log('ino %d: released %d lock(s)', inode.ino, released.length);
    return released;
  }

  /** Runs a release in the inode's order and settles once the arbiter was told. */
  private release(inode: InodeLocks, releaseLocally: () => ValidRequest[]): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.unsettledReleases.add(reject);
      const finish = (error?: Error): void => {
        this.unsettledReleases.delete(reject);
        if (error === undefined) resolve();
        else reject(error);
      };
      inode.serial.run(() => afterStep(this.reportReleases(inode.ino, releaseLocally()), () => finish(), finish));
    });
  }

  private reportReleases(ino: number, released: readonly ValidRequest[]): Step {
    if (this.external === undefined || released.length === 0) return;
    return releaseExternally(this.external, ino, released);
  }
}
