/**
 * A layer that is a directory: on a local filesystem, or on a kernel network mount (NFS, CIFS,
 * FUSE…). Metadata calls on local filesystems run on the event loop (they are answered from the
 * kernel's caches in about a microsecond; a thread-pool round trip costs tens); on network
 * filesystems, where a call may wait on a server, everything goes through the thread pool.
 * File data always does.
 */
import { closeSync, constants as K, openSync, promises as fsp, statfsSync } from 'fs';
import { beneathError, openBeneathSync, openDirBeneath, openDirBeneathSync } from './beneath';
import { attrFromArray, FdFile, isRemoteFilesystem, STATX_MASK } from './fd-io';
import { filesystemWatcher } from './fs-watcher';
import { AT_FDCWD, C, native, unpackDirents, StatxField, STATX_FIELDS } from '../native';
import { needsType, openFlags, settle, waitingOutLeases } from './safe-open';
import { errnoError, errnoNumber, errorCode } from '../util/errno';
import {
  childPath,
  pathOf,
  type DescriptorFile,
  type LayerAttr,
  type LayerChange,
  type LayerDirent,
  type LayerFile,
  type LayerPath,
  type LayerStatfs,
  type LayerWatch,
  type Loc,
  type ReadableLayer,
} from './types';
import { AT_SYMLINK_NOFOLLOW, O_CLOEXEC, S_IFMT, S_IFREG } from '../util/linux';

/** statx's STATX_TYPE: the mode's type bits alone. */
const STATX_TYPE = 0x1;
const ENOENT = -errnoNumber('ENOENT');
const ENOTDIR = -errnoNumber('ENOTDIR');
const ENAMETOOLONG = -errnoNumber('ENAMETOOLONG');
const ENODATA = -errnoNumber('ENODATA');
const EOPNOTSUPP = -errnoNumber('EOPNOTSUPP');
const EPERM = -errnoNumber('EPERM');
const ELOOP = -errnoNumber('ELOOP');
const EWOULDBLOCK = -errnoNumber('EWOULDBLOCK');

/** Filesystems whose writes never wait for a device (page allocation aside). */
const MEMORY_FS_MAGIC = new Set([
  0x01021994, // tmpfs
  0x858458f6, // ramfs
]);

function isMemoryFilesystem(path: string): boolean {
  return MEMORY_FS_MAGIC.has(statfsSync(path).type >>> 0);
}

function isAbsentErrno(res: number): boolean {
  return res === ENOENT || res === ENOTDIR || res === ENAMETOOLONG;
}

function isAbsent(err: unknown): boolean {
  const code = errorCode(err);
  return code === 'ENOENT' || code === 'ENOTDIR' || code === 'ENAMETOOLONG';
}

function isNoXattr(err: unknown): boolean {
  const code = errorCode(err);
  return code === 'ENODATA' || code === 'EOPNOTSUPP' || code === 'ENOTSUP';
}

/** Runs `op` on `name` in the directory `fd`, then closes `fd`. */
function runIn<T>(fd: number, name: Buffer, op: (short: Loc) => Promise<T>): Promise<T> {
  let pending: Promise<T>;
  try {
    pending = op({ fd, path: name });
  } catch (err) {
    closeSync(fd);
    throw err;
  }
  return pending.finally(() => closeSync(fd));
}

/**
 * The layer root, as a private copy of its mount without the mounts below it (open_tree
 * OPEN_TREE_CLONE, not recursive): like kernel overlayfs, the overlay then sees the layer's
 * own directories under anything mounted on them, and never a filesystem someone mounted inside
 * a layer. Without the privilege for that (an unprivileged daemon), the root itself.
 */
function openLayerRoot(root: string): number {
  const fd = native.openTreeSync(root, C.OPEN_TREE_CLONE! | C.OPEN_TREE_CLOEXEC!);
  return fd >= 0 ? fd : openSync(root, K.O_RDONLY | K.O_DIRECTORY | O_CLOEXEC);
}

