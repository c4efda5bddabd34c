/**
 * Typed face of the N-API addon (src/native/ovshift.c): the syscalls Node lacks, as thin
 * functions, and the FUSE device polling and notifier thread that must be in C (the C file's
 * header says which is which, and why). No logic lives here.
 *
 * Conventions:
 * - Paths are Buffers (raw bytes, never re-encoded) or strings (UTF-8).
 * - `dirfd` may be AT_FDCWD.
 * - Failures reject (or throw, for the synchronous calls) with an Error carrying Node's fs
 *   error shape: `code` ('ENOENT'), `errno` (negative, like Node), `syscall`.
 * - Calls that may block run on the libuv threadpool and return Promises; the synchronous
 *   ones never block (non-blocking fds, ioctls that only register state).
 * - Arguments of the wrong type (or a path containing NUL) throw a TypeError synchronously,
 *   also from the Promise-returning calls.
 */
import * as fs from 'fs';
import * as path from 'path';

export type PathLike = Buffer | string;

export interface FileLock {
  type: number; // F_RDLCK, F_WRLCK, F_UNLCK
  start: bigint;
  len: bigint; // 0 = to end of file
  pid: number;
}

export interface DevReader {
  /** Stop polling; no further callbacks. Idempotent. */
  stop(): void;
  /**
   * After each request, keep reading the (non-blocking) device up to this many microseconds
   * for the next one, which is then handed over at once (0, the default: never). With
   * `unanswered` (element 0: the caller's count of requests read and not yet answered, kept
   * current by the caller), no spin follows a request that count shows still unanswered once
   * its delivery returns.
   */
  setSpin(micros: number, unanswered?: Int32Array): void;
}

export interface NativeAddon {
  /** open("/dev/fuse", O_RDWR | O_NONBLOCK | O_CLOEXEC). Synchronous. */
  devOpen(): number;
  /**
   * Polls a non-blocking fd (the FUSE device, a fanotify group) on the main loop (uv_poll).
   * Whenever it is readable, reads until EAGAIN (at most `maxBatch` reads per call of
   * `onBatch`) into one scratch buffer of `bufSize` bytes and hands each read over as an
   * exact-size copy; with spinning on (setSpin), one read per call, each followed by the spin,
   * whose reads hand over what they find at once, without going back to the loop (at
   * most 64 in a row). On ENODEV (unmounted) or another
   * read error it calls `onBatch(null, errno)` once and stops. EINTR/ENOENT are retried.
   * End of file (read() = 0: not /dev/fuse, but e.g. a socket whose peer left) counts as ENODEV.
   * uv_poll sets O_NONBLOCK on the fd. While polling, the reader keeps itself and the process
   * alive, like a Node handle; call stop() before closing the fd.
   */
  devReader(fd: number, bufSize: number, maxBatch: number, onBatch: (requests: Buffer[] | null, errno: number) => void): DevReader;
  /** writev() on the FUSE fd, synchronously (a reply never blocks). Returns bytes or -errno. */
  devWrite(fd: number, parts: Buffer[]): number;
  /**
   * writev() on a dedicated notifier thread, never the libuv pool: an inval_entry may wait
   * for a directory lock that is released only when the main loop answers a pending request.
   * Writes happen in submission order. `done` gets bytes written or -errno.
   */
  notifyWrite(fd: number, parts: Buffer[], done: (result: number) => void): void;

  mount(source: string, target: PathLike, fstype: string, flags: number, data: string): Promise<void>;
  umount2(target: PathLike, flags: number): Promise<void>;
  /** socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC). Synchronous. */
  socketpair(): [number, number];
  /**
   * Receives one fd passed with SCM_RIGHTS on a unix socket (what fusermount3 sends), as
   * close-on-exec. Rejects ECONNRESET if the peer closed without sending one, EPROTO if a
   * message came without one.
   */
  recvFd(sock: number): Promise<number>;
  /** Sets O_NONBLOCK (the fd fusermount3 passes arrives blocking). Synchronous. */
  setNonblock(fd: number): void;

