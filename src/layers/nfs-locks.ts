/**
 * Locks on a file of an nfs:// lower, taken on the server through its lock manager (NLM), so
 * that every client of the server and the server's own processes see them: one NLM owner per
 * lock owner of the mount. flock is a whole-file lock, as the kernel's NFS client emulates it
 * (so flock and fcntl locks on one file conflict over NFS).
 */
import { newNlmOwner, type NlmClient, type NlmTarget } from './nfs/nlm-client';
import type { LayerLock, LayerLocks } from './types';
import { F_RDLCK, F_UNLCK, F_WRLCK } from '../util/linux';

export class NlmFileLocks implements LayerLocks {
  /** NLM takes write locks whatever the file was opened for. */
  readonly writable = true;
  private readonly owner = newNlmOwner();

  constructor(
    private readonly nlm: NlmClient,
    private readonly fh: Buffer,
    private readonly path: string,
  ) {}

  private target(start: bigint, len: bigint): NlmTarget {
    return { fh: this.fh, path: this.path, owner: this.owner.owner, svid: this.owner.svid, offset: start, length: len };
  }

  onGrant?: () => void;

  /** The server queues a waiter's request and calls back when it is free (see NlmClient.lock). */
  private waiter(wait: boolean | undefined): (() => void) | undefined {
    return wait ? () => this.onGrant?.() : undefined;
  }

  async setLock(type: number, start: bigint, len: bigint, wait?: boolean): Promise<void | 'queued'> {
    if (type === F_UNLCK) return this.nlm.unlock(this.target(start, len));
    return this.nlm.lock(this.target(start, len), type === F_WRLCK, this.waiter(wait));
  }

  async getLock(type: number, start: bigint, len: bigint): Promise<LayerLock | null> {
    const holder = await this.nlm.test(this.target(start, len), type === F_WRLCK);
    // The holder's svid is a process of another host, or a server-side owner: no local pid.
    return holder && { type: holder.exclusive ? F_WRLCK : F_RDLCK, start: holder.offset, len: holder.length, pid: 0 };
  }

  flock(exclusive: boolean, wait?: boolean): Promise<void | 'queued'> {
    return this.nlm.lock(this.target(0n, 0n), exclusive, this.waiter(wait));
  }

  withdraw(): void {
    void this.nlm.withdraw(this.fh, this.owner.owner);
  }

  unflock(): Promise<void> {
    return this.nlm.unlock(this.target(0n, 0n));
  }

  /** Nothing to let go: what was locked was unlocked by the caller. */
  close(): void {}
}
