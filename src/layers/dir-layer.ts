/**
 * A layer that is a directory: on a local filesystem, or on a kernel network mount (NFS, CIFS,
 * FUSE…). Metadata calls on local filesystems run on the event loop (they are answered from the
 * kernel's caches in about a microsecond; a thread-pool round trip costs tens); on network
 * filesystems, where a call may wait on a server, everything goes through the thread pool.
 * File data always does.
 */
import { close, constants as K, open, promises as fsp, read, readSync, statfsSync } from 'fs';
import { native, unpackDirents, STATX_FIELDS, StatxField as F, type Statx } from '../native';
import { errnoError, errorCode } from '../util/errno';
import type { LayerAttr, LayerDirent, LayerFile, LayerStatfs, ReadableLayer } from './types';

const AT_FDCWD = -100;
const AT_SYMLINK_NOFOLLOW = 0x100;
const STATX_BASIC_STATS = 0x7ff;
const STATX_BTIME = 0x800;
const STATX_MASK = STATX_BASIC_STATS | STATX_BTIME;
const ENOENT = -2;
const ENOTDIR = -20;
const ENODATA = -61;
const EOPNOTSUPP = -95;

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
  // The birth time tells a reused inode number from the object that had it before.
  return hasBtime ? `${dev}:${ino}:${btimeSec}.${btimeNsec}` : `${dev}:${ino}`;
}

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
  };
}

export function attrFromStatx(s: Statx): LayerAttr {
  const dev = s.devMajor * 0x100000 + s.devMinor;
  const ino = Number(s.ino);
  return {
    mode: s.mode,
    nlink: s.nlink,
    uid: s.uid,
    gid: s.gid,
    rdevMajor: s.rdevMajor,
    rdevMinor: s.rdevMinor,
    size: Number(s.size),
    blocks: Number(s.blocks),
    blksize: s.blksize,
    atime: { sec: s.atimeSec, nsec: s.atimeNsec },
    mtime: { sec: s.mtimeSec, nsec: s.mtimeNsec },
    ctime: { sec: s.ctimeSec, nsec: s.ctimeNsec },
    ino,
    dev,
    identity: identityOf(dev, ino, (s.mask & STATX_BTIME) !== 0, s.btimeSec, s.btimeNsec),
  };
}

function isAbsent(err: unknown): boolean {
  const code = errorCode(err);
  return code === 'ENOENT' || code === 'ENOTDIR';
}

function isNoXattr(err: unknown): boolean {
  const code = errorCode(err);
  return code === 'ENODATA' || code === 'EOPNOTSUPP' || code === 'ENOTSUP';
}

class LocalFile implements LayerFile {
  constructor(readonly fd: number, private readonly sync: boolean) {}

  read(buf: Buffer, offset: number, length: number, position: number): Promise<number> {
    if (this.sync && length <= 64 * 1024) {
      // Small reads come from the page cache faster than a thread round trip.
      return Promise.resolve(readSync(this.fd, buf, offset, length, position));
    }
    return new Promise((resolve, reject) => {
      read(this.fd, buf, offset, length, position, (err, n) => (err ? reject(err) : resolve(n)));
    });
  }

  async stat(): Promise<LayerAttr> {
    if (this.sync) {
      const out = new Float64Array(STATX_FIELDS);
      const res = native.fstatxSync(this.fd, out);
      if (res < 0) throw errnoError(res, 'fstatx');
      return attrFromArray(out);
    }
    return attrFromStatx(await native.fstatx(this.fd, STATX_MASK));
  }

  close(): Promise<void> {
    return new Promise((resolve, reject) => close(this.fd, (err) => (err ? reject(err) : resolve())));
  }
}

export { LocalFile };

export class DirLayer implements ReadableLayer {
  /** The root as raw bytes, joined to relative paths without re-encoding them. */
  protected readonly rootBin: string;
  /** Metadata calls on the event loop (local filesystem) rather than the thread pool. */
  readonly sync: boolean;
  private readonly statBuf = new Float64Array(STATX_FIELDS);