  openat(dirfd: number, p: PathLike, flags: number, mode: number): Promise<number>;
  /** statx(): resolves to a new Float64Array laid out as statxSync fills it (see StatxField). */
  statx(dirfd: number, p: PathLike, flags: number, mask: number): Promise<Float64Array>;
  fstatx(fd: number, mask: number): Promise<Float64Array>;
  mknodat(dirfd: number, p: PathLike, mode: number, rdevMajor: number, rdevMinor: number): Promise<void>;
  renameat2(olddirfd: number, oldp: PathLike, newdirfd: number, newp: PathLike, flags: number): Promise<void>;
  /** utimensat(); nsec may be UTIME_NOW or UTIME_OMIT. */
  utimensat(dirfd: number, p: PathLike, atimeSec: number, atimeNsec: number, mtimeSec: number, mtimeNsec: number, flags: number): Promise<void>;
  futimens(fd: number, atimeSec: number, atimeNsec: number, mtimeSec: number, mtimeNsec: number): Promise<void>;
  /** uid or gid -1 leaves it unchanged. */
  fchownat(dirfd: number, p: PathLike, uid: number, gid: number, flags: number): Promise<void>;
  fchmodat(dirfd: number, p: PathLike, mode: number, flags: number): Promise<void>;

  /** fcntl(fd, cmd, struct flock). For *GETLK resolves to the reported lock, else to null. */
  fcntlLock(fd: number, cmd: number, type: number, start: bigint, len: bigint): Promise<FileLock | null>;
  flock(fd: number, op: number): Promise<void>;
  /**
   * The same on the calling thread, for non-blocking commands on local files: null or the
   * lock (GETLK commands), 0 for flock, or -errno.
   */
  fcntlLockSync(fd: number, cmd: number, type: number, start: bigint, len: bigint): FileLock | null | number;
  flockSync(fd: number, op: number): number;
  fallocate(fd: number, mode: number, offset: bigint, len: bigint): Promise<void>;
  lseek(fd: number, offset: bigint, whence: number): Promise<bigint>;
  ftruncate(fd: number, len: bigint): Promise<void>;
  copyFileRange(fdIn: number, offIn: bigint, fdOut: number, offOut: bigint, len: number, flags: number): Promise<number>;
  /** sendfile(2) of `len` bytes from `offIn` of fdIn to `offOut` of fdOut (whose file offset it moves). */
  sendfile(fdIn: number, offIn: bigint, fdOut: number, offOut: bigint, len: number): Promise<number>;
  /** ioctl(destFd, FICLONE, srcFd). */
  ficlone(destFd: number, srcFd: number): Promise<void>;

  /** malloc_trim(0): hands freed heap back to the system; 1 if any went back. */
  mallocTrim(): number;

  /**
   * preadv2()/pwritev2() on the calling thread; flags such as RWF_NOWAIT. Returns bytes or
   * -errno (-EAGAIN: with RWF_NOWAIT, the data is not in memory and the call would wait).
   */
  preadv2Sync(fd: number, buf: Buffer, bufOffset: number, length: number, position: number, flags: number): number;
  pwritev2Sync(fd: number, buf: Buffer, bufOffset: number, length: number, position: number, flags: number): number;

  /** ioctl(FUSE_DEV_IOC_BACKING_OPEN): registers a passthrough backing file; returns its id. */
  backingOpen(fuseFd: number, backingFd: number): number;
  backingClose(fuseFd: number, backingId: number): number;

  /**
   * statx() on the calling thread, for layers on local filesystems only (dcache speed, no
   * thread round trip). Fills `out` (indices: StatxField) and returns 0, or returns -errno.
   */
  statxSync(dirfd: number, p: PathLike, flags: number, mask: number, out: Float64Array): number;
  /** fstatx of an open fd on the calling thread; as statxSync. */
  fstatxSync(fd: number, out: Float64Array): number;
  /** fcntl(fd, F_SETFL, flags): 0 or -errno. */
  setStatusFlagsSync(fd: number, flags: number): number;