export class DirLayer implements ReadableLayer {
  /** The root directory, held open: every call is made relative to it, so paths inside the
   * layer need not fit PATH_MAX together with the root's own path. */
  readonly rootFd: number;
  /** Metadata calls on the event loop (local filesystem) rather than the thread pool. */
  readonly sync: boolean;
  /** On tmpfs or ramfs: writes may run on the event loop, as they never wait for a disk. */
  readonly inMemory: boolean;
  /** On a network or FUSE filesystem: changes made elsewhere are never reported here. */
  private readonly remote: boolean;
  private watching?: LayerWatch;
  private readonly statBuf = new Float64Array(STATX_FIELDS);
  private heldParent: { path: string; fd: number } | undefined;
  private dropScheduled = false;
  protected closed = false;

  /**
   * `ownMount: false` keeps the root on its mount as it is (the upper: its work directory must
   * be on the same mount for renames between them); `rootFd`, a descriptor of the root the
   * caller opened, is used as it is (and closed with the layer).
   */
  constructor(
    readonly root: string,
    readonly label: string,
    opts: { sync?: boolean; ownMount?: boolean; rootFd?: number } = {},
  ) {
    this.rootFd = opts.rootFd ?? (opts.ownMount === false ? openSync(root, K.O_RDONLY | K.O_DIRECTORY | O_CLOEXEC) : openLayerRoot(root));
    this.remote = isRemoteFilesystem(root);
    this.sync = opts.sync ?? !this.remote;
    this.inMemory = isMemoryFilesystem(root);
  }

  /**
   * Lets go of the layer once the mount is gone, before the process exits: whoever unmounts
   * the layers right after the overlay (as test suites do) must not find them busy.
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.dropHeldParent();
    this.watching?.close();
    closeSync(this.rootFd);
  }

  /** Changes on a local filesystem, pushed by the kernel (see fs-watcher.ts); once. */
  watch(onChanges: (changes: LayerChange[]) => void): LayerWatch | string {
    if (this.remote) return 'a network or FUSE filesystem: changes made elsewhere are not reported';
    if (this.watching) return 'watched already';
    const res = filesystemWatcher.subscribe(this.rootFd, onChanges);
    if (typeof res !== 'string') this.watching = res;
    return res;
  }

  /** Where a relative layer path is, for the *at() calls. */
  loc(path: string): Loc {
    return { fd: this.rootFd, path: Buffer.from(path === '' ? '.' : path, 'latin1') };
  }

  /**
   * Runs `op` on `at`'s last component, in its parent directory reached beneath `at.fd` (see
   * beneath.ts): no symlink or mount on the way is followed, whoever swapped one in. `op` must
   * not follow the last component either (AT_SYMLINK_NOFOLLOW, O_NOFOLLOW, or a call that never
   * follows it). The parent's descriptor lives only for the call.
   */
  protected reach<T>(at: Loc, op: (short: Loc) => Promise<T>): Promise<T> {
    const cut = at.path.lastIndexOf(0x2f);
    if (cut < 0) return op(at);
    const dir = at.path.subarray(0, cut);
    const name = at.path.subarray(cut + 1);
    if (this.sync) {
      const fd = openDirBeneathSync(at.fd, dir);
      return fd < 0 ? Promise.reject(beneathError(fd, at.path)) : runIn(fd, name, op);
    }
    return openDirBeneath(at.fd, dir).then((fd) => {
      if (fd < 0) throw beneathError(fd, at.path);
      return runIn(fd, name, op);
    });
  }

  stat(at: LayerPath): Promise<LayerAttr | null> {
    const path = pathOf(at);
    if (this.sync) {
      try {
        return Promise.resolve(this.statSync(path));
      } catch (err) {
        return Promise.reject(err);
      }
    }
    return this.reach(this.loc(path), (at) => this.statAsync(at)).catch((err) => {
      if (isAbsent(err)) return null;
      throw err;
    });
  }

