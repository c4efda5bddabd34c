/**
 * Encoding of replies and notifications. Every encoder writes the body of one reply into a
 * WireWriter; `message()` lays the out-header in front.
 */
import {
  ATTR_OUT_SIZE,
  DIRENTPLUS_NAME_OFFSET,
  DIRENT_NAME_OFFSET,
  ENTRY_OUT_SIZE,
  FILE_LOCK_SIZE,
  INIT_OUT_SIZE,
  KSTATFS_SIZE,
  NotifyCode,
  OPEN_OUT_SIZE,
  OUT_HEADER_SIZE,
  STATX_OUT_SIZE,
  direntAlign,
} from './abi';
import { errnoNumber } from '../util/errno';
import type { StatfsFigures, Timespec } from '../util/linux';
import { WireWriter } from './wire';

const ERANGE = errnoNumber('ERANGE');

export interface Attr {
  ino: number;
  size: number;
  blocks: number;
  atime: Timespec;
  mtime: Timespec;
  ctime: Timespec;
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  /** Kernel dev_t encoding (new_encode_dev), as glibc's makedev gives for majors below 4096. */
  rdev: number;
  blksize: number;
  flags?: number;
}

/** Timeouts are in seconds (fractions allowed); 0 makes the kernel ask again every time. */
export interface EntryOut {
  nodeid: number;
  generation: number;
  entryTimeout: number;
  attrTimeout: number;
  attr: Attr;
}

/** A negative entry: the kernel caches the name's absence for `entryTimeout` seconds. */
export function negativeEntry(entryTimeout: number): EntryOut {
  return {
    nodeid: 0,
    generation: 0,
    entryTimeout,
    attrTimeout: 0,
    attr: {
      ino: 0,
      size: 0,
      blocks: 0,
      atime: ZERO_TIME,
      mtime: ZERO_TIME,
      ctime: ZERO_TIME,
      mode: 0,
      nlink: 0,
      uid: 0,
      gid: 0,
      rdev: 0,
      blksize: 0,
    },
  };
}
const ZERO_TIME: Timespec = { sec: 0, nsec: 0 };

export interface AttrOut {
  attrTimeout: number;
  attr: Attr;
}

export interface OpenOut {
  fh: number;
  openFlags: number;
  /** Passthrough backing file id from FUSE_DEV_IOC_BACKING_OPEN, with FOPEN_PASSTHROUGH. */
  backingId?: number;
}

export interface CreateOut {
  entry: EntryOut;
  open: OpenOut;
}

export type StatfsOut = StatfsFigures;

export interface LockOut {
  start: bigint;
  end: bigint;
  type: number;
  pid: number;
}

export interface StatxAttr {
  mask: number;
  blksize: number;
  attributes: bigint;
  nlink: number;
  uid: number;
  gid: number;
  mode: number;
  ino: number;
  size: number;
  blocks: number;
  attributesMask: bigint;
  atime: Timespec;
  btime: Timespec;
  ctime: Timespec;
  mtime: Timespec;
  rdevMajor: number;
  rdevMinor: number;
  devMajor: number;
  devMinor: number;
}

export interface StatxOut {
  attrTimeout: number;
  flags: number;
  stat: StatxAttr;
}

export interface InitOut {
  major: number;
  minor: number;
  maxReadahead: number;
  flags: bigint;
  maxBackground: number;
  congestionThreshold: number;
  maxWrite: number;
  timeGran: number;
  maxPages: number;
  mapAlignment: number;
  maxStackDepth: number;
  requestTimeout: number;
}

export interface IoctlOut {
  result: number;
  flags: number;
  inIovs: number;
  outIovs: number;
  data: Buffer;
}

function writeTimeout(w: WireWriter, seconds: number): number {
  const sec = Math.floor(seconds);
  w.u64(sec);
  return Math.round((seconds - sec) * 1e9);
}

export function encodeAttr(w: WireWriter, a: Attr): void {
  w.u64(a.ino).loff(a.size).u64(a.blocks);
  w.i64(a.atime.sec).i64(a.mtime.sec).i64(a.ctime.sec);
  w.u32(a.atime.nsec).u32(a.mtime.nsec).u32(a.ctime.nsec);
  w.u32(a.mode)
    .u32(a.nlink)
    .u32(a.uid)
    .u32(a.gid)
    .u32(a.rdev)
    .u32(a.blksize)
    .u32(a.flags ?? 0);
}

