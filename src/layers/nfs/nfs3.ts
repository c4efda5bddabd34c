// NFSv3 procedures (RFC 1813) for the read side of a filesystem: typed arguments and results.

import { Nfs3Status, NfsError } from './errors';
import { CallOptions, RpcClient } from './rpc';
import { XdrReader, XdrWriter } from './xdr';
import type { Timespec } from '../../util/linux';

export const NFS_PROGRAM = 100003;
export const NFS_VERSION = 3;
const NFS3_FHSIZE = 64;
const NFS3_COOKIEVERFSIZE = 8;

enum Proc {
  NULL = 0,
  GETATTR = 1,
  LOOKUP = 3,
  ACCESS = 4,
  READLINK = 5,
  READ = 6,
  READDIR = 16,
  READDIRPLUS = 17,
  FSSTAT = 18,
  FSINFO = 19,
  PATHCONF = 20,
}

export enum FileType {
  REG = 1,
  DIR = 2,
  BLK = 3,
  CHR = 4,
  LNK = 5,
  SOCK = 6,
  FIFO = 7,
}

/** The S_IFMT bits of each file type (NFSv4's nfs_ftype4 numbers them the same, 1 to 7). */
export const S_IFMT_OF: Record<FileType, number> = {
  [FileType.REG]: 0o100000,
  [FileType.DIR]: 0o040000,
  [FileType.BLK]: 0o060000,
  [FileType.CHR]: 0o020000,
  [FileType.LNK]: 0o120000,
  [FileType.SOCK]: 0o140000,
  [FileType.FIFO]: 0o010000,
};

/** ACCESS3 request/result bits. */
export const Access = {
  READ: 0x01,
  LOOKUP: 0x02,
  MODIFY: 0x04,
  EXTEND: 0x08,
  DELETE: 0x10,
  EXECUTE: 0x20,
} as const;

/** nfstime3: seconds and nanoseconds, as the kernel's timespec. */
export type NfsTime = Timespec;

export interface NfsAttr {
  type: FileType;
  /** Permission bits and the S_IFMT type bits, as in stat(2). */
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  size: bigint;
  /** Bytes of storage the file uses. */
  used: bigint;
  rdev: { major: number; minor: number };
  fsid: bigint;
  fileid: bigint;
  atime: NfsTime;
  mtime: NfsTime;
  ctime: NfsTime;
  /** NFSv4's change attribute: moves with every change of data or metadata. */
  change?: bigint;
}

export interface LookupResult {
  fh: Buffer;
  attr?: NfsAttr;
  dirAttr?: NfsAttr;
}

export interface AccessResult {
  /** The subset of the requested Access bits the server grants. */
  access: number;
  attr?: NfsAttr;
}

export interface ReadResult {
  data: Buffer;
  eof: boolean;
  attr?: NfsAttr;
}

export interface DirEntry {
  name: Buffer;
  fileid: bigint;
  cookie: bigint;
}

export interface DirEntryPlus extends DirEntry {
  attr?: NfsAttr;
  fh?: Buffer;
}

export interface DirPage<E> {
  dirAttr?: NfsAttr;
  cookieverf: Buffer;
  entries: E[];
  eof: boolean;
}

export interface FsStat {
  attr?: NfsAttr;
  totalBytes: bigint;
  freeBytes: bigint;
  availBytes: bigint;
  totalFiles: bigint;
  freeFiles: bigint;
  availFiles: bigint;
  /** Seconds for which these figures are not expected to change. */
  invarsec: number;
}

export interface FsInfo {
  attr?: NfsAttr;
  rtmax: number;
  rtpref: number;
  rtmult: number;
  wtmax: number;
  wtpref: number;
  wtmult: number;
  dtpref: number;
  maxfilesize: bigint;
  timeDelta: NfsTime;
  /** FSF3_LINK 0x1, FSF3_SYMLINK 0x2, FSF3_HOMOGENEOUS 0x8, FSF3_CANSETTIME 0x10. */
  properties: number;
}

export interface PathConf {
  attr?: NfsAttr;
  linkmax: number;
  nameMax: number;
  noTrunc: boolean;
  chownRestricted: boolean;
  caseInsensitive: boolean;
  casePreserving: boolean;
}

function readTime(r: XdrReader): NfsTime {
  return { sec: r.uint32(), nsec: r.uint32() };
}

export function readFattr3(r: XdrReader): NfsAttr {
  const type: FileType = r.uint32();
  const typeBits = S_IFMT_OF[type];
  if (typeBits === undefined) throw new NfsError(Nfs3Status.BADTYPE, 'fattr3', `(ftype3 ${type})`);
  const mode = (r.uint32() & 0o7777) | typeBits;
  return {
    type,
    mode,
    nlink: r.uint32(),
    uid: r.uint32(),
    gid: r.uint32(),
    size: r.uint64(),
    used: r.uint64(),
    rdev: { major: r.uint32(), minor: r.uint32() },
    fsid: r.uint64(),
    fileid: r.uint64(),
    atime: readTime(r),
    mtime: readTime(r),
    ctime: readTime(r),
  };
}

function readPostOpAttr(r: XdrReader): NfsAttr | undefined {
  return r.optional(readFattr3);
}

/** Copies the handle out of the reply so it does not pin the whole reply buffer. */
function readFh(r: XdrReader): Buffer {
  return Buffer.from(r.opaque(NFS3_FHSIZE));
}

function writeFh(w: XdrWriter, fh: Buffer): void {
  w.opaque(fh, NFS3_FHSIZE);
}

/** Typed NFSv3 procedures over one RPC client; a status other than NFS3_OK rejects with NfsError. */
export class Nfs3 {
  constructor(private readonly rpc: RpcClient) {}

