/**
 * What the overlay needs of a layer, whatever holds it (a directory, a kernel NFS mount, an
 * nfs:// export). Paths are relative to the layer root, as binary strings (one char per byte,
 * 'latin1'), '' for the root itself: file names on Linux are bytes, not UTF-8.
 */

import type { StatfsFigures, Timespec } from '../util/linux';

export interface LayerAttr {
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  rdevMajor: number;
  rdevMinor: number;
  size: number;
  blocks: number;
  blksize: number;
  atime: Timespec;
  mtime: Timespec;
  ctime: Timespec;
  /** Inode number within the layer's filesystem (exact below 2^53). */
  ino: number;
  /** The layer filesystem's device, for telling filesystems apart. */
  dev: number;
  /**
   * What the object is, within its layer: the same while the name keeps pointing at the same
   * object, different once it points at another one (even if an inode number was reused).
   */
  identity: string;
  /** Birth time, where the layer's filesystem keeps one. */
  btime?: Timespec;
  /** statx's stx_attributes (STATX_ATTR_*), where the layer is a local filesystem. */
  statxAttributes?: number;
  /**
   * The layer's own change counter for the object, where it keeps one (NFSv4's change
   * attribute): different after any change of data or metadata, even one that keeps the size
   * and times (a rewrite within the same timestamp tick, or times set back).
   */
  change?: string;
}

export interface LayerDirent {
  name: string;
  /** d_type (DT_*), DT_UNKNOWN when the layer does not say. */
  type: number;
  ino: number;
  /** The entry's attributes as the listing found them, where it gives them (NFS READDIRPLUS). */
  attr?: LayerAttr;
}

export type LayerStatfs = StatfsFigures;

/**
 * An object of a layer as the overlay found it: its path from the layer root, and the identity
 * the layer gave it then. A layer that can reach an object by its identity (an NFS file handle)
 * does, as an NFS client uses the handle its LOOKUP returned, and goes by the path only when
 * the server no longer knows the handle; a layer of local directories goes by the path.
 */
export interface LayerObject {
  readonly path: string;
  readonly identity: string;
}

/** A path from the layer root, or an object found before (see LayerObject). */
export type LayerPath = string | LayerObject;

export function pathOf(at: LayerPath): string {
  return typeof at === 'string' ? at : at.path;
}

/** An object of a local layer reached relative to a directory descriptor (the upper's write calls take one). */
export interface Loc {
  readonly fd: number;
  readonly path: Buffer;
}

/** Bytes lent by a layer: `release` once they are used (the layer may then reuse their memory). */
export interface LentParts {
  readonly parts: Buffer[];
  release(): void;
}

/** An open file of a layer, read through positional reads. */
export interface LayerFile {
  /**
   * `knownEnd`: the size the reader knows the file by (the kernel's, for a lower file only the
   * daemon reports sizes of): a short read that reaches it may be taken as the end of the file
   * without asking again. Bytes past it are never needed: the kernel shows none of them.
   */
  read(buf: Buffer, offset: number, length: number, position: number, knownEnd?: number): Promise<number>;
  /**
   * The bytes `read` would give, as buffers the layer already holds (no copy), for layers whose
   * data arrives in buffers of their own (NFS replies); the overlay prefers it where present.
   * `knownEnd` as for `read`.
   */
  readParts?(length: number, position: number, knownEnd?: number): Promise<LentParts>;
  /** Drops bytes read ahead of the reads: the file changed (its attributes say so). */
  forgetReadAhead?(): void;
  /** Its attributes as opening it found them, where the open gave them at no extra cost. */
  readonly openedAttr?: LayerAttr;
  stat(): Promise<LayerAttr>;
  close(): Promise<void>;
  /** The local descriptor, when the layer has one (locks and copy-up use it). */
  readonly fd?: number;
  /**
   * The first `size` bytes in order (fewer if the file is shorter), for layers that read ahead
   * better than one read() after another (several requests in flight); copy-up uses it.
   */
  chunks?(size: number): AsyncIterable<Buffer>;
  /**
   * Locks on this file that the layer's other users see (a local file's OFD locks and flocks,
   * an NFS server's lock manager); absent where the layer has none.
   */
  lockHandle?(): LayerLocks;
}