  /** The hot path of every lookup, on the loop: no Promise until the end. */
  private statSync(path: string): LayerAttr | null {
    const cut = path.lastIndexOf('/');
    const fd = cut < 0 ? this.rootFd : this.statParent(path.slice(0, cut));
    if (isAbsentErrno(fd)) return null;
    if (fd < 0) throw beneathError(fd, Buffer.from(path, 'latin1'));
    const name = cut < 0 ? this.loc(path).path : Buffer.from(path.slice(cut + 1), 'latin1');
    const res = native.statxSync(fd, name, AT_SYMLINK_NOFOLLOW, STATX_MASK, this.statBuf);
    // A path too long to pass names nothing (the `.wh.` probe of a long name, say).
    if (isAbsentErrno(res)) return null;
    if (res < 0) throw errnoError(res, 'statx', this.describe(path));
    return attrFromArray(this.statBuf);
  }

  /**
   * The directory `dir` reached beneath the root for statSync, or -errno. A listing's entries
   * and a path walk's names share their parent: the descriptor is kept for the stats that
   * follow in the same turn of the event loop (one batch of requests), and closed when the
   * loop turns, so what a stat sees is never older than the batch it answers.
   */
  private statParent(dir: string): number {
    if (this.heldParent?.path === dir) return this.heldParent.fd;
    const fd = openDirBeneathSync(this.rootFd, Buffer.from(dir, 'latin1'));
    if (fd < 0) return fd;
    this.dropHeldParent();
    this.heldParent = { path: dir, fd };
    if (!this.dropScheduled) {
      this.dropScheduled = true;
      setImmediate(() => {
        this.dropScheduled = false;
        this.dropHeldParent();
      });
    }
    return fd;
  }

  /** Forgets the held parent (the upper does before each change it makes to its tree). */
  protected dropHeldParent(): void {
    if (this.heldParent) closeSync(this.heldParent.fd);
    this.heldParent = undefined;
  }

  private async statAsync(at: Loc): Promise<LayerAttr> {
    return attrFromArray(await native.statx(at.fd, at.path, AT_SYMLINK_NOFOLLOW, STATX_MASK));
  }

  /** A directory layer goes by the path: the kernel has looked `dir` up just before. */
  lookup(dir: LayerPath, name: string): Promise<LayerAttr | null> {
    return this.stat(childPath(pathOf(dir), name));
  }

  readdir(at: LayerPath): Promise<LayerDirent[]> {
    const path = pathOf(at);
    return this.reach(this.loc(path), (at) => this.readdirAt(at, path));
  }

  private async readdirAt(at: Loc, path: string): Promise<LayerDirent[]> {
    const packed = this.sync ? native.readdiratSync(at.fd, at.path) : await native.readdirat(at.fd, at.path);
    if (typeof packed === 'number') throw errnoError(packed, 'opendir', this.describe(path));
    return unpackDirents(packed).map((d) => ({ name: d.name.toString('latin1'), type: d.type, ino: d.ino }));
  }

  readlink(at: LayerPath): Promise<Buffer> {
    const path = pathOf(at);
    return this.reach(this.loc(path), (at) => this.readlinkAt(at, path));
  }

  private async readlinkAt(at: Loc, path: string): Promise<Buffer> {
    if (!this.sync) return native.readlinkat(at.fd, at.path);
    const v = native.readlinkatSync(at.fd, at.path);
    if (typeof v === 'number') throw errnoError(v, 'readlink', this.describe(path));
    return v;
  }

  getxattr(at: LayerPath, name: string): Promise<Buffer | null> {
    const path = pathOf(at);
    return this.reach(this.loc(path), (at) => this.getxattrAt(at, path, name));
  }

