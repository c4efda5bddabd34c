/**
 * File locks through the mount: POSIX, OFD and flock, kept by the lock manager (src/locks),
 * each also taken on the file underneath (the lower file, or the upper copy) so other users of
 * that file see it; a waiting lock is an unanswered request, never a blocked thread.
 */
import createDebug from 'debug';
import { LK_FLOCK, Op } from '../fuse/abi';
import type { RequestControl } from '../fuse/handler';
import type { LockOut } from '../fuse/replies';
import type { LockRequest as FuseLockRequest } from '../fuse/requests';
import { F_UNLCK, LockManager, type ExternalAnswer, type ExternalLocks, type LockRequest } from '../locks';
import type { LayerLocks } from '../layers/types';
import { errorCode } from '../util/errno';
import type { OverlayCore } from './core';
import type { Node } from './nodes';

const log = createDebug('ovshift:locks');

const UNDERNEATH_RETRY_MAX_MS = 100;

/**
 * The locks taken on the files underneath: one descriptor per lock owner and node (an OFD
 * lock or a flock belongs to the open file it was taken through, so owners must not share
 * one), opened on whatever holds the node's data, and closed once the owner holds nothing.
 */
class UnderlyingLocks implements ExternalLocks {
  private readonly fds = new Map<string, LayerLocks>();

  constructor(
    private readonly core: OverlayCore,
    /** The lock underneath a waiter asked for can be had now: ask again at once. */
    private readonly retryNow: (ino: number) => void,
  ) {}

  private key(ino: number, r: LockRequest): string {
    return `${ino}:${r.family}:${r.owner}`;
  }

  /**
   * A descriptor of the object holding the node's data, reopened from an open file of it:
   * read-write, as write locks need, else read-only (a read-only lower), in which case write
   * locks stay local.
   */
  private openFor(node: Node, fh: number): LayerLocks | undefined {
    const h = this.core.files.get(fh);
    const file = h?.upperFile ?? h?.lower ?? node.pin;
    // A layer without shared locks: they stay here.
    return file?.lockHandle?.();
  }

  async apply(ino: number, r: LockRequest, wait: boolean): Promise<ExternalAnswer> {
    const node = this.core.nodes.get(ino);
    const key = this.key(ino, r);
    let held = this.fds.get(key);
    if (r.type === F_UNLCK) {
      if (held !== undefined) await this.unlock(held, r);
      return true;
    }
    if (held === undefined) {
      if (!node) return true;
      const opened = this.openFor(node, r.fh);
      if (opened === undefined) return true;
      held = opened;
      held.onGrant = () => this.retryNow(ino);
      this.fds.set(key, held);
    }
    try {
      let answer: void | 'queued' = undefined;
      if (r.family === 'flock') answer = await held.flock(r.type !== 0, wait);
      else if (r.type === 0 || held.writable) answer = await held.setLock(r.type, r.start, lengthOf(r), wait);
      return answer ?? true;
    } catch (err) {
      if (errorCode(err) === 'EAGAIN' || errorCode(err) === 'EACCES' || errorCode(err) === 'EWOULDBLOCK') {
        log('node %d: %s lock held on the file underneath; waiting', ino, r.family);
        return false;
      }
      throw err;
    }
  }

  withdraw(ino: number, r: LockRequest): void {
    this.fds.get(this.key(ino, r))?.withdraw?.();
  }

  private async unlock(held: LayerLocks, r: LockRequest): Promise<void> {
    if (r.family === 'flock') await held.unflock();
    else await held.setLock(F_UNLCK, r.start, lengthOf(r));
  }

  /**
   * The node's last open file is being released, and with it every lock on the node: the
   * descriptors go. (Not sooner: a grant in flight for an owner may be using its descriptor.)
   */
  closeNode(ino: number): void {
    const prefix = `${ino}:`;
    for (const [key, held] of this.fds) {
      if (!key.startsWith(prefix)) continue;
      this.fds.delete(key);
      held.close();
    }
  }

