/**
 * Decoding of every request the kernel sends into typed objects. Names and xattr values are
 * views into the request buffer (raw bytes: Linux names are not necessarily UTF-8).
 */
import { EXT_GROUPS, IN_HEADER_SIZE, InitFlag, Op } from './abi';
import { MalformedMessage, WireReader } from './wire';
import type { Timespec } from '../util/linux';

export { MalformedMessage };

export interface RequestHeader {
  len: number;
  opcode: number;
  unique: number;
  nodeid: number;
  uid: number;
  gid: number;
  pid: number;
  /** Supplementary group matching the parent directory, when FUSE_CREATE_SUPP_GROUP is on. */
  suppGroups?: number[];
}

export interface FileLockIn {
  start: bigint;
  end: bigint;
  type: number;
  pid: number;
}

interface NameArg {
  name: Buffer;
}

export interface LookupRequest extends RequestHeader, NameArg {
  op: Op.LOOKUP;
}
export interface ForgetRequest extends RequestHeader {
  op: Op.FORGET;
  nlookup: number;
}
export interface BatchForgetRequest extends RequestHeader {
  op: Op.BATCH_FORGET;
  forgets: Array<{ nodeid: number; nlookup: number }>;
}
export interface GetattrRequest extends RequestHeader {
  op: Op.GETATTR;
  getattrFlags: number;
  fh: number;
}
export interface SetattrRequest extends RequestHeader {
  op: Op.SETATTR;
  valid: number;
  fh: number;
  size: bigint;
  lockOwner: bigint;
  atime: Timespec;
  mtime: Timespec;
  ctime: Timespec;
  mode: number;
  /** Owner to set (FATTR_UID/FATTR_GID); the header's uid/gid remain the caller's. */
  newUid: number;
  newGid: number;
}
export interface ReadlinkRequest extends RequestHeader {
  op: Op.READLINK;
}
export interface SymlinkRequest extends RequestHeader, NameArg {
  op: Op.SYMLINK;
  target: Buffer;
}
export interface MknodRequest extends RequestHeader, NameArg {
  op: Op.MKNOD;
  mode: number;
  rdev: number;
  umask: number;
}
export interface MkdirRequest extends RequestHeader, NameArg {
  op: Op.MKDIR;
  mode: number;
  umask: number;
}
export interface UnlinkRequest extends RequestHeader, NameArg {
  op: Op.UNLINK;
}
export interface RmdirRequest extends RequestHeader, NameArg {
  op: Op.RMDIR;
}
export interface RenameRequest extends RequestHeader, NameArg {
  op: Op.RENAME | Op.RENAME2;
  newdir: number;
  newname: Buffer;
  flags: number;
}
export interface LinkRequest extends RequestHeader {
  op: Op.LINK;
  oldnodeid: number;
  newname: Buffer;
}
export interface OpenRequest extends RequestHeader {
  op: Op.OPEN | Op.OPENDIR;
  flags: number;
  openFlags: number;
}
export interface ReadRequest extends RequestHeader {
  op: Op.READ | Op.READDIR | Op.READDIRPLUS;
  fh: number;
  offset: number;
  size: number;
  readFlags: number;
  lockOwner: bigint;
  flags: number;
}
export interface WriteRequest extends RequestHeader {
  op: Op.WRITE;
  fh: number;
  offset: number;
  writeFlags: number;
  lockOwner: bigint;
  flags: number;
  data: Buffer;
}
export interface StatfsRequest extends RequestHeader {
  op: Op.STATFS;
}
export interface ReleaseRequest extends RequestHeader {
  op: Op.RELEASE | Op.RELEASEDIR;
  fh: number;
  flags: number;
  releaseFlags: number;
  lockOwner: bigint;
}
export interface FsyncRequest extends RequestHeader {
  op: Op.FSYNC | Op.FSYNCDIR;
  fh: number;
  fsyncFlags: number;
}
export interface SetxattrRequest extends RequestHeader, NameArg {
  op: Op.SETXATTR;
  flags: number;
  setxattrFlags: number;
  value: Buffer;
}
export interface GetxattrRequest extends RequestHeader, NameArg {
  op: Op.GETXATTR;
  size: number;
}
export interface ListxattrRequest extends RequestHeader {
  op: Op.LISTXATTR;
  size: number;
}
export interface RemovexattrRequest extends RequestHeader, NameArg {
  op: Op.REMOVEXATTR;
}
export interface FlushRequest extends RequestHeader {
  op: Op.FLUSH;
  fh: number;
  lockOwner: bigint;
}
export interface InitRequest extends RequestHeader {
  op: Op.INIT;
  major: number;
  minor: number;
  maxReadahead: number;
  /** flags | flags2 << 32 */
  flags: bigint;
}
export interface LockRequest extends RequestHeader {
  op: Op.GETLK | Op.SETLK | Op.SETLKW;
  fh: number;
  owner: bigint;
  lk: FileLockIn;
  lkFlags: number;
}
export interface AccessRequest extends RequestHeader {
  op: Op.ACCESS;
  mask: number;
}
export interface CreateRequest extends RequestHeader, NameArg {
  op: Op.CREATE | Op.TMPFILE;
  flags: number;
  mode: number;
  umask: number;
  openFlags: number;
}
export interface InterruptRequest extends RequestHeader {
  op: Op.INTERRUPT;
  target: number;
}
export interface BmapRequest extends RequestHeader {
  op: Op.BMAP;
  block: bigint;
  blocksize: number;
}
export interface DestroyRequest extends RequestHeader {
  op: Op.DESTROY;
}
export interface IoctlRequest extends RequestHeader {
  op: Op.IOCTL;
  fh: number;
  flags: number;
  cmd: number;
  arg: bigint;
  inSize: number;
  outSize: number;
  data: Buffer;
}
export interface PollRequest extends RequestHeader {
  op: Op.POLL;
  fh: number;
  kh: bigint;
  flags: number;
  events: number;
}
export interface NotifyReplyRequest extends RequestHeader {
  op: Op.NOTIFY_REPLY;
  offset: number;
  size: number;
  data: Buffer;
}
export interface FallocateRequest extends RequestHeader {
  op: Op.FALLOCATE;
  fh: number;
  offset: bigint;
  length: bigint;
  mode: number;
}
export interface LseekRequest extends RequestHeader {
  op: Op.LSEEK;
  fh: number;
  offset: bigint;
  whence: number;
}
export interface CopyFileRangeRequest extends RequestHeader {
  op: Op.COPY_FILE_RANGE | Op.COPY_FILE_RANGE_64;
  fhIn: number;
  offIn: bigint;
  nodeidOut: number;
  fhOut: number;
  offOut: bigint;
  length: bigint;
  flags: bigint;
}
export interface SyncfsRequest extends RequestHeader {
  op: Op.SYNCFS;
}
export interface StatxRequest extends RequestHeader {
  op: Op.STATX;
  getattrFlags: number;
  fh: number;
  sxFlags: number;
  sxMask: number;
}
/** DAX mappings exist only for virtio-fs; decoded so that they can be refused cleanly. */
export interface MappingRequest extends RequestHeader {
  op: Op.SETUPMAPPING | Op.REMOVEMAPPING;
}

