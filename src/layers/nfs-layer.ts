/**
 * A lower layer on an NFSv3 export reached in userspace (nfs://). Every path is walked from the
 * export root with LOOKUPs, so each call sees the server as it is now; with the URL's
 * `dircache=SECONDS`, directory handles found on the way are reused for that long.
 *
 * An object's identity is its NFS file handle: a file deleted and recreated on the server is
 * another object, a renamed one the same. NFSv3 has no xattrs.
 */
import createDebug from 'debug';
import { LRUCache } from 'lru-cache';
import { FileType, NfsClient, type NfsAttr, type NfsUrl, type ReadAhead } from './nfs';
import { errorCode } from '../util/errno';
import type { LayerAttr, LayerDirent, LayerFile, LayerStatfs, ReadableLayer } from './types';
import { DT_BLK, DT_CHR, DT_DIR, DT_FIFO, DT_LNK, DT_REG, DT_SOCK, DT_UNKNOWN, MiB, NAME_MAX } from '../util/linux';

const log = createDebug('ovshift:nfs');

const MAX_CACHED_DIRS = 100_000;
/** Largest READ one LayerFile.read() sends; larger reads are split. */
/** statfs reports sizes in these units (FSSTAT gives bytes). */
const MAX_READ = MiB;

const STATFS_BLOCK = 4096;
/** Longest name the overlay serves, whatever the server allows (ganesha says 1024). */
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

/** Where a walk ended: the object's handle, and its attributes when the server sent them. */
interface Found {
  fh: Buffer;
  attr?: NfsAttr;
}

/** An open NFS file: positional READs on its handle, read ahead when sequential; no local descriptor. */
class NfsFile implements LayerFile {
  private readonly ahead: ReadAhead;

  constructor(
    private readonly layer: NfsLayer,
    private readonly fh: Buffer,
  ) {
    this.ahead = layer.client.reader(fh);
  }

  read(buf: Buffer, offset: number, length: number, position: number): Promise<number> {
    return this.ahead.read(buf, offset, length, position);
  }

  async stat(): Promise<LayerAttr> {
    return this.layer.attrOf(this.fh, await this.layer.client.getattr(this.fh));
  }

  chunks(size: number): AsyncIterable<Buffer> {
    return this.layer.client.readStream(this.fh, { size });
  }

  async close(): Promise<void> {}
}

export class NfsLayer implements ReadableLayer {
  /** Directory path → handle, when `dircache` is on. */
  private readonly dirs: LRUCache<string, Buffer> | undefined;
  /** st_blksize shown for every object: the server's preferred read size. */
  private readonly blksize: number;

  constructor(
    readonly client: NfsClient,
    readonly label: string,
  ) {
    const seconds = client.url.dircache;
    this.dirs = seconds > 0 ? new LRUCache<string, Buffer>({ max: MAX_CACHED_DIRS, ttl: seconds * 1000 }) : undefined;
    this.blksize = Math.min(client.info.rtpref, MAX_READ);
  }

  /** Mounts the export the URL names. */
  static async connect(url: NfsUrl, label: string): Promise<NfsLayer> {
    return new NfsLayer(await NfsClient.connect(url), label);
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
    };
  }

  /**
   * Looks `path` up from the root (or from the deepest directory cached for it). A handle the
   * server calls stale empties the directory cache, so that the caller's retry walks afresh.
   */
  private async walk(path: string): Promise<Found> {
    if (path === '') return { fh: this.client.root };
    const names = path.split('/');
    let start = 0;
    let fh = this.client.root;
    if (this.dirs) {
      for (let n = names.length - 1; n > 0; n--) {
        const cached = this.dirs.get(names.slice(0, n).join('/'));
        if (cached) {
          start = n;
          fh = cached;
          break;
        }
      }
    }
    try {
      let found: Found = { fh };
      for (let i = start; i < names.length; i++) {
        found = await this.client.lookup(found.fh, Buffer.from(names[i]!, 'latin1'));
        if (this.dirs && i < names.length - 1) this.dirs.set(names.slice(0, i + 1).join('/'), found.fh);
      }
      return found;
    } catch (err) {
      if (this.dirs && isStale(err)) {
        log('%s: stale handle on the way to %s; dropping cached directories', this.label, path);
        this.dirs.clear();
      }
      throw err;
    }
  }

  /** Runs `op` on the handle `path` leads to, emptying the directory cache if it was stale. */
  private async at<T>(path: string, op: (fh: Buffer) => Promise<T>): Promise<T> {
    const { fh } = await this.walk(path);
    try {
      return await op(fh);
    } catch (err) {
      if (this.dirs && isStale(err)) this.dirs.clear();
      throw err;
    }
  }

  async stat(path: string): Promise<LayerAttr | null> {
    try {
      const found = await this.walk(path);
      return this.attrOf(found.fh, found.attr ?? (await this.client.getattr(found.fh)));
    } catch (err) {
      if (isAbsent(err)) return null;
      throw err;
    }
  }

  readdir(path: string): Promise<LayerDirent[]> {
    return this.at(path, async (fh) =>
      (await this.client.readdirplus(fh)).map((e) => ({
        name: e.name.toString('latin1'),
        type: e.attr ? (DTYPE_OF[e.attr.type] ?? DT_UNKNOWN) : DT_UNKNOWN,
        ino: Number(e.fileid),
      })),
    );
  }

  readlink(path: string): Promise<Buffer> {
    return this.at(path, (fh) => this.client.readlink(fh));
  }

  async getxattr(_path: string, _name: string): Promise<Buffer | null> {
    return null;
  }

  async listxattr(_path: string): Promise<string[]> {
    return [];
  }

  async openRead(path: string): Promise<LayerFile> {
    return new NfsFile(this, (await this.walk(path)).fh);
  }

  async statfs(): Promise<LayerStatfs> {
    const [s, conf] = await Promise.all([this.client.fsstat(), this.client.pathconf()]);
    return {
      blocks: Number(s.totalBytes / BigInt(STATFS_BLOCK)),
      bfree: Number(s.freeBytes / BigInt(STATFS_BLOCK)),
      bavail: Number(s.availBytes / BigInt(STATFS_BLOCK)),
      files: Number(s.totalFiles),
      ffree: Number(s.availFiles),
      bsize: this.blksize,
      namelen: Math.min(conf.nameMax, NAME_MAX),
      frsize: STATFS_BLOCK,
    };
  }

  close(): Promise<void> {
    return this.client.close();
  }
}
