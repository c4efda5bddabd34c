/**
 * FUSE kernel ABI: opcodes, flags and fixed struct sizes, protocol 7.31 to 7.45
 * (include/uapi/linux/fuse.h). Layouts themselves live in requests.ts / replies.ts.
 */

export const KERNEL_VERSION = 7;
/** Highest minor we speak; the kernel here offers 7.45. */
export const KERNEL_MINOR_VERSION = 45;
/** Oldest minor we accept: below it struct layouts differ in ways we do not decode. */
export const MIN_MINOR_VERSION = 31;
export const ROOT_ID = 1;

export enum Op {
  LOOKUP = 1,
  FORGET = 2,
  GETATTR = 3,
  SETATTR = 4,
  READLINK = 5,
  SYMLINK = 6,
  MKNOD = 8,
  MKDIR = 9,
  UNLINK = 10,
  RMDIR = 11,
  RENAME = 12,
  LINK = 13,
  OPEN = 14,
  READ = 15,
  WRITE = 16,
  STATFS = 17,
  RELEASE = 18,
  FSYNC = 20,
  SETXATTR = 21,
  GETXATTR = 22,
  LISTXATTR = 23,
  REMOVEXATTR = 24,
  FLUSH = 25,
  INIT = 26,
  OPENDIR = 27,
  READDIR = 28,
  RELEASEDIR = 29,
  FSYNCDIR = 30,
  GETLK = 31,
  SETLK = 32,
  SETLKW = 33,
  ACCESS = 34,
  CREATE = 35,
  INTERRUPT = 36,
  BMAP = 37,
  DESTROY = 38,
  IOCTL = 39,
  POLL = 40,
  NOTIFY_REPLY = 41,
  BATCH_FORGET = 42,
  FALLOCATE = 43,
  READDIRPLUS = 44,
  RENAME2 = 45,
  LSEEK = 46,
  COPY_FILE_RANGE = 47,
  SETUPMAPPING = 48,
  REMOVEMAPPING = 49,
  SYNCFS = 50,
  TMPFILE = 51,
  STATX = 52,
  COPY_FILE_RANGE_64 = 53,
}

export enum NotifyCode {
  POLL = 1,
  INVAL_INODE = 2,
  INVAL_ENTRY = 3,
  STORE = 4,
  RETRIEVE = 5,
  DELETE = 6,
  RESEND = 7,
  INC_EPOCH = 8,
  PRUNE = 9,
}

/** INIT flags. Bits 32..63 travel in flags2; we keep them as bigint to stay exact. */
export const InitFlag = {
  ASYNC_READ: 1n << 0n,
  POSIX_LOCKS: 1n << 1n,
  FILE_OPS: 1n << 2n,
  ATOMIC_O_TRUNC: 1n << 3n,
  EXPORT_SUPPORT: 1n << 4n,
  BIG_WRITES: 1n << 5n,
  DONT_MASK: 1n << 6n,
  SPLICE_WRITE: 1n << 7n,
  SPLICE_MOVE: 1n << 8n,
  SPLICE_READ: 1n << 9n,
  FLOCK_LOCKS: 1n << 10n,
  HAS_IOCTL_DIR: 1n << 11n,
  AUTO_INVAL_DATA: 1n << 12n,
  DO_READDIRPLUS: 1n << 13n,
  READDIRPLUS_AUTO: 1n << 14n,
  ASYNC_DIO: 1n << 15n,
  WRITEBACK_CACHE: 1n << 16n,
  NO_OPEN_SUPPORT: 1n << 17n,
  PARALLEL_DIROPS: 1n << 18n,
  HANDLE_KILLPRIV: 1n << 19n,
  POSIX_ACL: 1n << 20n,
  ABORT_ERROR: 1n << 21n,
  MAX_PAGES: 1n << 22n,
  CACHE_SYMLINKS: 1n << 23n,
  NO_OPENDIR_SUPPORT: 1n << 24n,
  EXPLICIT_INVAL_DATA: 1n << 25n,
  MAP_ALIGNMENT: 1n << 26n,
  SUBMOUNTS: 1n << 27n,
  HANDLE_KILLPRIV_V2: 1n << 28n,
  SETXATTR_EXT: 1n << 29n,
  INIT_EXT: 1n << 30n,
  INIT_RESERVED: 1n << 31n,
  SECURITY_CTX: 1n << 32n,
  HAS_INODE_DAX: 1n << 33n,
  CREATE_SUPP_GROUP: 1n << 34n,
  HAS_EXPIRE_ONLY: 1n << 35n,
  DIRECT_IO_ALLOW_MMAP: 1n << 36n,
  PASSTHROUGH: 1n << 37n,
  NO_EXPORT_SUPPORT: 1n << 38n,
  HAS_RESEND: 1n << 39n,
  ALLOW_IDMAP: 1n << 40n,
  OVER_IO_URING: 1n << 41n,
  REQUEST_TIMEOUT: 1n << 42n,
} as const;
export type InitFlagName = keyof typeof InitFlag;