export type Request =
  | LookupRequest
  | ForgetRequest
  | BatchForgetRequest
  | GetattrRequest
  | SetattrRequest
  | ReadlinkRequest
  | SymlinkRequest
  | MknodRequest
  | MkdirRequest
  | UnlinkRequest
  | RmdirRequest
  | RenameRequest
  | LinkRequest
  | OpenRequest
  | ReadRequest
  | WriteRequest
  | StatfsRequest
  | ReleaseRequest
  | FsyncRequest
  | SetxattrRequest
  | GetxattrRequest
  | ListxattrRequest
  | RemovexattrRequest
  | FlushRequest
  | InitRequest
  | LockRequest
  | AccessRequest
  | CreateRequest
  | InterruptRequest
  | BmapRequest
  | DestroyRequest
  | IoctlRequest
  | PollRequest
  | NotifyReplyRequest
  | FallocateRequest
  | LseekRequest
  | CopyFileRangeRequest
  | SyncfsRequest
  | StatxRequest
  | MappingRequest;

/** What the decoder needs to know of the negotiated connection. */
export interface DecodeContext {
  /** Negotiated minor version (0 before INIT). */
  minor: number;
  /** FUSE_SETXATTR_EXT was negotiated: fuse_setxattr_in carries setxattr_flags. */
  setxattrExt: boolean;
}

