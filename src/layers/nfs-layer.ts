/**
 * A lower layer on an NFS export reached in userspace (nfs://), over NFSv3 or NFSv4.1/4.2. An
 * object's identity is its NFS file handle: a file deleted and recreated on the server is
 * another object, a renamed one the same. An object the overlay found before is reached by its
 * handle, as the kernel's NFS client does after a LOOKUP: looking a name up in a directory is
 * one LOOKUP (one COMPOUND in v4) however deep the directory is, opening, reading or listing
 * what a LOOKUP just returned is no LOOKUP at all. Each call still sees the server as it is
 * now: the handle names the object, not a copy of it. A path is walked from the export root
 * only when no handle is known, or when the server no longer knows the handle (ESTALE: the
 * object was removed), to find what is there now. Extended attributes: NFSv4's ACL, as
 * `system.nfs4_acl`; NFSv3 has none.
 */
import createDebug from 'debug';
import { FileType, type NfsAttr } from './nfs';
import { connectNfs } from './nfs/connect';
import type { NfsFound, NfsLowerClient, NfsOpenFile } from './nfs/lower-client';
import type { NfsUrl } from './nfs/url';
import { decodeNfs4Acl } from './nfs/v4/acl-xattr';
import { NFS4_ACL_XATTR } from './nfs/v4/client';
import { nfs4ToPosixAcls } from './nfs/v4/posix-acl';
import { errorCode } from '../util/errno';
import {
  childPath,
  pathOf,
  type LayerAttr,
  type LayerLocks,
  type LayerDirent,
  type LayerFile,
  type LayerPath,
  type LayerStatfs,
  type LentParts,
  type ReadableLayer,
} from './types';
import { DT_BLK, DT_CHR, DT_DIR, DT_FIFO, DT_LNK, DT_REG, DT_SOCK, DT_UNKNOWN, MiB, NAME_MAX } from '../util/linux';

const log = createDebug('ovshift:nfs');

/** The largest st_blksize shown: reads larger than the server's preference gain nothing. */
const MAX_BLKSIZE = MiB;
/** statfs reports sizes in these units (FSSTAT gives bytes). */
const STATFS_BLOCK = 4096;
/** Local st_dev values (major·2^20 + minor) stay below this; NFS filesystems get numbers above. */
const NFS_DEV_BASE = 2 ** 52;
const DEV_MASK = (1n << 52n) - 1n;

const DTYPE_OF: Record<FileType, number> = {
  [FileType.REG]: DT_REG,
  [FileType.DIR]: DT_DIR,
  [FileType.BLK]: DT_BLK,
  [FileType.CHR]: DT_CHR,
  [FileType.LNK]: DT_LNK,
  [FileType.SOCK]: DT_SOCK,
  [FileType.FIFO]: DT_FIFO,
};

/** st_dev for an NFS filesystem: its fsid folded to 52 bits, above every local device number. */
function nfsDev(fsid: bigint): number {
  return NFS_DEV_BASE + Number((fsid ^ (fsid >> 52n)) & DEV_MASK);
}

function isAbsent(err: unknown): boolean {
  const code = errorCode(err);
  return code === 'ENOENT' || code === 'ENOTDIR' || code === 'ENAMETOOLONG';
}

function isStale(err: unknown): boolean {
  return errorCode(err) === 'ESTALE';
}

/** An open NFS file: positional READs on its handle, read ahead when sequential; no local descriptor. */
class NfsFile implements LayerFile {
  constructor(
    private readonly layer: NfsLayer,
    private readonly fh: Buffer,
    private readonly file: NfsOpenFile,
    /** Where it was opened, for messages. */
    private readonly path: string,
    /** What the LOOKUP that opened it said of it. */
    readonly openedAttr?: LayerAttr,
  ) {}

  read(buf: Buffer, offset: number, length: number, position: number, knownEnd?: number): Promise<number> {
    return this.file.read(buf, offset, length, position, knownEnd);
  }