  private async call(proc: Proc, syscall: string, encode: (w: XdrWriter) => void, detail?: string): Promise<XdrReader> {
    const reply = await this.rpc.call(proc, encode);
    const status: Nfs3Status = reply.uint32();
    if (status !== Nfs3Status.OK) throw new NfsError(status, syscall, detail);
    return reply;
  }

  async null(options?: CallOptions): Promise<void> {
    await this.rpc.call(Proc.NULL, undefined, options);
  }

  async getattr(fh: Buffer): Promise<NfsAttr> {
    const r = await this.call(Proc.GETATTR, 'getattr', (w) => writeFh(w, fh));
    return readFattr3(r);
  }

  async lookup(dirFh: Buffer, name: Buffer): Promise<LookupResult> {
    const r = await this.call(
      Proc.LOOKUP,
      'lookup',
      (w) => {
        writeFh(w, dirFh);
        w.string(name);
      },
      `'${name.toString()}'`,
    );
    return { fh: readFh(r), attr: readPostOpAttr(r), dirAttr: readPostOpAttr(r) };
  }

  async access(fh: Buffer, mask: number): Promise<AccessResult> {
    const r = await this.call(Proc.ACCESS, 'access', (w) => {
      writeFh(w, fh);
      w.uint32(mask);
    });
    const attr = readPostOpAttr(r);
    return { attr, access: r.uint32() };
  }

  async readlink(fh: Buffer): Promise<{ target: Buffer; attr?: NfsAttr }> {
    const r = await this.call(Proc.READLINK, 'readlink', (w) => writeFh(w, fh));
    const attr = readPostOpAttr(r);
    return { attr, target: Buffer.from(r.stringBytes()) };
  }

  /** The returned data is a view of the reply buffer. */
  async read(fh: Buffer, offset: bigint, count: number): Promise<ReadResult> {
    const r = await this.call(Proc.READ, 'read', (w) => {
      writeFh(w, fh);
      w.uint64(offset).uint32(count);
    });
    const attr = readPostOpAttr(r);
    const countReturned = r.uint32();
    const eof = r.bool();
    const data = r.opaque();
    if (data.length !== countReturned || data.length > count) {
      throw new NfsError(Nfs3Status.IO, 'read', `(server returned ${data.length} bytes, count ${countReturned}, asked ${count})`);
    }
    return { attr, eof, data };
  }

  async readdir(dirFh: Buffer, cookie: bigint, cookieverf: Buffer, count: number): Promise<DirPage<DirEntry>> {
    const r = await this.call(Proc.READDIR, 'readdir', (w) => {
      writeFh(w, dirFh);
      w.uint64(cookie).opaqueFixed(cookieverf, NFS3_COOKIEVERFSIZE).uint32(count);
    });
    const dirAttr = readPostOpAttr(r);
    const verf = Buffer.from(r.opaqueFixed(NFS3_COOKIEVERFSIZE));
    const entries: DirEntry[] = [];
    while (r.bool()) {
      entries.push({ fileid: r.uint64(), name: Buffer.from(r.stringBytes()), cookie: r.uint64() });
    }
    return { dirAttr, cookieverf: verf, entries, eof: r.bool() };
  }

  async readdirplus(dirFh: Buffer, cookie: bigint, cookieverf: Buffer, dircount: number, maxcount: number): Promise<DirPage<DirEntryPlus>> {
    const r = await this.call(Proc.READDIRPLUS, 'readdirplus', (w) => {
      writeFh(w, dirFh);
      w.uint64(cookie).opaqueFixed(cookieverf, NFS3_COOKIEVERFSIZE).uint32(dircount).uint32(maxcount);
    });
    const dirAttr = readPostOpAttr(r);
    const verf = Buffer.from(r.opaqueFixed(NFS3_COOKIEVERFSIZE));
    const entries: DirEntryPlus[] = [];
    while (r.bool()) {
      const fileid = r.uint64();
      const name = Buffer.from(r.stringBytes());
      const entryCookie = r.uint64();
      const attr = readPostOpAttr(r);
      const fh = r.optional(readFh);
      entries.push({ fileid, name, cookie: entryCookie, attr, fh });
    }
    return { dirAttr, cookieverf: verf, entries, eof: r.bool() };
  }

  async fsstat(fh: Buffer): Promise<FsStat> {
    const r = await this.call(Proc.FSSTAT, 'fsstat', (w) => writeFh(w, fh));
    return {
      attr: readPostOpAttr(r),
      totalBytes: r.uint64(),
      freeBytes: r.uint64(),
      availBytes: r.uint64(),
      totalFiles: r.uint64(),
      freeFiles: r.uint64(),
      availFiles: r.uint64(),
      invarsec: r.uint32(),
    };
  }

  async fsinfo(fh: Buffer): Promise<FsInfo> {
    const r = await this.call(Proc.FSINFO, 'fsinfo', (w) => writeFh(w, fh));
    return {
      attr: readPostOpAttr(r),
      rtmax: r.uint32(),
      rtpref: r.uint32(),
      rtmult: r.uint32(),
      wtmax: r.uint32(),
      wtpref: r.uint32(),
      wtmult: r.uint32(),
      dtpref: r.uint32(),
      maxfilesize: r.uint64(),
      timeDelta: readTime(r),
      properties: r.uint32(),
    };
  }

  async pathconf(fh: Buffer): Promise<PathConf> {
    const r = await this.call(Proc.PATHCONF, 'pathconf', (w) => writeFh(w, fh));
    return {
      attr: readPostOpAttr(r),
      linkmax: r.uint32(),
      nameMax: r.uint32(),
      noTrunc: r.bool(),
      chownRestricted: r.bool(),
      caseInsensitive: r.bool(),
      casePreserving: r.bool(),
    };
  }
}