/**
 * An open file of a local filesystem held by its descriptor: a directory layer's file, the
 * upper's, or one pinning an object no name reaches any more. What the overlay does to an open
 * file (writes, SETATTR through a handle, copy-up, locks underneath) it does through these.
 * Calls named *Sync run on the calling thread.
 */
export interface DescriptorFile extends LayerFile {
  readonly fd: number;
  write(buf: Buffer, offset: number, length: number, position: number): Promise<number>;
  /** fstat, throwing on failure. */
  statSync(): LayerAttr;
  /** fstat; null when it fails. */
  statNow(): LayerAttr | null;
  /** fstat's mode. */
  modeSync(): number;
  /** fgetxattr: the value, or null when the file has none by that name (or no xattrs). */
  getxattrSync(name: string): Buffer | null;
  closeSync(): void;
  /** close(), errors dropped: the descriptor is gone either way. */
  closeQuietly(): void;
  /** The same object opened again with new flags (through /proc/self/fd: it may have no name any more). */
  reopenSync(flags: number): DescriptorFile;
  truncate(size: bigint): Promise<void>;
  truncateSync(size: number): void;
  /** fallocate(). */
  allocate(mode: number, offset: bigint, length: bigint): Promise<void>;
  /** lseek() (SEEK_DATA, SEEK_HOLE…). */
  seek(offset: bigint, whence: number): Promise<bigint>;
  /** fchown; -1 leaves that id unchanged. */
  chownSync(uid: number, gid: number): void;
  chmodSync(mode: number): void;
  /** futimens; nsec may be UTIME_NOW or UTIME_OMIT (see upper-dir.ts). */
  utimens(atime: Timespec, mtime: Timespec): Promise<void>;
  /** fsync, or fdatasync. */
  flush(datasync: boolean): Promise<void>;
  /** FICLONE: this file becomes a copy of `src` sharing its blocks. */
  cloneFrom(src: DescriptorFile): Promise<void>;
  /** copy_file_range from `src` into this file: the number of bytes copied. */
  copyRangeFrom(src: DescriptorFile, srcPos: bigint, pos: bigint, length: number): Promise<number>;
  /** sendfile from `src` into this file, also between filesystems: the bytes copied. Moves this file's offset. */
  sendFrom(src: DescriptorFile, srcPos: bigint, pos: bigint, length: number): Promise<number>;
  /**
   * A new descriptor of the same object to take locks on it through (an OFD lock or a flock
   * belongs to the open file it was taken through): read-write, as write locks need, else
   * read-only.
   */
  lockHandle(): LayerLocks;
}

/** A lock someone holds on a file (fcntl's struct flock). */
export interface LayerLock {
  type: number;
  start: bigint;
  /** 0: to the end of the file. */
  len: bigint;
  pid: number;
}

/**
 * Locks taken on a layer file, never waiting (a conflict fails with EAGAIN or EWOULDBLOCK).
 * `wait` says the caller will wait and ask again: a layer may then have the holder of the lock
 * (an NFS server) queue the request, answer 'queued' instead of failing, and call `onGrant`
 * once it can be had.
 */
export interface LayerLocks {
  /** Whether write locks can be taken (the descriptor is open for writing). */
  readonly writable: boolean;
  /** An OFD lock (F_OFD_SETLK); type F_UNLCK unlocks; len 0: to the end of the file. */
  setLock(type: number, start: bigint, len: bigint, wait?: boolean): Promise<void | 'queued'>;
  /** F_OFD_GETLK: a lock someone else holds that conflicts with this one, or null. */
  getLock(type: number, start: bigint, len: bigint): Promise<LayerLock | null>;
  /** flock(), shared or exclusive. */
  flock(exclusive: boolean, wait?: boolean): Promise<void | 'queued'>;
  unflock(): Promise<void>;
  /** The waiter gave up: what was queued for it goes. */
  withdraw?(): void;
  /** Set by the caller: a queued request can be had now. */
  onGrant?: () => void;
  close(): void;
}