  // Calling-thread twins of the calls above, for local-filesystem layers (see statxSync):
  // they return 0 (or the value) on success and -errno on failure, without throwing.
  mknodatSync(dirfd: number, p: PathLike, mode: number, rdevMajor: number, rdevMinor: number): number;
  renameat2Sync(olddirfd: number, oldp: PathLike, newdirfd: number, newp: PathLike, flags: number): number;
  utimensatSync(dirfd: number, p: PathLike, atimeSec: number, atimeNsec: number, mtimeSec: number, mtimeNsec: number, flags: number): number;
  fchownatSync(dirfd: number, p: PathLike, uid: number, gid: number, flags: number): number;
  fchmodatSync(dirfd: number, p: PathLike, mode: number, flags: number): number;

  // Relative to a directory fd (AT_FDCWD for plain paths): layers are reached through their
  // root's descriptor, so paths near PATH_MAX inside them still fit. xattr calls use Linux
  // 6.13's *xattrat, or /proc/self/fd/<dirfd>/<path> on older kernels. getxattrat with an
  // empty path reads the descriptor's own (fgetxattr).
  getxattrat(dirfd: number, p: PathLike, name: PathLike, follow: boolean): Promise<Buffer>;
  getxattratSync(dirfd: number, p: PathLike, name: PathLike, follow: boolean): Buffer | number;
  setxattrat(dirfd: number, p: PathLike, name: PathLike, value: Buffer, flags: number, follow: boolean): Promise<void>;
  setxattratSync(dirfd: number, p: PathLike, name: PathLike, value: Buffer, flags: number, follow: boolean): number;
  listxattrat(dirfd: number, p: PathLike, follow: boolean): Promise<Buffer>;
  listxattratSync(dirfd: number, p: PathLike, follow: boolean): Buffer | number;
  removexattrat(dirfd: number, p: PathLike, name: PathLike, follow: boolean): Promise<void>;
  removexattratSync(dirfd: number, p: PathLike, name: PathLike, follow: boolean): number;
  mkdirat(dirfd: number, p: PathLike, mode: number): Promise<void>;
  mkdiratSync(dirfd: number, p: PathLike, mode: number): number;
  symlinkat(target: PathLike, dirfd: number, p: PathLike): Promise<void>;
  symlinkatSync(target: PathLike, dirfd: number, p: PathLike): number;
  linkat(olddirfd: number, oldp: PathLike, newdirfd: number, newp: PathLike, flags: number): Promise<void>;
  linkatSync(olddirfd: number, oldp: PathLike, newdirfd: number, newp: PathLike, flags: number): number;
  unlinkat(dirfd: number, p: PathLike, flags: number): Promise<void>;
  unlinkatSync(dirfd: number, p: PathLike, flags: number): number;
  readlinkat(dirfd: number, p: PathLike): Promise<Buffer>;
  readlinkatSync(dirfd: number, p: PathLike): Buffer | number;
  /**
   * A directory's entries except "." and "..", packed: per entry u32 ino low, u32 ino high,
   * u16 name length, u8 d_type, then the name bytes (see unpackDirents). The directory is
   * opened O_NOATIME where permitted.
   */
  readdirat(dirfd: number, p: PathLike): Promise<Buffer>;
  readdiratSync(dirfd: number, p: PathLike): Buffer | number;
  openatSync(dirfd: number, p: PathLike, flags: number, mode: number): number;
  /** openat2(); `resolve` is a RESOLVE_* mask. The Sync twin returns the fd or -errno. */
  openat2(dirfd: number, p: PathLike, flags: number, mode: number, resolve: number): Promise<number>;
  openat2Sync(dirfd: number, p: PathLike, flags: number, mode: number, resolve: number): number;
  /** open_tree(AT_FDCWD, path, flags) on the calling thread: the fd, or -errno. */
  openTreeSync(p: PathLike, flags: number): number;
  /**
   * The inode flag ioctls on `buf`: 0 FS_IOC_GETFLAGS, 1 FS_IOC_SETFLAGS (an int), 2
   * FS_IOC_FSGETXATTR, 3 FS_IOC_FSSETXATTR (a struct fsxattr, 28 bytes). 0 or -errno.
   */
  fileattrSync(fd: number, which: 0 | 1 | 2 | 3, buf: Buffer): number;
  /** mount_setattr(fd, "", AT_EMPTY_PATH) with attr_set/attr_clr (MOUNT_ATTR_*): 0 or -errno. */
  mountSetattrSync(fd: number, attrSet: number, attrClr: number): number;
  /** fanotify_init(): the group's fd, or -errno. */
  fanotifyInitSync(flags: number, eventFlags: number): number;
  /** fanotify_mark() of `p` relative to `dirfd` (which may be an O_PATH descriptor): 0 or -errno. */
  fanotifyMarkSync(fd: number, flags: number, mask: number, dirfd: number, p: PathLike): number;
  /** open_by_handle_at() with the handle fanotify reported: the fd, or -errno. */
  openByHandleAtSync(mountFd: number, handleType: number, handle: Buffer, flags: number): number;
  /** fstatfs()'s f_fsid, the 8 bytes fanotify reports events' filesystems by; or -errno. */
  fsidSync(fd: number): Buffer | number;