export function encodeEntry(w: WireWriter, e: EntryOut): void {
  w.u64(e.nodeid).u64(e.generation);
  const entryNsec = writeTimeout(w, e.entryTimeout);
  const attrNsec = writeTimeout(w, e.attrTimeout);
  w.u32(entryNsec).u32(attrNsec);
  encodeAttr(w, e.attr);
}

export function encodeAttrOut(w: WireWriter, a: AttrOut): void {
  const nsec = writeTimeout(w, a.attrTimeout);
  w.u32(nsec).u32(0);
  encodeAttr(w, a.attr);
}

export function encodeOpen(w: WireWriter, o: OpenOut): void {
  w.u64(o.fh)
    .u32(o.openFlags)
    .i32(o.backingId ?? 0);
}

export function encodeStatfs(w: WireWriter, s: StatfsOut): void {
  w.u64(s.blocks).u64(s.bfree).u64(s.bavail).u64(s.files).u64(s.ffree);
  w.u32(s.bsize).u32(s.namelen).u32(s.frsize).u32(0).zero(24);
}

export function encodeLock(w: WireWriter, l: LockOut): void {
  w.u64big(l.start).u64big(l.end).u32(l.type).u32(l.pid);
}

function encodeSxTime(w: WireWriter, t: Timespec): void {
  w.i64(t.sec).u32(t.nsec).u32(0);
}

export function encodeStatxOut(w: WireWriter, s: StatxOut): void {
  const nsec = writeTimeout(w, s.attrTimeout);
  w.u32(nsec).u32(s.flags).zero(16);
  const x = s.stat;
  w.u32(x.mask).u32(x.blksize).u64big(x.attributes).u32(x.nlink).u32(x.uid).u32(x.gid);
  w.u16(x.mode).u16(0).u64(x.ino).loff(x.size).u64(x.blocks).u64big(x.attributesMask);
  encodeSxTime(w, x.atime);
  encodeSxTime(w, x.btime);
  encodeSxTime(w, x.ctime);
  encodeSxTime(w, x.mtime);
  w.u32(x.rdevMajor)
    .u32(x.rdevMinor)
    .u32(x.devMajor)
    .u32(x.devMinor)
    .zero(14 * 8);
}

export function encodeInit(w: WireWriter, i: InitOut): void {
  w.u32(i.major)
    .u32(i.minor)
    .u32(i.maxReadahead)
    .u32(Number(i.flags & 0xffffffffn));
  w.u16(i.maxBackground).u16(i.congestionThreshold).u32(i.maxWrite).u32(i.timeGran);
  w.u16(i.maxPages)
    .u16(i.mapAlignment)
    .u32(Number(i.flags >> 32n))
    .u32(i.maxStackDepth);
  w.u16(i.requestTimeout).zero(22);
}

/** Sizes of the fixed-layout reply bodies, by encoder. */
export const ReplySize = {
  entry: ENTRY_OUT_SIZE,
  attr: ATTR_OUT_SIZE,
  open: OPEN_OUT_SIZE,
  create: ENTRY_OUT_SIZE + OPEN_OUT_SIZE,
  statfs: KSTATFS_SIZE,
  lock: FILE_LOCK_SIZE,
  statx: STATX_OUT_SIZE,
  init: INIT_OUT_SIZE,
  u32: 8,
  u64: 8,
  ioctl: 16,
} as const;

/** Allocates header + body and lets `fill` write the body; the header is completed here. */
export function message(unique: number, error: number, bodySize: number, fill?: (w: WireWriter) => void): Buffer {
  const buf = Buffer.allocUnsafe(OUT_HEADER_SIZE + bodySize);
  const w = new WireWriter(buf);
  w.u32(OUT_HEADER_SIZE + bodySize)
    .i32(error)
    .u64(unique);
  if (fill) fill(w);
  if (w.pos !== buf.length) throw new Error(`reply body wrote ${w.pos - OUT_HEADER_SIZE} of ${bodySize} bytes`);
  return buf;
}

/**
 * READ data in a buffer the handler lends (from a pool of its own, say): the session calls
 * `release` once the reply is written, and never touches `data` after that.
 */
export class LentBuffer {
  constructor(
    readonly data: Buffer | Buffer[],
    readonly release: () => void,
  ) {}
}