/**
 * A change a watched layer saw, its objects named by identity (see LayerAttr.identity):
 *  entry      the name `name` in the directory `dir` appeared, went, or now names another object
 *  object     an object's data changed, or its metadata (`meta`: mode, owner, times, xattrs, link
 *             count)
 *  lost       changes were missed (the kernel's queue overflowed): anything may have changed
 *  unwatched  watching ended for good: from now on nothing is reported
 */
export type LayerChange =
  { kind: 'entry'; dir: string; name: string } | { kind: 'object'; identity: string; meta: boolean } | { kind: 'lost' } | { kind: 'unwatched' };

/** A layer's subscription to its changes. */
export interface LayerWatch {
  close(): void;
}

/** A layer the overlay reads: every lower layer, and the upper's read side. */
export interface ReadableLayer {
  /** For messages and logs: "lower 1 (/srv/root)". */
  readonly label: string;
  /** lstat(): null when the object is absent (ENOENT, or ENOTDIR on the way). */
  stat(at: LayerPath): Promise<LayerAttr | null>;
  /**
   * stat() of the entry `name` of the directory `dir`: one request to a layer that reaches `dir`
   * by its identity, however deep it is.
   */
  lookup(dir: LayerPath, name: string): Promise<LayerAttr | null>;
  readdir(at: LayerPath): Promise<LayerDirent[]>;
  readlink(at: LayerPath): Promise<Buffer>;
  /** The value, or null when the object has no such xattr or the layer has no xattrs. */
  getxattr(at: LayerPath, name: string): Promise<Buffer | null>;
  /** Names, empty when the layer has no xattrs. */
  listxattr(at: LayerPath): Promise<string[]>;
  /** Opens the object for reading: given a LayerObject, that object, never another one. */
  openRead(at: LayerPath): Promise<LayerFile>;
  /**
   * Opens what the entry `name` of `dir` leads to now if it is still the object `identity`,
   * else null (the name is gone, or leads to another object). Close-to-open: a name replaced
   * on the layer is never read through the object it named before. `readSoon`: the caller
   * expects reads from the file's start soon (the kernel holds none of its pages); a layer
   * reached over a network may fetch the first bytes meanwhile.
   */
  openEntry(dir: LayerPath, name: string, identity: string, readSoon?: boolean): Promise<LayerFile | null>;
  statfs(): Promise<LayerStatfs>;
  /**
   * Where locks taken through the mount on its files are also taken, as things stand now (for
   * `ovshift ctl MNT status`); its backend's fixed description when absent.
   */
  sharedLocksNow?(): string;
  /**
   * What a local filesystem can store instead of the xattr `name` (which the upper refused) so
   * that a copy grants what the original did (an NFSv4 ACL: the POSIX ACLs granting exactly
   * the same); a string says why there is nothing. Absent, or undefined: no equivalent.
   */
  storableXattrs?(name: string, value: Buffer, isDir: boolean): { name: string; value: Buffer }[] | string | undefined;
  /** How the layer is reached, where it is a network protocol ("NFSv4.1"). */
  readonly protocol?: string;
  /**
   * Has every later change to the layer's objects, made by anyone, reported to `onChanges`
   * soon after it completes; or says why it cannot (then it reports nothing). Absent: never.
   * Several layers may pass the same `onChanges`: a change is reported to it once.
   */
  watch?(onChanges: (changes: LayerChange[]) => void): LayerWatch | string;
  /** Lets go of what the layer holds (descriptors, an NFS client's connection) when the mount ends; once. */
  close(): void | Promise<void>;
}

/** Joins a relative layer path and a name. */
export function childPath(dir: string, name: string): string {
  return dir === '' ? name : `${dir}/${name}`;
}

export function parentPath(path: string): string {
  const i = path.lastIndexOf('/');
  return i < 0 ? '' : path.slice(0, i);
}

export function baseName(path: string): string {
  return path.slice(path.lastIndexOf('/') + 1);
}