  constructor(readonly root: string, readonly label: string, opts: { sync?: boolean } = {}) {
    this.rootBin = Buffer.from(root.replace(/\/+$/, '') || '/', 'utf8').toString('latin1');
    this.sync = opts.sync ?? !isRemoteFilesystem(root);
  }

  /** The absolute path of a relative layer path, as bytes. */
  abs(path: string): Buffer {
    if (path === '') return Buffer.from(this.rootBin, 'latin1');
    return Buffer.from(this.rootBin === '/' ? `/${path}` : `${this.rootBin}/${path}`, 'latin1');
  }

  async stat(path: string): Promise<LayerAttr | null> {
    if (this.sync) {
      const res = native.statxSync(AT_FDCWD, this.abs(path), AT_SYMLINK_NOFOLLOW, STATX_MASK, this.statBuf);
      if (res === ENOENT || res === ENOTDIR) return null;
      if (res < 0) throw errnoError(res, 'statx', this.describe(path));
      return attrFromArray(this.statBuf);
    }
    try {
      return attrFromStatx(await native.statx(AT_FDCWD, this.abs(path), AT_SYMLINK_NOFOLLOW, STATX_MASK));
    } catch (err) {
      if (isAbsent(err)) return null;
      throw err;
    }
  }

  async readdir(path: string): Promise<LayerDirent[]> {
    let packed: Buffer | number;
    if (this.sync) packed = native.readdirSync(this.abs(path));
    else packed = await native.readdir(this.abs(path));
    if (typeof packed === 'number') throw errnoError(packed, 'opendir', this.describe(path));
    return unpackDirents(packed).map((d) => ({ name: d.name.toString('latin1'), type: d.type, ino: d.ino }));
  }

  async readlink(path: string): Promise<Buffer> {
    return fsp.readlink(this.abs(path), { encoding: 'buffer' });
  }

  async getxattr(path: string, name: string): Promise<Buffer | null> {
    if (this.sync) {
      const v = native.getxattrSync(this.abs(path), Buffer.from(name, 'latin1'), false);
      if (typeof v !== 'number') return v;
      if (v === ENODATA || v === EOPNOTSUPP) return null;
      throw errnoError(v, 'lgetxattr', this.describe(path));
    }
    try {
      return await native.getxattr(this.abs(path), Buffer.from(name, 'latin1'), false);
    } catch (err) {
      if (isNoXattr(err)) return null;
      throw err;
    }
  }

  async listxattr(path: string): Promise<string[]> {
    let raw: Buffer;
    try {
      raw = await native.listxattr(this.abs(path), false);
    } catch (err) {
      if (isNoXattr(err)) return [];
      throw err;
    }
    return raw.toString('latin1').split('\0').filter((n) => n !== '');
  }

  async openRead(path: string): Promise<LayerFile> {
    return this.open(path, K.O_RDONLY | K.O_NOFOLLOW);
  }

  /** Opens with the given flags (Node adds O_CLOEXEC). */
  async open(path: string, flags: number, mode = 0): Promise<LocalFile> {
    const fd = await new Promise<number>((resolve, reject) => {
      open(this.abs(path), flags, mode, (err, fd) => (err ? reject(err) : resolve(fd)));
    });
    return new LocalFile(fd, this.sync);
  }

  async statfs(): Promise<LayerStatfs> {
    const s = await fsp.statfs(this.abs(''));
    return {
      blocks: s.blocks, bfree: s.bfree, bavail: s.bavail, files: s.files, ffree: s.ffree,
      bsize: s.bsize, namelen: 255, frsize: s.bsize,
    };
  }

  describe(path: string): string {
    return Buffer.from(path === '' ? this.rootBin : `${this.rootBin}/${path}`, 'latin1').toString('utf8');
  }
}