  /** A conflicting lock someone else holds on the file underneath (GETLK). */
  async probe(node: Node, fh: number, r: LockRequest): Promise<LockOut | null> {
    const opened = this.openFor(node, fh);
    if (opened === undefined) return null;
    try {
      if (r.family === 'flock') {
        try {
          await opened.flock(r.type !== 0);
          await opened.unflock();
          return null;
        } catch (err) {
          if (errorCode(err) !== 'EWOULDBLOCK' && errorCode(err) !== 'EAGAIN') throw err;
          return { start: 0n, end: r.end, type: 1, pid: 0 };
        }
      }
      const mine = this.fds.get(this.key(node.id, r));
      const held = await (mine ?? opened).getLock(r.type, r.start, lengthOf(r));
      if (!held || held.type === F_UNLCK) return null;
      const end = held.len === 0n ? 0x7fffffffffffffffn : held.start + held.len - 1n;
      return { start: held.start, end, type: held.type, pid: held.pid > 0 ? held.pid : 0 };
    } finally {
      opened.close();
    }
  }
}

/** fcntl's l_len from an inclusive FUSE range (0: to the end of the file). */
function lengthOf(r: LockRequest): bigint {
  return r.end >= 0x7fffffffffffffffn ? 0n : r.end - r.start + 1n;
}

export class Locking {
  readonly manager: LockManager;
  private readonly underlying?: UnderlyingLocks;

  constructor(
    private readonly core: OverlayCore,
    forward: boolean,
  ) {
    if (forward) this.underlying = new UnderlyingLocks(core, (ino) => this.manager.retryNow(ino));
    // A lock held underneath (by another host of an NFS server, or a process on the lower's
    // filesystem) is asked for again at most this often: a waiter gets it within ~100 ms of
    // its release, at ten requests a second while it waits.
    this.manager = new LockManager({ external: this.underlying, externalRetry: { maxMs: UNDERNEATH_RETRY_MAX_MS } });
  }

  private request(req: FuseLockRequest): LockRequest {
    return {
      family: req.lkFlags & LK_FLOCK ? 'flock' : 'posix',
      owner: req.owner,
      fh: req.fh,
      pid: req.lk.pid,
      type: req.lk.type,
      start: req.lk.start,
      end: req.lk.end,
    };
  }

  async getlk(req: FuseLockRequest): Promise<LockOut> {
    const node = this.core.node(req.nodeid);
    const probe = this.request(req);
    const held = this.manager.test(node.id, probe);
    if (held) return { start: held.start, end: held.end, type: held.type, pid: held.pid };
    const below = await this.underlying?.probe(node, req.fh, probe);
    if (below) return below;
    return { start: req.lk.start, end: req.lk.end, type: F_UNLCK, pid: 0 };
  }

  async setlk(req: FuseLockRequest, ctl: RequestControl): Promise<void> {
    const node = this.core.node(req.nodeid);
    const request = this.request(req);
    const pending = this.manager.set(node.id, request, req.op === Op.SETLKW);
    ctl.onInterrupt(() => pending.cancel());
    await pending.done;
    if (request.type === F_UNLCK) return;
    // As an NFS client does on a lock: the data read under it must be the file's current one.
    await this.core.revalidateData(node);
  }

  /** FLUSH: the closing process's POSIX locks on the file go. */
  async flush(nodeid: number, owner: bigint): Promise<void> {
    const node = this.core.nodes.get(nodeid);
    if (!node) return;
    await this.manager.releaseOwner(node.id, owner);
  }

  /** RELEASE: whatever was locked through the open file goes. */
  async release(node: Node, fh: number): Promise<void> {
    await this.manager.releaseFh(node.id, fh);
    if (node.openCount <= 1) this.underlying?.closeNode(node.id);
  }

  dispose(): void {
    this.manager.dispose();
  }
}