  readParts(length: number, position: number, knownEnd?: number): Promise<LentParts> {
    return this.file.readParts(length, position, knownEnd);
  }

  async stat(): Promise<LayerAttr> {
    return this.layer.attrOf(this.fh, await this.layer.client.getattr(this.fh));
  }

  chunks(size: number): AsyncIterable<Buffer> {
    return this.file.chunks(size);
  }

  /** Locks on the server (NLM for NFSv3, LOCK/LOCKU/LOCKT for NFSv4). */
  lockHandle(): LayerLocks {
    return this.file.locks(this.path);
  }

  forgetReadAhead(): void {
    this.file.forgetReadAhead();
  }

  close(): Promise<void> {
    return this.file.close();
  }
}

export class NfsLayer implements ReadableLayer {
  /** st_blksize shown for every object: the server's preferred read size. */
  private readonly blksize: number;

  constructor(
    readonly client: NfsLowerClient,
    readonly label: string,
  ) {
    this.blksize = Math.min(client.preferredRead, MAX_BLKSIZE);
  }

  /** Mounts the export the URL names, in the version it asks for or the highest the server offers. */
  static async connect(url: NfsUrl, label: string): Promise<NfsLayer> {
    return new NfsLayer(await connectNfs(url), label);
  }

  /** An NFSv4 ACL as the POSIX ACLs granting exactly the same, where there are such. */
  storableXattrs(name: string, value: Buffer, isDir: boolean): { name: string; value: Buffer }[] | string | undefined {
    if (name !== NFS4_ACL_XATTR) return undefined;
    let aces;
    try {
      aces = decodeNfs4Acl(value);
    } catch (err) {
      return `it does not parse (${(err as Error).message})`;
    }
    const acls = nfs4ToPosixAcls(aces, isDir);
    return 'inexact' in acls ? acls.inexact : acls.xattrs;
  }

  /** "NFSv3", "NFSv4.1", …. */
  get protocol(): string {
    return this.client.protocol;
  }

  sharedLocksNow(): string {
    return this.client.sharedLocksNow();
  }

  attrOf(fh: Buffer, a: NfsAttr): LayerAttr {
    const used = Number(a.used);
    return {
      mode: a.mode,
      nlink: a.nlink,
      uid: a.uid,
      gid: a.gid,
      rdevMajor: a.rdev.major,
      rdevMinor: a.rdev.minor,
      size: Number(a.size),
      blocks: Math.ceil(used / 512),
      blksize: this.blksize,
      atime: a.atime,
      mtime: a.mtime,
      ctime: a.ctime,
      ino: Number(a.fileid),
      dev: nfsDev(a.fsid),
      identity: fh.toString('hex'),
      change: a.change?.toString(),
    };
  }

  /** Looks `path` up from the export root, one LOOKUP per component. */
  private async walk(path: string): Promise<NfsFound> {
    let found: NfsFound = { fh: this.client.root };
    if (path === '') return found;
    for (const name of path.split('/')) found = await this.client.lookup(found.fh, Buffer.from(name, 'latin1'));
    return found;
  }

  /**
   * Runs `op` on the handle of `at`: the one the overlay found it by, or, when there is none or
   * the server calls it stale, the handle the path leads to now.
   */
  private async on<T>(at: LayerPath, op: (fh: Buffer) => Promise<T>): Promise<T> {
    if (typeof at !== 'string') {
      try {
        return await op(Buffer.from(at.identity, 'hex'));
      } catch (err) {
        if (!isStale(err)) throw err;
        log('%s: %s is gone from the server (stale handle); walking its path', this.label, at.path || '.');
      }
    }
    return op((await this.walk(pathOf(at))).fh);
  }