  private async getxattrAt(at: Loc, path: string, name: string): Promise<Buffer | null> {
    const n = Buffer.from(name, 'latin1');
    if (this.sync) {
      const v = native.getxattratSync(at.fd, at.path, n, false);
      if (typeof v !== 'number') return v;
      if (v === ENODATA || v === EOPNOTSUPP) return null;
      throw errnoError(v, 'lgetxattr', this.describe(path));
    }
    try {
      return await native.getxattrat(at.fd, at.path, n, false);
    } catch (err) {
      if (isNoXattr(err)) return null;
      throw err;
    }
  }

  listxattr(at: LayerPath): Promise<string[]> {
    const path = pathOf(at);
    return this.reach(this.loc(path), (at) => this.listxattrAt(at, path));
  }

  private async listxattrAt(at: Loc, path: string): Promise<string[]> {
    let raw: Buffer | number;
    try {
      raw = this.sync ? native.listxattratSync(at.fd, at.path, false) : await native.listxattrat(at.fd, at.path, false);
    } catch (err) {
      if (isNoXattr(err)) return [];
      throw err;
    }
    if (typeof raw === 'number') {
      if (raw === ENODATA || raw === EOPNOTSUPP) return [];
      throw errnoError(raw, 'llistxattr', this.describe(path));
    }
    return raw
      .toString('latin1')
      .split('\0')
      .filter((n) => n !== '');
  }

  /** Opens for reading without touching the file's atime where permitted (a layer is read, not used). */
  async openRead(at: LayerPath): Promise<LayerFile> {
    const path = pathOf(at);
    try {
      return await this.open(path, K.O_RDONLY | K.O_NOFOLLOW | K.O_NOATIME);
    } catch (err) {
      if (errorCode(err) !== 'EPERM') throw err;
      return this.open(path, K.O_RDONLY | K.O_NOFOLLOW);
    }
  }

  /** Opens the path and checks what it opened: a local open cannot ask for one object. */
  async openEntry(dir: LayerPath, name: string, identity: string): Promise<LayerFile | null> {
    if (this.sync) {
      const now = this.openEntryNow(childPath(pathOf(dir), name), identity);
      if (now !== undefined) return now;
    }
    let file: LayerFile;
    try {
      file = await this.openRead(childPath(pathOf(dir), name));
    } catch (err) {
      // ELOOP: the name is a symbolic link now (O_NOFOLLOW), another object.
      if (isAbsent(err) || errorCode(err) === 'ELOOP') return null;
      throw err;
    }
    const attr = await file.stat();
    if (attr.identity === identity) {
      if (file instanceof FdFile) file.openedAttr = attr;
      return file;
    }
    await file.close();
    return null;
  }

  /**
   * openEntry's common case on a local filesystem, on the calling thread: one openat2 and one
   * fstat, which both checks the object's type (as safe-open's settle would, with a stat of its
   * own) and its identity; without O_NOATIME where that is refused (a file the daemon's user
   * does not own, as openRead does). Undefined where the open must take openRead's way: no
   * openat2 or a path too long for it, a lease being broken.
   */
  private openEntryNow(path: string, identity: string): FdFile | null | undefined {
    let flags = K.O_RDONLY | K.O_NOFOLLOW | K.O_NOATIME;
    const at = this.loc(path);
    let fd = openBeneathSync(at.fd, at.path, openFlags(flags) | O_CLOEXEC | K.O_NOFOLLOW, 0);
    if (fd === EPERM) {
      flags &= ~K.O_NOATIME;
      fd = openBeneathSync(at.fd, at.path, openFlags(flags) | O_CLOEXEC | K.O_NOFOLLOW, 0);
    }
    if (fd === undefined || fd === EWOULDBLOCK) return undefined;
    // ELOOP: the name is a symbolic link now (O_NOFOLLOW), another object.
    if (isAbsentErrno(fd) || fd === ELOOP) return null;
    if (fd < 0) throw errnoError(fd, 'open', this.describe(path));
    const file = new FdFile(fd, this.sync, this.inMemory);
    let attr: LayerAttr;
    try {
      attr = file.statSync();
    } catch (err) {
      file.closeQuietly();
      throw err;
    }
    // A regular file keeps the O_NONBLOCK it was opened with, saving an fcntl: reads of a
    // regular file ignore it, and the daemon only reads this descriptor (preadv2, sendfile,
    // copy_file_range) and takes locks on it that never wait. Anything else is settled, which
    // closes it itself when it refuses it.
    if ((attr.mode & S_IFMT) !== S_IFREG) settle(fd, flags, path, attr.mode);
    if (attr.identity !== identity) {
      file.closeQuietly();
      return null;
    }
    file.openedAttr = attr;
    return file;
  }