export class UnknownOpcode extends Error {
  constructor(readonly opcode: number) {
    super(`unknown opcode ${opcode}`);
    this.name = 'UnknownOpcode';
  }
}

/** Reads the header alone; used to answer a request whose body does not decode. */
export function decodeHeader(buf: Buffer): RequestHeader {
  if (buf.length < IN_HEADER_SIZE) throw new MalformedMessage(`request of ${buf.length} bytes is shorter than its header`);
  const r = new WireReader(buf, 0, IN_HEADER_SIZE);
  const len = r.u32();
  const opcode = r.u32();
  const unique = r.u64();
  const nodeid = r.u64();
  const uid = r.u32();
  const gid = r.u32();
  const pid = r.u32();
  return { len, opcode, unique, nodeid, uid, gid, pid };
}

function readTimespecs(r: WireReader): [Timespec, Timespec, Timespec] {
  const atime = r.i64();
  const mtime = r.i64();
  const ctime = r.i64();
  const atimensec = r.u32();
  const mtimensec = r.u32();
  const ctimensec = r.u32();
  return [
    { sec: atime, nsec: atimensec },
    { sec: mtime, nsec: mtimensec },
    { sec: ctime, nsec: ctimensec },
  ];
}

function readSuppGroups(buf: Buffer, from: number, to: number): number[] | undefined {
  let groups: number[] | undefined;
  const r = new WireReader(buf, from, to);
  while (r.remaining >= 8) {
    const start = r.pos;
    const size = r.u32();
    const type = r.u32();
    if (size < 8 || start + size > to) throw new MalformedMessage(`bad extension size ${size}`);
    if (type === EXT_GROUPS) {
      const n = r.u32();
      groups = [];
      for (let i = 0; i < n; i++) groups.push(r.u32());
    }
    r.pos = start + size;
  }
  return groups;
}

/**
 * Decodes one request. Throws MalformedMessage for a body shorter than its layout and
 * UnknownOpcode for an opcode this protocol does not define; never anything else.
 */
