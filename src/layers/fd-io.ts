/**
 * Reads and writes on layer files: on the event loop when the kernel can do them without
 * waiting (RWF_NOWAIT: the bytes are in the page cache, the write needs no disk), otherwise on
 * the thread pool. A thread round trip costs more than copying a megabyte from the page cache,
 * and a read that must wait for a disk never stalls the loop.
 *
 * FdFile is an open file of a local layer held by its descriptor (DescriptorFile in types.ts):
 * everything the overlay does to an open file, locks included, goes through it.
 */
import { openFlags, settle } from './safe-open';
import * as fs from 'fs';
import { statfsSync } from 'fs';
import { C, native, STATX_FIELDS, StatxField as F, type FileLock } from '../native';
import { errnoError, errnoNumber } from '../util/errno';
import type { DescriptorFile, LayerAttr, LayerFile, LayerLocks } from './types';
import type { Timespec } from '../util/linux';

const RWF_NOWAIT = C.RWF_NOWAIT!;
const EAGAIN = errnoNumber('EAGAIN');
const EOPNOTSUPP = errnoNumber('EOPNOTSUPP');
const ENODATA = errnoNumber('ENODATA');
export const STATX_BTIME = 0x800;
export const STATX_MASK = 0x7ff | STATX_BTIME;
/** lseek whences for data and holes. */
export const SEEK_DATA = C.SEEK_DATA!;
export const SEEK_HOLE = C.SEEK_HOLE!;
const LOCK_SH = 1;
const LOCK_EX = 2;
const LOCK_UN = 8;
const LOCK_NB = 4;

/** The call would have waited, or the file cannot say so: do it on the thread pool. */
function wouldWait(res: number): boolean {
  return res === -EAGAIN || res === -EOPNOTSUPP;
}

/**
 * inMemory: the file is on tmpfs or ramfs, which refuses RWF_NOWAIT (EOPNOTSUPP) and whose
 * reads never wait for a disk: read on the loop.
 */
export function readAt(
  fd: number,
  buf: Buffer,
  offset: number,
  length: number,
  position: number,
  knownEnd: number | undefined,
  inMemory: boolean,
): Promise<number> {
  const flags = inMemory ? 0 : RWF_NOWAIT;
  let done = 0;
  // A short read is the end of the file or the end of what is in memory; one more try tells,
  // unless it reached the end the reader knows (see LayerFile.read).
  for (let tries = 0; tries < 2 && done < length; tries++) {
    const res = native.preadv2Sync(fd, buf, offset + done, length - done, position + done, flags);
    if (res === 0) return Promise.resolve(done);
    if (res < 0) {
      if (!wouldWait(res)) return Promise.reject(errnoError(res, 'read'));
      break;
    }
    done += res;
    // A read that could wait stops short only at the end of the file.
    if (flags === 0 || (knownEnd !== undefined && position + done >= knownEnd)) return Promise.resolve(done);
  }
  if (done === length) return Promise.resolve(done);
  return threadRead(fd, buf, offset + done, length - done, position + done).then((n) => done + n);
}

/** inMemory: the file is on tmpfs or ramfs, whose writes never wait for a disk (nor say so). */
export function writeAt(fd: number, buf: Buffer, offset: number, length: number, position: number, inMemory: boolean): Promise<number> {
  const res = native.pwritev2Sync(fd, buf, offset, length, position, inMemory ? 0 : RWF_NOWAIT);
  if (res === length) return Promise.resolve(res);
  if (res < 0 && !wouldWait(res)) return Promise.reject(errnoError(res, 'write'));
  const done = Math.max(res, 0);
  return threadWrite(fd, buf, offset + done, length - done, position + done).then((n) => done + n);
}

/**
 * close(): on the loop for files of local filesystems, where it returns at once; on the thread
 * pool for network ones, where it may flush to the server first.
 */
export function closeFd(fd: number, onLoop: boolean): Promise<void> {
  if (!onLoop) return new Promise((resolve, reject) => fs.close(fd, (err) => (err ? reject(err) : resolve())));
  try {
    fs.closeSync(fd);
    return Promise.resolve();
  } catch (err) {
    return Promise.reject(err);
  }
}

function threadRead(fd: number, buf: Buffer, offset: number, length: number, position: number): Promise<number> {
  return new Promise((resolve, reject) => fs.read(fd, buf, offset, length, position, (err, n) => (err ? reject(err) : resolve(n))));
}

function threadWrite(fd: number, buf: Buffer, offset: number, length: number, position: number): Promise<number> {
  return new Promise((resolve, reject) => fs.write(fd, buf, offset, length, position, (err, n) => (err ? reject(err) : resolve(n))));
}

/** statfs f_type of filesystems whose calls may wait on a server or another process. */
const REMOTE_FS_MAGIC = new Set([
  0x6969, // nfs
  0x517b, // smb
  0xff534d42, // cifs
  0xfe534d42, // smb2
  0x65735546, // fuse
  0x00c36400, // ceph
  0x01021997, // 9p
  0x5346414f, // afs
  0x73757245, // coda
  0x47504653, // gpfs
  0x0bd00bd0, // lustre
  0x013111a8, // ibrix
  0x19830326, // fhgfs/beegfs
]);

