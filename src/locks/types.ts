/**
 * Shapes shared by the lock manager and its callers. Values follow what FUSE delivers: byte
 * ranges are inclusive bigints, lock types are the fcntl constants.
 */

/** Largest file offset; a range ending here covers "to EOF and beyond" (util/offset). */
export { OFFSET_MAX } from '../util/offset';

import { F_RDLCK, F_UNLCK, F_WRLCK } from '../util/linux';
export { F_RDLCK, F_UNLCK, F_WRLCK };

export type LockType = typeof F_RDLCK | typeof F_WRLCK | typeof F_UNLCK;
export type HeldLockType = typeof F_RDLCK | typeof F_WRLCK;

/**
 * 'posix' covers fcntl POSIX and OFD locks (FUSE cannot tell them apart: only their owner
 * differs); 'flock' covers BSD flock. The two families never conflict with each other.
 */
export type LockFamily = 'posix' | 'flock';

export const LOCK_FAMILIES: readonly LockFamily[] = ['posix', 'flock'];

export interface LockRequest {
  readonly family: LockFamily;
  /** POSIX: the kernel's lock_owner (per files_struct); OFD and flock: per open file. */
  readonly owner: bigint;
  /** The file handle the request came through; RELEASE of it drops what it acquired. */
  readonly fh: number;
  /** The requester's tgid, only ever reported back by GETLK. */
  readonly pid: number;
  /** F_RDLCK, F_WRLCK or F_UNLCK. */
  readonly type: number;
  /** Inclusive range; ignored for 'flock', which always covers the whole file. */
  readonly start: bigint;
  readonly end: bigint;
}

/** A request that passed validation. */
export interface ValidRequest extends LockRequest {
  readonly type: LockType;
}

export interface HeldLock extends ValidRequest {
  readonly type: HeldLockType;
}

/**
 * Something that must also agree before a lock is granted locally, e.g. the same lock taken on
 * the lower file. `apply` is called for every grant (after the local check passed) and for
 * every release (type F_UNLCK, always expected to answer true). Resolving false for a grant
 * means "held elsewhere": the request is treated as conflicting. A rejection fails the request.
 */
/** An arbiter's answer: granted, refused, or refused and queued by the arbiter for a waiter. */
export type ExternalAnswer = boolean | 'queued';

export interface ExternalLocks {
  /**
   * `wait`: the request waits if refused. 'queued': refused, but the arbiter queued it and
   * calls the manager's retryNow once it can be had (then it is asked about again only rarely,
   * in case that call is lost).
   */
  apply(ino: number, request: LockRequest, wait: boolean): Promise<ExternalAnswer>;
  /**
   * A waiting request the arbiter refused will not be asked about again (interrupted, its file
   * released, the manager disposed): whatever the arbiter queued for it goes.
   */
  withdraw?(ino: number, request: LockRequest): void;
}

export interface LockManagerOptions {
  readonly external?: ExternalLocks;
  /** Called after every granted lock (not for unlocks), before the request's promise settles. */
  readonly onGranted?: (ino: number, request: LockRequest) => void;
  /** Retry delays for requests the external arbiter refused: doubling from initial to max. */
  readonly externalRetry?: { readonly initialMs?: number; readonly maxMs?: number };
}

/** The answer to a lock or unlock request. */
export interface PendingLock {
  /** Resolves when granted (or unlocked); rejects with a LockError or the arbiter's error. */
  readonly done: Promise<void>;
  /**
   * For FUSE_INTERRUPT: a request not yet granted is rejected with EINTR and dequeued. If its
   * grant is already being confirmed by the external arbiter, it completes as it would have
   * (FUSE accepts a normal answer to an interrupted request). No effect once settled.
   */
  cancel(): void;
}
