// fattr4 (RFC 8881 §5): attribute bitmaps and the values a GETATTR or READDIR returns, decoded in
// bit order. Only attributes this client asks for are decoded; any other bit set in a reply is
// a protocol error, since fattr4 values carry no lengths to skip them by.
import { XdrReader, XdrWriter } from '../xdr';
import { protocolViolation } from './errors';
import { Attr, NFS4_FHSIZE } from './protocol';
import type { Timespec } from '../../../util/linux';

export interface Nfs4Ace {
  type: number;
  flag: number;
  mask: number;
  /** The principal: "OWNER@", "GROUP@", "EVERYONE@", a user or group name, or a number. */
  who: Buffer;
}

export interface Fattr4 {
  supported?: number[];
  type?: number;
  change?: bigint;
  size?: bigint;
  fsid?: { major: bigint; minor: bigint };
  leaseTime?: number;
  rdattrError?: number;
  acl?: Nfs4Ace[];
  aclSupport?: number;
  filehandle?: Buffer;
  fileid?: bigint;
  filesAvail?: bigint;
  filesFree?: bigint;
  filesTotal?: bigint;
  maxname?: number;
  maxread?: bigint;
  maxwrite?: bigint;
  mode?: number;
  numlinks?: number;
  owner?: Buffer;
  ownerGroup?: Buffer;
  rawdev?: { major: number; minor: number };
  spaceAvail?: bigint;
  spaceFree?: bigint;
  spaceTotal?: bigint;
  spaceUsed?: bigint;
  atime?: Timespec;
  ctime?: Timespec;
  mtime?: Timespec;
  mountedOnFileid?: bigint;
  xattrSupport?: boolean;
}

/** A bitmap4 of the given attribute numbers. */
export function bitmapOf(attrs: readonly Attr[]): number[] {
  const words: number[] = [];
  for (const a of attrs) {
    const word = a >>> 5;
    while (words.length <= word) words.push(0);
    words[word] = (words[word]! | (1 << (a & 31))) >>> 0;
  }
  return words;
}

export function hasBit(words: readonly number[], a: Attr): boolean {
  return (((words[a >>> 5] ?? 0) >>> (a & 31)) & 1) === 1;
}

export function writeBitmap(w: XdrWriter, words: readonly number[]): void {
  w.array(words, (x, word) => x.uint32(word));
}

export function readBitmap(r: XdrReader): number[] {
  return r.array((x) => x.uint32(), 8);
}

function time(r: XdrReader): Timespec {
  const sec = r.int64();
  const nsec = r.uint32();
  if (nsec >= 1e9) throw protocolViolation(`nanoseconds ${nsec} out of range`);
  return { sec: Number(sec), nsec };
}

export function readAce(r: XdrReader): Nfs4Ace {
  return { type: r.uint32(), flag: r.uint32(), mask: r.uint32(), who: Buffer.from(r.opaque(1024)) };
}

/** How each attribute's value is read, by attribute number. */
const DECODERS: Partial<Record<Attr, (r: XdrReader, f: Fattr4) => void>> = {
  [Attr.SUPPORTED_ATTRS]: (r, f) => (f.supported = readBitmap(r)),
  [Attr.TYPE]: (r, f) => (f.type = r.uint32()),
  [Attr.CHANGE]: (r, f) => (f.change = r.uint64()),
  [Attr.SIZE]: (r, f) => (f.size = r.uint64()),
  [Attr.FSID]: (r, f) => (f.fsid = { major: r.uint64(), minor: r.uint64() }),
  [Attr.LEASE_TIME]: (r, f) => (f.leaseTime = r.uint32()),
  [Attr.RDATTR_ERROR]: (r, f) => (f.rdattrError = r.uint32()),
  [Attr.ACL]: (r, f) => (f.acl = r.array(readAce, 4096)),
  [Attr.ACLSUPPORT]: (r, f) => (f.aclSupport = r.uint32()),
  [Attr.FILEHANDLE]: (r, f) => (f.filehandle = Buffer.from(r.opaque(NFS4_FHSIZE))),
  [Attr.FILEID]: (r, f) => (f.fileid = r.uint64()),
  [Attr.FILES_AVAIL]: (r, f) => (f.filesAvail = r.uint64()),
  [Attr.FILES_FREE]: (r, f) => (f.filesFree = r.uint64()),
  [Attr.FILES_TOTAL]: (r, f) => (f.filesTotal = r.uint64()),
  [Attr.MAXNAME]: (r, f) => (f.maxname = r.uint32()),
  [Attr.MAXREAD]: (r, f) => (f.maxread = r.uint64()),
  [Attr.MAXWRITE]: (r, f) => (f.maxwrite = r.uint64()),
  [Attr.MODE]: (r, f) => (f.mode = r.uint32()),
  [Attr.NUMLINKS]: (r, f) => (f.numlinks = r.uint32()),
  [Attr.OWNER]: (r, f) => (f.owner = Buffer.from(r.opaque(1024))),
  [Attr.OWNER_GROUP]: (r, f) => (f.ownerGroup = Buffer.from(r.opaque(1024))),
  [Attr.RAWDEV]: (r, f) => (f.rawdev = { major: r.uint32(), minor: r.uint32() }),
  [Attr.SPACE_AVAIL]: (r, f) => (f.spaceAvail = r.uint64()),
  [Attr.SPACE_FREE]: (r, f) => (f.spaceFree = r.uint64()),
  [Attr.SPACE_TOTAL]: (r, f) => (f.spaceTotal = r.uint64()),
  [Attr.SPACE_USED]: (r, f) => (f.spaceUsed = r.uint64()),
  [Attr.TIME_ACCESS]: (r, f) => (f.atime = time(r)),
  [Attr.TIME_METADATA]: (r, f) => (f.ctime = time(r)),
  [Attr.TIME_MODIFY]: (r, f) => (f.mtime = time(r)),
  [Attr.MOUNTED_ON_FILEID]: (r, f) => (f.mountedOnFileid = r.uint64()),
  [Attr.XATTR_SUPPORT]: (r, f) => (f.xattrSupport = r.bool()),
};

/** Reads an fattr4: its bitmap, then its values in bit order. */
export function readFattr(r: XdrReader): Fattr4 {
  const words = readBitmap(r);
  const values = new XdrReader(r.opaque());
  const f: Fattr4 = {};
  for (let word = 0; word < words.length; word++) {
    for (let bits = words[word]!, bit = 0; bits !== 0; bit++, bits >>>= 1) {
      if ((bits & 1) === 0) continue;
      const a = (word * 32 + bit) as Attr;
      const decode = DECODERS[a];
      if (decode === undefined) throw protocolViolation(`attribute ${a} sent but not asked for`);
      decode(values, f);
    }
  }
  return f;
}
