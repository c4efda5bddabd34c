import { LockTable } from './lock-table';
import type { PendingRequest } from './pending-request';
import { SerialQueue } from './serial-queue';
import { LOCK_FAMILIES, LockFamily } from './types';
import { WaiterQueue } from './waiter-queue';

/** Everything the manager keeps for one inode. */
export class InodeLocks {
  readonly held: Readonly<Record<LockFamily, LockTable>> = { posix: new LockTable(), flock: new LockTable() };
  readonly waiters: Readonly<Record<LockFamily, WaiterQueue<PendingRequest>>> = {
    posix: new WaiterQueue(),
    flock: new WaiterQueue(),
  };
  /** Waiters refused by the external arbiter, retried on their timer or when locks relax. */
  readonly deferred = new Set<PendingRequest>();
  /** Mutations of this inode's locks, one at a time while the external arbiter is consulted. */
  readonly serial: SerialQueue;
  passScheduled = false;

  constructor(
    readonly ino: number,
    onIdle: (inode: InodeLocks) => void,
  ) {
    this.serial = new SerialQueue(() => onIdle(this));
  }

  get waiterCount(): number {
    return this.waiters.posix.size + this.waiters.flock.size;
  }

  get unused(): boolean {
    return this.serial.idle && !this.passScheduled && this.waiterCount === 0 && LOCK_FAMILIES.every((family) => this.held[family].isEmpty);
  }
}