  /** The attributes of what `find` finds; null when it finds nothing. */
  private async attrOrNull(find: () => Promise<NfsFound>): Promise<LayerAttr | null> {
    try {
      const found = await find();
      return this.attrOf(found.fh, found.attr ?? (await this.client.getattr(found.fh)));
    } catch (err) {
      if (isAbsent(err)) return null;
      throw err;
    }
  }

  stat(at: LayerPath): Promise<LayerAttr | null> {
    return this.attrOrNull(() => this.on(at, async (fh) => ({ fh, attr: await this.client.getattr(fh) })));
  }

  lookup(dir: LayerPath, name: string): Promise<LayerAttr | null> {
    return this.attrOrNull(() => this.on(dir, (fh) => this.client.lookup(fh, Buffer.from(name, 'latin1'))));
  }

  /** The listing; a name no file can have (empty, with '/' or NUL: a broken or hostile server) is left out. */
  readdir(at: LayerPath): Promise<LayerDirent[]> {
    return this.on(at, async (fh) =>
      (await this.client.readdirplus(fh))
        .filter((e) => this.usableName(e.name, pathOf(at)))
        .map((e) => ({
          name: e.name.toString('latin1'),
          type: e.attr ? (DTYPE_OF[e.attr.type] ?? DT_UNKNOWN) : DT_UNKNOWN,
          ino: Number(e.fileid),
          attr: e.attr && e.fh ? this.attrOf(e.fh, e.attr) : undefined,
        })),
    );
  }

  private usableName(name: Buffer, dir: string): boolean {
    if (name.length > 0 && name.length <= NAME_MAX && !name.includes(0x2f) && !name.includes(0)) return true;
    log('%s: the server listed an impossible name in %s (%d bytes); left out', this.label, dir || '.', name.length);
    return false;
  }

  readlink(at: LayerPath): Promise<Buffer> {
    return this.on(at, (fh) => this.client.readlink(fh));
  }

  getxattr(at: LayerPath, name: string): Promise<Buffer | null> {
    return this.on(at, (fh) => this.client.getxattr(fh, name));
  }

  listxattr(at: LayerPath): Promise<string[]> {
    return this.on(at, (fh) => this.client.listxattr(fh));
  }

  /** NFSv3 sends nothing (no OPEN: the handle is the file); NFSv4 an OPEN, held until close. */
  openRead(at: LayerPath): Promise<LayerFile> {
    return this.on(at, async (fh) => new NfsFile(this, fh, await this.client.open(fh), pathOf(at)));
  }

  /**
   * One LOOKUP in `dir` (NFSv3: with `readSoon`, a READ of the first bytes beside it; NFSv4:
   * with the OPEN and that READ in the same COMPOUND): the handle it returns is the object the
   * name leads to now.
   */
  async openEntry(dir: LayerPath, name: string, identity: string, readSoon = false): Promise<LayerFile | null> {
    let opened: Awaited<ReturnType<NfsLowerClient['openEntry']>>;
    try {
      opened = await this.on(dir, (d) => this.client.openEntry(d, Buffer.from(name, 'latin1'), Buffer.from(identity, 'hex'), readSoon));
    } catch (err) {
      if (isAbsent(err)) return null;
      throw err;
    }
    if (opened === null) return null;
    const { found, file } = opened;
    return new NfsFile(this, found.fh, file, childPath(pathOf(dir), name), found.attr && this.attrOf(found.fh, found.attr));
  }

  async statfs(): Promise<LayerStatfs> {
    const s = await this.client.fsstat();
    return {
      blocks: Number(s.totalBytes / BigInt(STATFS_BLOCK)),
      bfree: Number(s.freeBytes / BigInt(STATFS_BLOCK)),
      bavail: Number(s.availBytes / BigInt(STATFS_BLOCK)),
      files: Number(s.totalFiles),
      ffree: Number(s.availFiles),
      bsize: this.blksize,
      namelen: Math.min(s.nameMax, NAME_MAX),
      frsize: STATFS_BLOCK,
    };
  }

  close(): Promise<void> {
    return this.client.close();
  }
}
