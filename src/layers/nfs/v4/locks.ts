/**
 * Locks on a file of an NFSv4 lower, taken on the server (LOCK, LOCKU, LOCKT), so every client
 * of the server and its own processes see them: one lock owner per instance (the overlay makes
 * one per lock owner of the mount and node — never a pid), its lock state made from the file's
 * open. flock is a whole-file lock, as the kernel's NFS client emulates it. A refused lock
 * fails with EAGAIN: a waiter is a pending request the lock manager asks again with backoff,
 * as a W lock type tells the server. The ranges held are remembered, to be reclaimed if the
 * server restarts.
 */
import createDebug from 'debug';
import { Compound, readStateid, writeStateid, type Stateid } from './compound';
import { Nfs4Error } from './errors';
import { LockType, NFS4_OPAQUE_LIMIT, NFS4_UINT64_MAX, Nfs4Status, Op, ShareAccess } from './protocol';
import { describeNfsUrl } from '../url';
import { RANGE_END, lengthOf, rangeOf, withRange, withoutRange, type HeldRange } from '../held-ranges';
import type { LayerLock, LayerLocks } from '../../types';
import { STATE_LOST, current, type Nfs4Client, type OpenState } from './client';
import type { XdrReader, XdrWriter } from '../xdr';
import { F_RDLCK, F_UNLCK, F_WRLCK } from '../../../util/linux';

const log = createDebug('ovshift:nfs4');

/** A read-write open refused: the read-only one will do for read locks. */
const WRITE_REFUSED = new Set([Nfs4Status.ACCESS, Nfs4Status.ROFS, Nfs4Status.PERM, Nfs4Status.SHARE_DENIED]);

interface Denied {
  start: bigint;
  len: bigint;
  exclusive: boolean;
}

/** LOCK4denied: who holds what. */
function readDenied(r: XdrReader): Denied {
  const start = r.uint64();
  const length = r.uint64();
  const type = r.uint32();
  r.uint64(); // owner's client id
  r.opaque(NFS4_OPAQUE_LIMIT); // owner
  return { start, len: length === NFS4_UINT64_MAX ? 0n : length, exclusive: type === LockType.WRITE || type === LockType.WRITEW };
}

/** The protocol's length for a lock of `len` bytes at `start` (0: to the end). */
function v4Length(start: bigint, len: bigint): bigint {
  return len === 0n || start + len > NFS4_UINT64_MAX ? NFS4_UINT64_MAX : len;
}

function lockType(exclusive: boolean, wait: boolean): LockType {
  if (exclusive) return wait ? LockType.WRITEW : LockType.WRITE;
  return wait ? LockType.READW : LockType.READ;
}

function wouldBlock(detail: string): Error {
  return Object.assign(new Error(`EAGAIN: resource temporarily unavailable, lock ${detail}`), { code: 'EAGAIN', errno: -11 });
}

export class Nfs4FileLocks implements LayerLocks {
  readonly writable = true;
  onGrant?: () => void;
  private readonly owner: Buffer;
  /** The lock state this owner has on the file, and the client id generation it belongs to. */
  private lockState: { stateid: Stateid; generation: number } | undefined;
  private held: HeldRange[] = [];
  private closed = false;
  /** The open locks are taken under: read-write where the server allows it (write locks need it). */
  private lockOpen: Promise<OpenState> | undefined;

  constructor(
    private readonly client: Nfs4Client,
    private readonly fh: Buffer,
    /** The file's read-only open: what locks fall back on when a read-write one is refused. */
    private readonly readOpen: OpenState,
    private readonly path: string,
  ) {
    this.owner = client.newLockOwner();
    client.lockHolders.add(this);
  }

  /**
   * Opens the file read-write for this owner's locks, as the kernel's NFS client would for a
   * descriptor open for writing; refused (a read-only export, no write permission), the
   * read-only open serves, and write locks are refused (OPENMODE). The open stays until the
   * locks go: a server refuses to CLOSE an open that has locks (LOCKS_HELD).
   */
  private openForLocks(): Promise<OpenState> {
    this.lockOpen ??= this.client.openState(this.fh, ShareAccess.BOTH).catch((err: unknown) => {
      if (!(err instanceof Nfs4Error) || !WRITE_REFUSED.has(err.status)) throw err;
      log('%s: no read-write open (%s): locks under the read-only one', this.path, err.nfsStatus);
      this.readOpen.refs++;
      return this.readOpen;
    });
    return this.lockOpen;
  }

  private writeLocker(w: XdrWriter, openStateid: Stateid): void {
    const s = this.lockState;
    if (s !== undefined && s.generation === this.client.session.generation) {
      w.bool(false);
      writeStateid(w, current(s.stateid));
      w.uint32(0);
      return;
    }
    w.bool(true).uint32(0);
    writeStateid(w, current(openStateid));
    w.uint32(0).uint64(this.client.session.client).opaque(this.owner, NFS4_OPAQUE_LIMIT);
  }