export function isRemoteFilesystem(path: string): boolean {
  return REMOTE_FS_MAGIC.has(statfsSync(path).type >>> 0);
}

function identityOf(dev: number, ino: number, hasBtime: boolean, btimeSec: number, btimeNsec: number): string {
  // The birth time tells a reused inode number from the object that had it before. Joined
  // rather than concatenated: one flat string per node, not a tree of pieces.
  return hasBtime ? [dev, ino, btimeSec, btimeNsec].join(':') : [dev, ino].join(':');
}

/**
 * The fstat results of FdFile's calling-thread stats: filled and read in one synchronous call,
 * so one serves them all (a Float64Array this large lives outside the JS heap: one per call
 * would be a malloc and a free).
 */
const fstatBuf = new Float64Array(STATX_FIELDS);

/** A layer object's attributes from statx's fields (as native.statx lays them out). */
export function attrFromArray(s: Float64Array): LayerAttr {
  const dev = s[F.devMajor]! * 0x100000 + s[F.devMinor]!;
  const ino = s[F.ino]!;
  return {
    mode: s[F.mode]!,
    nlink: s[F.nlink]!,
    uid: s[F.uid]!,
    gid: s[F.gid]!,
    rdevMajor: s[F.rdevMajor]!,
    rdevMinor: s[F.rdevMinor]!,
    size: s[F.size]!,
    blocks: s[F.blocks]!,
    blksize: s[F.blksize]!,
    atime: { sec: s[F.atimeSec]!, nsec: s[F.atimeNsec]! },
    mtime: { sec: s[F.mtimeSec]!, nsec: s[F.mtimeNsec]! },
    ctime: { sec: s[F.ctimeSec]!, nsec: s[F.ctimeNsec]! },
    ino,
    dev,
    identity: identityOf(dev, ino, (s[F.mask]! & STATX_BTIME) !== 0, s[F.btimeSec]!, s[F.btimeNsec]!),
    btime: (s[F.mask]! & STATX_BTIME) !== 0 ? { sec: s[F.btimeSec]!, nsec: s[F.btimeNsec]! } : undefined,
    statxAttributes: s[F.attributes]!,
  };
}

/**
 * An open file of a local filesystem, held by its descriptor: a directory layer's file, the
 * upper's, or a descriptor pinning an object no name reaches any more. `sync`: its calls may run
 * on the event loop (a local filesystem); `inMemory`: reads and writes never wait for a disk
 * (tmpfs).
 */
export class FdFile implements DescriptorFile {
  /** Set by a layer that checked the file's attributes as it opened it. */
  openedAttr?: LayerAttr;

  constructor(
    readonly fd: number,
    readonly sync: boolean,
    readonly inMemory = false,
  ) {}

  read(buf: Buffer, offset: number, length: number, position: number, knownEnd?: number): Promise<number> {
    return readAt(this.fd, buf, offset, length, position, knownEnd, this.inMemory);
  }

  write(buf: Buffer, offset: number, length: number, position: number): Promise<number> {
    return writeAt(this.fd, buf, offset, length, position, this.inMemory);
  }

  async stat(): Promise<LayerAttr> {
    if (this.sync) return this.statSync();
    return attrFromArray(await native.fstatx(this.fd, STATX_MASK));
  }

  /** fstat on the calling thread. */
  statSync(): LayerAttr {
    const res = native.fstatxSync(this.fd, fstatBuf);
    if (res < 0) throw errnoError(res, 'fstatx');
    return attrFromArray(fstatBuf);
  }

  /** fstat on the calling thread; null when it fails. */
  statNow(): LayerAttr | null {
    return native.fstatxSync(this.fd, fstatBuf) === 0 ? attrFromArray(fstatBuf) : null;
  }

  close(): Promise<void> {
    return closeFd(this.fd, this.sync);
  }

  /** close() on the calling thread. */
  closeSync(): void {
    fs.closeSync(this.fd);
  }

  /** close() on the calling thread, errors dropped (the descriptor is gone either way). */
  closeQuietly(): void {
    try {
      fs.closeSync(this.fd);
    } catch {
      // gone either way
    }
  }

  /** Opens the same object again with new flags (through /proc/self/fd: it may have no name any more). */
  reopenSync(flags: number): FdFile {
    const path = `/proc/self/fd/${this.fd}`;
    return new FdFile(settle(fs.openSync(path, openFlags(flags)), flags, path), true);
  }

  truncate(size: bigint): Promise<void> {
    return native.ftruncate(this.fd, size);
  }

  truncateSync(size: number): void {
    fs.ftruncateSync(this.fd, size);
  }

  allocate(mode: number, offset: bigint, length: bigint): Promise<void> {
    return native.fallocate(this.fd, mode, offset, length);
  }

  seek(offset: bigint, whence: number): Promise<bigint> {
    return native.lseek(this.fd, offset, whence);
  }