/** Header alone, for replies whose body is a separate buffer (READ, READLINK, GETXATTR data). */
export function header(unique: number, error: number, bodySize: number): Buffer {
  const buf = Buffer.allocUnsafe(OUT_HEADER_SIZE);
  new WireWriter(buf)
    .u32(OUT_HEADER_SIZE + bodySize)
    .i32(error)
    .u64(unique);
  return buf;
}

/** A reply whose buffers are lent: `release` runs once it is written (or dropped). */
export class LentReply {
  constructor(
    readonly parts: Buffer[],
    readonly release: () => void,
  ) {}
}

/** A whole reply message, header included: one buffer, several, or lent ones. */
export type Reply = Buffer | Buffer[] | LentReply;

// Replies built from what a handler method settles to, one per kind of result.

export function emptyReply(unique: number): Buffer {
  return message(unique, 0, 0);
}

function fixedReply<T>(size: number, encode: (w: WireWriter, value: T) => void): (unique: number, value: T) => Buffer {
  return (unique, value) => message(unique, 0, size, (w) => encode(w, value));
}

export const entryReply = fixedReply(ReplySize.entry, encodeEntry);
export const attrReply = fixedReply(ReplySize.attr, encodeAttrOut);
export const openReply = fixedReply(ReplySize.open, encodeOpen);
export const statfsReply = fixedReply(ReplySize.statfs, encodeStatfs);
export const lockReply = fixedReply(ReplySize.lock, encodeLock);
export const statxReply = fixedReply(ReplySize.statx, encodeStatxOut);
export const createReply = fixedReply(ReplySize.create, (w, c: CreateOut) => {
  encodeEntry(w, c.entry);
  encodeOpen(w, c.open);
});
/** fuse_write_out / fuse_poll_out: a u32 and padding. */
export const u32Reply = fixedReply(ReplySize.u32, (w, n: number) => w.u32(n).u32(0));
/** fuse_bmap_out / fuse_lseek_out / fuse_copy_file_range_out (64-bit). */
export const u64Reply = fixedReply(ReplySize.u64, (w, n: bigint) => w.u64big(n));
/** The old COPY_FILE_RANGE answers in a fuse_write_out: counts beyond 32 bits are clamped. */
export const copiedReply32 = fixedReply(ReplySize.u32, (w, n: bigint) => {
  w.u32(Number(n > 0xffffffffn ? 0xffffffffn : n)).u32(0);
});

export function ioctlReply(unique: number, r: IoctlOut): Buffer {
  return message(unique, 0, ReplySize.ioctl + r.data.length, (w) => {
    w.i32(r.result).u32(r.flags).u32(r.inIovs).u32(r.outIovs).bytes(r.data);
  });
}

/** A body of bytes as they are (READLINK's target, a directory listing). */
export function bytesReply(unique: number, body: Buffer): Buffer[] {
  return [header(unique, 0, body.length), body];
}

/** READ: the data, cut to the size asked for; lent data goes back to its lender once written. */
export function readReply(unique: number, data: Buffer | Buffer[] | LentBuffer, size: number): Reply {
  if (data instanceof LentBuffer) return new LentReply(dataReply(unique, data.data, size), data.release);
  return dataReply(unique, data, size);
}

function dataReply(unique: number, data: Buffer | Buffer[], max: number): Buffer[] {
  const parts = Array.isArray(data) ? data : [data];
  let total = 0;
  const out: Buffer[] = [];
  for (const p of parts) {
    if (total + p.length > max) {
      out.push(p.subarray(0, max - total));
      total = max;
      break;
    }
    out.push(p);
    total += p.length;
  }
  return [header(unique, 0, total), ...out];
}

/** GETXATTR/LISTXATTR: size 0 asks for the length; a value longer than `size` is ERANGE. */
export function xattrReply(unique: number, value: Buffer, size: number): Reply {
  if (size === 0) return message(unique, 0, ReplySize.u32, (w) => w.u32(value.length).u32(0));
  if (value.length > size) return message(unique, -ERANGE, 0);
  return [header(unique, 0, value.length), value];
}

/** d_type from st_mode. */
export function direntType(mode: number): number {
  return (mode & 0o170000) >> 12;
}

/** The buffer of a READDIR or READDIRPLUS reply: records are appended while they fit. */
abstract class DirentBuffer {
  private readonly buf: Buffer;
  private used = 0;

  constructor(maxSize: number) {
    this.buf = Buffer.allocUnsafe(maxSize);
  }