  /** LOCK; DENIED → EAGAIN. `reclaim`: taking back a lock held before the server restarted. */
  private async lock(exclusive: boolean, start: bigint, len: bigint, wait: boolean, reclaim = false): Promise<void> {
    const type = lockType(exclusive, wait);
    const open = await this.openForLocks();
    const denied = await this.client.withOpen(
      this.fh,
      open,
      (openStateid) => {
        const c = new Compound().putfh(this.fh).add(Op.LOCK, (w) => {
          w.uint32(type).bool(reclaim).uint64(start).uint64(v4Length(start, len));
          this.writeLocker(w, openStateid);
        });
        return this.client.session.run(
          c,
          (reply) => {
            reply.ok(Op.PUTFH);
            const { status, r } = reply.result(Op.LOCK);
            if (status === Nfs4Status.DENIED) return readDenied(r);
            // The server dropped this owner's lock state: the next LOCK makes it anew.
            if (STATE_LOST.has(status)) this.lockState = undefined;
            if (status !== Nfs4Status.OK) throw new Nfs4Error(status, Op.LOCK, `'${this.path}'`);
            this.lockState = { stateid: readStateid(r), generation: this.client.session.generation };
            return undefined;
          },
          { recovering: reclaim },
        );
      },
      reclaim,
    );
    if (denied !== undefined) throw wouldBlock(`'${this.path}' (held by another owner)`);
    const range = rangeOf(start, len);
    this.held = withRange(this.held, range.start, range.end, exclusive);
  }

  private async unlock(start: bigint, len: bigint): Promise<void> {
    const range = rangeOf(start, len);
    this.held = withoutRange(this.held, range.start, range.end);
    const s = this.lockState;
    // No lock state, or the server lost it with the client: nothing there to unlock.
    if (s === undefined || s.generation !== this.client.session.generation) return;
    const c = new Compound().putfh(this.fh).add(Op.LOCKU, (w) => {
      w.uint32(LockType.WRITE).uint32(0);
      writeStateid(w, current(s.stateid));
      w.uint64(start).uint64(v4Length(start, len));
    });
    await this.client.session.run(c, (reply) => {
      reply.ok(Op.PUTFH);
      s.stateid = readStateid(reply.ok(Op.LOCKU, `'${this.path}'`));
    });
  }

  async setLock(type: number, start: bigint, len: bigint, wait?: boolean): Promise<void> {
    if (type === F_UNLCK) return this.unlock(start, len);
    return this.lock(type === F_WRLCK, start, len, wait === true);
  }

  async getLock(type: number, start: bigint, len: bigint): Promise<LayerLock | null> {
    const c = new Compound().putfh(this.fh).add(Op.LOCKT, (w) => {
      w.uint32(type === F_WRLCK ? LockType.WRITE : LockType.READ)
        .uint64(start)
        .uint64(v4Length(start, len));
      w.uint64(this.client.session.client).opaque(this.owner, NFS4_OPAQUE_LIMIT);
    });
    const denied = await this.client.session.run(c, (reply) => {
      reply.ok(Op.PUTFH);
      const { status, r } = reply.result(Op.LOCKT);
      if (status === Nfs4Status.DENIED) return readDenied(r);
      if (status !== Nfs4Status.OK) throw new Nfs4Error(status, Op.LOCKT, `'${this.path}'`);
      return undefined;
    });
    // The holder is another client's owner or a process on the server: no local pid.
    return denied === undefined ? null : { type: denied.exclusive ? F_WRLCK : F_RDLCK, start: denied.start, len: denied.len, pid: 0 };
  }

  flock(exclusive: boolean, wait?: boolean): Promise<void> {
    return this.lock(exclusive, 0n, 0n, wait === true);
  }

  unflock(): Promise<void> {
    return this.unlock(0n, 0n);
  }

  /** The server revoked this client's state: whatever was held is lost, and said so. */
  revoked(): void {
    const held = this.held;
    this.held = [];
    this.lockState = undefined;
    for (const r of held) this.reportLost(r, 'the server revoked it');
  }

  private reportLost(r: HeldRange, why: string): void {
    const bytes = `${r.start}-${r.end === RANGE_END ? 'end' : r.end}`;
    process.stderr.write(`ovshift: ${describeNfsUrl(this.client.url)}: lost a lock on "${this.path}" (bytes ${bytes}): ${why}\n`);
    this.client.lostLocks++;
  }

  /**
   * The server forgot this client: takes back what was held, as reclaims (refused once the
   * server's grace period is over); a lock that cannot be had back is lost, and said so.
   */
  async reclaim(): Promise<void> {
    const held = this.held;
    this.lockState = undefined;
    if (held.length === 0) return;
    this.held = [];
    for (const r of held) {
      try {
        await this.lock(r.exclusive, r.start, lengthOf(r), false, true);
      } catch (err) {
        this.reportLost(r, `the server forgot this client and refused it back: ${(err as Error).message}`);
      }
    }
  }

  /** The owner holds nothing more here: its lock state goes (FREE_STATEID), then its hold on the open. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.client.lockHolders.delete(this);
    const s = this.lockState;
    const free = async (): Promise<void> => {
      if (s === undefined || s.generation !== this.client.session.generation) return;
      try {
        // Whatever is still held (a grant no one came back for) goes first: FREE_STATEID of a
        // lock state with locks fails (LOCKS_HELD), and so would the open's CLOSE.
        if (this.held.length > 0) await this.unlock(0n, 0n);
        await this.client.session.run(
          new Compound().add(Op.FREE_STATEID, (w) => writeStateid(w, s.stateid)),
          (reply) => reply.ok(Op.FREE_STATEID),
        );
      } catch (err) {
        log('%s: letting go of the lock state failed: %s', this.path, (err as Error).message);
      }
    };
    const opened = this.lockOpen;
    void free().then(() => opened?.then((o) => this.client.release(this.fh, o)).catch(() => undefined));
  }
}