  async open(path: string, flags: number, mode = 0): Promise<FdFile> {
    return this.openFile(this.loc(path), flags, mode);
  }

  /** As openAt, as a file of this layer. */
  async openFile(target: Loc, flags: number, mode = 0): Promise<FdFile> {
    return new FdFile(await this.openAt(target, flags, mode), this.sync, this.inMemory);
  }

  /**
   * openat(); O_CLOEXEC and O_NOFOLLOW always (a symlink in a layer is never opened through),
   * and never waiting on what someone put at the path (see safe-open.ts).
   */
  openAt(target: Loc, flags: number, mode = 0): Promise<number> {
    return waitingOutLeases(() =>
      this.openAtOnce(target, openFlags(flags) | O_CLOEXEC | K.O_NOFOLLOW, mode).then((fd) => this.settled(fd, flags, target.path)),
    );
  }

  private openAtOnce(target: Loc, f: number, mode: number): Promise<number> {
    if (this.sync) {
      // One openat2 instead of reaching the parent, opening the name there and closing the parent.
      const fd = openBeneathSync(target.fd, target.path, f, mode);
      if (fd !== undefined) return fd < 0 ? Promise.reject(errnoError(fd, 'open', target.path.toString())) : Promise.resolve(fd);
    }
    return this.reach(target, async (at) => {
      if (!this.sync) return native.openat(at.fd, at.path, f, mode);
      const fd = native.openatSync(at.fd, at.path, f, mode);
      if (fd < 0) throw errnoError(fd, 'open', at.path.toString());
      return fd;
    });
  }

  /** safe-open's settle; the type asked off the event loop where a stat may wait on a server. */
  private settled(fd: number, flags: number, path: Buffer): number | Promise<number> {
    if (this.sync || !needsType(flags)) return settle(fd, flags, path.toString());
    return native.fstatx(fd, STATX_TYPE).then(
      (st) => settle(fd, flags, path.toString(), st[StatxField.mode]),
      (err: unknown) => {
        closeSync(fd);
        throw err;
      },
    );
  }

  /**
   * Opens the object an open descriptor of this layer holds, with new flags (through its
   * /proc/self/fd link: the object may have no name any more).
   */
  async reopen(file: DescriptorFile, flags: number): Promise<FdFile> {
    const path = Buffer.from(`/proc/self/fd/${file.fd}`);
    const fd = await waitingOutLeases(async () => {
      const f = openFlags(flags) | O_CLOEXEC;
      let opened: number;
      if (!this.sync) opened = await native.openat(AT_FDCWD, path, f, 0);
      else {
        opened = native.openatSync(AT_FDCWD, path, f, 0);
        if (opened < 0) throw errnoError(opened, 'open', path.toString());
      }
      return this.settled(opened, flags, path);
    });
    return new FdFile(fd, this.sync, this.inMemory);
  }

  async statfs(): Promise<LayerStatfs> {
    const s = await fsp.statfs(this.root);
    return {
      blocks: s.blocks,
      bfree: s.bfree,
      bavail: s.bavail,
      files: s.files,
      ffree: s.ffree,
      bsize: s.bsize,
      namelen: 255,
      frsize: s.bsize,
    };
  }

  describe(path: string): string {
    return path === '' ? this.root : `${this.root}/${Buffer.from(path, 'latin1').toString('utf8')}`;
  }
}