  /** Appends a record of `recLen` bytes written by `write` at its start (the padding is zeroed); false if it would not fit. */
  protected append(recLen: number, filled: number, write: (w: WireWriter) => void): boolean {
    if (this.used + recLen > this.buf.length) return false;
    const w = new WireWriter(this.buf);
    w.pos = this.used;
    write(w);
    w.zero(recLen - filled);
    this.used += recLen;
    return true;
  }

  /** Bytes left for entries. */
  get room(): number {
    return this.buf.length - this.used;
  }

  get empty(): boolean {
    return this.used === 0;
  }

  get bytes(): Buffer {
    return this.buf.subarray(0, this.used);
  }
}

/**
 * Fills a READDIR reply up to the size the kernel asked for. `add` returns false, and adds
 * nothing, once the next entry would not fit: the caller stops there.
 */
export class DirentList extends DirentBuffer {
  add(name: Buffer, ino: number, type: number, nextOffset: number): boolean {
    const filled = DIRENT_NAME_OFFSET + name.length;
    return this.append(direntAlign(filled), filled, (w) => w.u64(ino).u64(nextOffset).u32(name.length).u32(type).bytes(name));
  }
}

/**
 * Fills a READDIRPLUS reply. The kernel takes a lookup reference for every entry with a
 * non-zero nodeid it receives (except "." and ".."), so a caller counts a lookup only for
 * entries `add` accepted.
 */
export class DirentPlusList extends DirentBuffer {
  /** Would an entry with this name fit? Lets a caller avoid work for an entry it cannot send. */
  fits(name: Buffer): boolean {
    return DirentPlusList.recordLength(name) <= this.room;
  }

  /** Bytes an entry with this name takes, for a caller that works ahead on several entries. */
  static recordLength(name: Buffer): number {
    return direntAlign(DIRENTPLUS_NAME_OFFSET + name.length);
  }

  add(name: Buffer, entry: EntryOut, type: number, nextOffset: number): boolean {
    const filled = DIRENTPLUS_NAME_OFFSET + name.length;
    return this.append(direntAlign(filled), filled, (w) => {
      encodeEntry(w, entry);
      w.u64(entry.attr.ino).u64(nextOffset).u32(name.length).u32(type).bytes(name);
    });
  }
}

/** Notification messages: unique 0, the notify code in the error field. */
function notification(code: NotifyCode, bodySize: number, fill: (w: WireWriter) => void): Buffer {
  return message(0, code, bodySize, fill);
}

export function notifyInvalInode(nodeid: number, offset: number, length: number): Buffer {
  return notification(NotifyCode.INVAL_INODE, 24, (w) => w.u64(nodeid).i64(offset).i64(length));
}

export function notifyInvalEntry(parent: number, name: Buffer, flags: number): Buffer {
  return notification(NotifyCode.INVAL_ENTRY, 16 + name.length + 1, (w) => {
    w.u64(parent).u32(name.length).u32(flags).bytes(name).zero(1);
  });
}

export function notifyDelete(parent: number, child: number, name: Buffer): Buffer {
  return notification(NotifyCode.DELETE, 24 + name.length + 1, (w) => {
    w.u64(parent).u64(child).u32(name.length).u32(0).bytes(name).zero(1);
  });
}

export function notifyStore(nodeid: number, offset: number, data: Buffer): Buffer {
  return notification(NotifyCode.STORE, 24 + data.length, (w) => {
    w.u64(nodeid).u64(offset).u32(data.length).u32(0).bytes(data);
  });
}

export function notifyRetrieve(notifyUnique: number, nodeid: number, offset: number, size: number): Buffer {
  return notification(NotifyCode.RETRIEVE, 32, (w) => {
    w.u64(notifyUnique).u64(nodeid).u64(offset).u32(size).u32(0);
  });
}

export function notifyPollWakeup(kh: bigint): Buffer {
  return notification(NotifyCode.POLL, 8, (w) => w.u64big(kh));
}

/** Every dentry the kernel holds of this connection is to be looked up again before use (7.44). */
export function notifyIncEpoch(): Buffer {
  return notification(NotifyCode.INC_EPOCH, 0, () => undefined);
}

export function notifyPrune(nodeids: number[]): Buffer {
  return notification(NotifyCode.PRUNE, 16 + 8 * nodeids.length, (w) => {
    w.u32(nodeids.length).u32(0).u64(0);
    for (const id of nodeids) w.u64(id);
  });
}