/** fuse_setattr_in.valid */
export const Fattr = {
  MODE: 1 << 0,
  UID: 1 << 1,
  GID: 1 << 2,
  SIZE: 1 << 3,
  ATIME: 1 << 4,
  MTIME: 1 << 5,
  FH: 1 << 6,
  ATIME_NOW: 1 << 7,
  MTIME_NOW: 1 << 8,
  LOCKOWNER: 1 << 9,
  CTIME: 1 << 10,
  KILL_SUIDGID: 1 << 11,
} as const;

/** fuse_open_out.open_flags */
export const Fopen = {
  DIRECT_IO: 1 << 0,
  KEEP_CACHE: 1 << 1,
  NONSEEKABLE: 1 << 2,
  CACHE_DIR: 1 << 3,
  STREAM: 1 << 4,
  NOFLUSH: 1 << 5,
  PARALLEL_DIRECT_WRITES: 1 << 6,
  PASSTHROUGH: 1 << 7,
} as const;

export const RELEASE_FLUSH = 1 << 0;
export const RELEASE_FLOCK_UNLOCK = 1 << 1;
export const GETATTR_FH = 1 << 0;
export const LK_FLOCK = 1 << 0;
export const WRITE_CACHE = 1 << 0;
export const WRITE_LOCKOWNER = 1 << 1;
export const WRITE_KILL_SUIDGID = 1 << 2;
export const READ_LOCKOWNER = 1 << 1;
export const FSYNC_FDATASYNC = 1 << 0;
export const OPEN_KILL_SUIDGID = 1 << 0;
export const SETXATTR_ACL_KILL_SGID = 1 << 0;
export const EXPIRE_ONLY = 1 << 0;
export const POLL_SCHEDULE_NOTIFY = 1 << 0;
export const IOCTL_RETRY = 1 << 2;
export const IOCTL_DIR = 1 << 4;
/** The low bit of an INTERRUPT's unique marks it as an interrupt; the rest names the target. */
export const INT_REQ_BIT = 1;

export const EXT_GROUPS = 32;

export const IN_HEADER_SIZE = 40;
export const OUT_HEADER_SIZE = 16;
export const ATTR_SIZE = 88;
export const ENTRY_OUT_SIZE = 40 + ATTR_SIZE;
export const ATTR_OUT_SIZE = 16 + ATTR_SIZE;
export const OPEN_OUT_SIZE = 16;
export const STATX_SIZE = 256;
export const STATX_OUT_SIZE = 32 + STATX_SIZE;
export const KSTATFS_SIZE = 80;
export const FILE_LOCK_SIZE = 24;
export const INIT_OUT_SIZE = 64;
export const DIRENT_NAME_OFFSET = 24;
export const DIRENTPLUS_NAME_OFFSET = ENTRY_OUT_SIZE + DIRENT_NAME_OFFSET;
/** The kernel requires the read buffer to hold at least this much. */
export const MIN_READ_BUFFER = 8192;
/** Offset max as the kernel sends it for "to end of file" lock ranges (util/offset). */
export { OFFSET_MAX } from '../util/offset';

/** Round a record length up to the 8-byte alignment dirents use. */
export function direntAlign(len: number): number {
  return (len + 7) & ~7;
}