  readonly constants: Readonly<Record<string, number>>;
}

export interface PackedDirent {
  name: Buffer;
  type: number;
  ino: number;
}

/** Unpacks what readdirat/readdiratSync return. */
export function unpackDirents(buf: Buffer): PackedDirent[] {
  const out: PackedDirent[] = [];
  for (let at = 0; at < buf.length;) {
    const ino = buf.readUInt32LE(at) + buf.readUInt32LE(at + 4) * 2 ** 32;
    const len = buf.readUInt16LE(at + 8);
    const type = buf[at + 10]!;
    out.push({ name: buf.subarray(at + 11, at + 11 + len), type, ino });
    at += 11 + len;
  }
  return out;
}

/**
 * Layout of the Float64Array statx/fstatx resolve to and statxSync/fstatxSync fill (mirrors the
 * enum in ovshift.c). ino, size and blocks are exact below 2^53; inoHi/inoLo give the exact ino.
 */
export const StatxField = {
  mask: 0,
  mode: 1,
  nlink: 2,
  uid: 3,
  gid: 4,
  rdevMajor: 5,
  rdevMinor: 6,
  devMajor: 7,
  devMinor: 8,
  ino: 9,
  inoHi: 10,
  inoLo: 11,
  size: 12,
  blocks: 13,
  blksize: 14,
  atimeSec: 15,
  atimeNsec: 16,
  mtimeSec: 17,
  mtimeNsec: 18,
  ctimeSec: 19,
  ctimeNsec: 20,
  btimeSec: 21,
  btimeNsec: 22,
  attributes: 23,
} as const;
export const STATX_FIELDS = 24;

/** The addon is built into <repo>/build/Release; compiled JS lives somewhere below <repo>. */
function load(): NativeAddon {
  const rel = path.join('build', 'Release', 'ovshift_native.node');
  for (let dir = __dirname; ; dir = path.dirname(dir)) {
    const candidate = path.join(dir, rel);
    // eslint-disable-next-line @typescript-eslint/no-require-imports -- an addon is found by path at run time
    if (fs.existsSync(candidate)) return require(candidate) as NativeAddon;
    if (path.dirname(dir) === dir) throw new Error(`ovshift: native addon ${rel} not found; run npm install`);
  }
}

export const native: NativeAddon = load();
export const C = native.constants;
export const AT_FDCWD: number = -100;