  /** fchown, on the calling thread; -1 leaves that id unchanged. */
  chownSync(uid: number, gid: number): void {
    fs.fchownSync(this.fd, uid, gid);
  }

  /** fchmod, on the calling thread. */
  chmodSync(mode: number): void {
    fs.fchmodSync(this.fd, mode);
  }

  /** fstat's mode, on the calling thread. */
  getxattrSync(name: string): Buffer | null {
    const v = native.getxattratSync(this.fd, '', Buffer.from(name, 'latin1'), true);
    if (typeof v !== 'number') return v;
    if (v === -ENODATA || v === -EOPNOTSUPP) return null;
    throw errnoError(v, 'fgetxattr');
  }

  modeSync(): number {
    return fs.fstatSync(this.fd).mode;
  }

  /** futimens; nsec may be UTIME_NOW or UTIME_OMIT (see upper-dir.ts). */
  utimens(atime: Timespec, mtime: Timespec): Promise<void> {
    return native.futimens(this.fd, atime.sec, atime.nsec, mtime.sec, mtime.nsec);
  }

  /** fsync, or fdatasync. */
  flush(datasync: boolean): Promise<void> {
    return new Promise<void>((resolve, reject) => (datasync ? fs.fdatasync : fs.fsync)(this.fd, (err) => (err ? reject(err) : resolve())));
  }

  /** FICLONE: this file becomes a copy of `src` sharing its blocks. */
  cloneFrom(src: DescriptorFile): Promise<void> {
    return native.ficlone(this.fd, src.fd);
  }

  /** copy_file_range from `src` into this file: the bytes copied. */
  copyRangeFrom(src: DescriptorFile, srcPos: bigint, pos: bigint, length: number): Promise<number> {
    return native.copyFileRange(src.fd, srcPos, this.fd, pos, length, 0);
  }

  /** sendfile from `src` into this file, also between filesystems: the bytes copied. Moves this file's offset. */
  sendFrom(src: DescriptorFile, srcPos: bigint, pos: bigint, length: number): Promise<number> {
    return native.sendfile(src.fd, srcPos, this.fd, pos, length);
  }

  /**
   * A new descriptor of the same object to take locks through (an OFD lock or a flock belongs
   * to the open file it was taken through): read-write, as write locks need, else read-only.
   */
  lockHandle(): FileLocks {
    const path = `/proc/self/fd/${this.fd}`;
    const local = !isRemoteFilesystem(path);
    try {
      return new FileLocks(fs.openSync(path, fs.constants.O_RDWR), true, local);
    } catch {
      return new FileLocks(fs.openSync(path, fs.constants.O_RDONLY), false, local);
    }
  }
}

/** The descriptor-backed view of a layer file, when it has a descriptor (not one of an nfs:// layer). */
export function localFileOf(file: LayerFile | undefined): DescriptorFile | undefined {
  if (file === undefined) return undefined;
  if (file instanceof FdFile) return file;
  return file.fd === undefined ? undefined : new FdFile(file.fd, true);
}

function throwIfFailed<T>(res: T | number, syscall: string): T {
  if (typeof res === 'number' && res < 0) throw errnoError(res, syscall);
  return res as T;
}

/**
 * A descriptor locks on a layer file are taken through. On a local filesystem, where a
 * non-blocking lock call answers at once, they are made on the event loop; on a network one
 * (a kernel NFS mount, say) they wait for the server: thread pool.
 */
export class FileLocks implements LayerLocks {
  constructor(
    private readonly fd: number,
    readonly writable: boolean,
    private readonly local: boolean,
  ) {}

  private fcntl(cmd: number, type: number, start: bigint, len: bigint): Promise<FileLock | null> {
    if (this.local) {
      try {
        return Promise.resolve(throwIfFailed(native.fcntlLockSync(this.fd, cmd, type, start, len), 'fcntl'));
      } catch (err) {
        return Promise.reject(err);
      }
    }
    return native.fcntlLock(this.fd, cmd, type, start, len);
  }

  /** An OFD lock (F_OFD_SETLK, never waiting); type F_UNLCK unlocks; len 0: to the end. */
  async setLock(type: number, start: bigint, len: bigint): Promise<void> {
    await this.fcntl(C.F_OFD_SETLK!, type, start, len);
  }

  /** F_OFD_GETLK: a lock someone else holds that conflicts with this one, or null. */
  async getLock(type: number, start: bigint, len: bigint): Promise<FileLock | null> {
    return this.fcntl(C.F_OFD_GETLK!, type, start, len);
  }

  /** flock(), never waiting: shared or exclusive. */
  async flock(exclusive: boolean): Promise<void> {
    await this.flockOp((exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB);
  }

  async unflock(): Promise<void> {
    await this.flockOp(LOCK_UN);
  }

  private async flockOp(op: number): Promise<void> {
    if (this.local) throwIfFailed(native.flockSync(this.fd, op), 'flock');
    else await native.flock(this.fd, op);
  }

  close(): void {
    fs.closeSync(this.fd);
  }
}