export function decodeRequest(buf: Buffer, ctx: DecodeContext): Request {
  const h = decodeHeader(buf);
  if (h.len !== buf.length) throw new MalformedMessage(`header says ${h.len} bytes, read ${buf.length}`);
  const totalExtlen = buf.readUInt16LE(36) * 8;
  const bodyEnd = buf.length - totalExtlen;
  if (bodyEnd < IN_HEADER_SIZE) throw new MalformedMessage(`extensions of ${totalExtlen} bytes overrun the request`);
  if (totalExtlen > 0) h.suppGroups = readSuppGroups(buf, bodyEnd, buf.length);
  const r = new WireReader(buf, IN_HEADER_SIZE, bodyEnd);
  const op = h.opcode as Op;
  switch (op) {
    case Op.LOOKUP:
    case Op.UNLINK:
    case Op.RMDIR:
    case Op.REMOVEXATTR:
      return Object.assign(h, { op, name: r.cstring() });
    case Op.FORGET:
      return Object.assign(h, { op, nlookup: r.u64() });
    case Op.BATCH_FORGET: {
      const count = r.u32();
      r.skip(4);
      if (count * 16 > r.remaining) throw new MalformedMessage(`batch of ${count} forgets overruns the request`);
      const forgets = [];
      for (let i = 0; i < count; i++) forgets.push({ nodeid: r.u64(), nlookup: r.u64() });
      return Object.assign(h, { op, forgets });
    }
    case Op.GETATTR: {
      const getattrFlags = r.u32();
      r.skip(4);
      return Object.assign(h, { op, getattrFlags, fh: r.u64() });
    }
    case Op.SETATTR: {
      const valid = r.u32();
      r.skip(4);
      const fh = r.u64();
      const size = r.u64big();
      const lockOwner = r.u64big();
      const [atime, mtime, ctime] = readTimespecs(r);
      const mode = r.u32();
      r.skip(4);
      const newUid = r.u32();
      const newGid = r.u32();
      r.skip(4);
      return Object.assign(h, { op, valid, fh, size, lockOwner, atime, mtime, ctime, mode, newUid, newGid });
    }
    case Op.READLINK:
    case Op.STATFS:
    case Op.DESTROY:
    case Op.SETUPMAPPING:
    case Op.REMOVEMAPPING:
      return Object.assign(h, { op });
    case Op.SYNCFS:
      r.skip(8);
      return Object.assign(h, { op });
    case Op.SYMLINK: {
      const name = r.cstring();
      return Object.assign(h, { op, name, target: r.cstring() });
    }
    case Op.MKNOD: {
      const mode = r.u32();
      const rdev = r.u32();
      const umask = r.u32();
      r.skip(4);
      return Object.assign(h, { op, mode, rdev, umask, name: r.cstring() });
    }
    case Op.MKDIR: {
      const mode = r.u32();
      const umask = r.u32();
      return Object.assign(h, { op, mode, umask, name: r.cstring() });
    }
    case Op.RENAME: {
      const newdir = r.u64();
      const name = r.cstring();
      return Object.assign(h, { op, newdir, flags: 0, name, newname: r.cstring() });
    }
    case Op.RENAME2: {
      const newdir = r.u64();
      const flags = r.u32();
      r.skip(4);
      const name = r.cstring();
      return Object.assign(h, { op, newdir, flags, name, newname: r.cstring() });
    }
    case Op.LINK: {
      const oldnodeid = r.u64();
      return Object.assign(h, { op, oldnodeid, newname: r.cstring() });
    }
    case Op.OPEN:
    case Op.OPENDIR: {
      const flags = r.u32();
      return Object.assign(h, { op, flags, openFlags: r.u32() });
    }
    case Op.READ:
    case Op.READDIR:
    case Op.READDIRPLUS: {
      const fh = r.u64();
      const offset = r.u64();
      const size = r.u32();
      const readFlags = r.u32();
      const lockOwner = r.u64big();
      const flags = r.u32();
      r.skip(4);
      return Object.assign(h, { op, fh, offset, size, readFlags, lockOwner, flags });
    }
    case Op.WRITE: {
      const fh = r.u64();
      const offset = r.u64();
      const size = r.u32();
      const writeFlags = r.u32();
      const lockOwner = r.u64big();
      const flags = r.u32();
      r.skip(4);
      return Object.assign(h, { op, fh, offset, writeFlags, lockOwner, flags, data: r.bytes(size) });
    }
    case Op.RELEASE:
    case Op.RELEASEDIR: {
      const fh = r.u64();
      const flags = r.u32();
      const releaseFlags = r.u32();
      return Object.assign(h, { op, fh, flags, releaseFlags, lockOwner: r.u64big() });
    }
    case Op.FSYNC:
    case Op.FSYNCDIR: {
      const fh = r.u64();
      const fsyncFlags = r.u32();
      r.skip(4);
      return Object.assign(h, { op, fh, fsyncFlags });
    }
    case Op.SETXATTR: {
      const size = r.u32();
      const flags = r.u32();
      let setxattrFlags = 0;
      if (ctx.setxattrExt) {
        setxattrFlags = r.u32();
        r.skip(4);
      }
      const name = r.cstring();
      return Object.assign(h, { op, flags, setxattrFlags, name, value: r.bytes(size) });
    }
    case Op.GETXATTR: {
      const size = r.u32();
      r.skip(4);
      return Object.assign(h, { op, size, name: r.cstring() });
    }
    case Op.LISTXATTR: {
      const size = r.u32();
      r.skip(4);
      return Object.assign(h, { op, size });
    }
    case Op.FLUSH: {
      const fh = r.u64();
      r.skip(8);
      return Object.assign(h, { op, fh, lockOwner: r.u64big() });
    }
    case Op.INIT: {
      const major = r.u32();
      const minor = r.u32();
      const maxReadahead = r.u32();
      let flags = BigInt(r.u32());
      if (flags & InitFlag.INIT_EXT && r.remaining >= 4) flags |= BigInt(r.u32()) << 32n;
      return Object.assign(h, { op, major, minor, maxReadahead, flags });
    }
    case Op.GETLK:
    case Op.SETLK:
    case Op.SETLKW: {
      const fh = r.u64();
      const owner = r.u64big();
      const start = r.u64big();
      const end = r.u64big();
      const type = r.u32();
      const pid = r.u32();
      const lkFlags = r.u32();
      r.skip(4);
      return Object.assign(h, { op, fh, owner, lk: { start, end, type, pid }, lkFlags });
    }
    case Op.ACCESS: {
      const mask = r.u32();
      r.skip(4);
      return Object.assign(h, { op, mask });
    }
    case Op.CREATE:
    case Op.TMPFILE: {
      const flags = r.u32();
      const mode = r.u32();
      const umask = r.u32();
      const openFlags = r.u32();
      return Object.assign(h, { op, flags, mode, umask, openFlags, name: r.cstring() });
    }
    case Op.INTERRUPT:
      return Object.assign(h, { op, target: r.u64() });
    case Op.BMAP: {
      const block = r.u64big();
      const blocksize = r.u32();
      r.skip(4);
      return Object.assign(h, { op, block, blocksize });
    }
    case Op.IOCTL: {
      const fh = r.u64();
      const flags = r.u32();
      const cmd = r.u32();
      const arg = r.u64big();
      const inSize = r.u32();
      const outSize = r.u32();
      return Object.assign(h, { op, fh, flags, cmd, arg, inSize, outSize, data: r.bytes(Math.min(inSize, r.remaining)) });
    }
    case Op.POLL: {
      const fh = r.u64();
      const kh = r.u64big();
      const flags = r.u32();
      return Object.assign(h, { op, fh, kh, flags, events: r.u32() });
    }
    case Op.NOTIFY_REPLY: {
      r.skip(8);
      const offset = r.u64();
      const size = r.u32();
      r.skip(4 + 16);
      return Object.assign(h, { op, offset, size, data: r.bytes(Math.min(size, r.remaining)) });
    }
    case Op.FALLOCATE: {
      const fh = r.u64();
      const offset = r.u64big();
      const length = r.u64big();
      const mode = r.u32();
      r.skip(4);
      return Object.assign(h, { op, fh, offset, length, mode });
    }
    case Op.LSEEK: {
      const fh = r.u64();
      const offset = r.i64big();
      const whence = r.u32();
      r.skip(4);
      return Object.assign(h, { op, fh, offset, whence });
    }
    case Op.COPY_FILE_RANGE:
    case Op.COPY_FILE_RANGE_64: {
      const fhIn = r.u64();
      const offIn = r.u64big();
      const nodeidOut = r.u64();
      const fhOut = r.u64();
      const offOut = r.u64big();
      const length = r.u64big();
      return Object.assign(h, { op, fhIn, offIn, nodeidOut, fhOut, offOut, length, flags: r.u64big() });
    }
    case Op.STATX: {
      const getattrFlags = r.u32();
      r.skip(4);
      const fh = r.u64();
      const sxFlags = r.u32();
      return Object.assign(h, { op, getattrFlags, fh, sxFlags, sxMask: r.u32() });
    }
    default:
      throw new UnknownOpcode(h.opcode);
  }
}
