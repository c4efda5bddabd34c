/**
 * The writable upper layer: a directory, with a work directory on the same filesystem where
 * objects are built before being renamed into place. Write primitives only, each on a Loc (a
 * directory descriptor and a path relative to it); what to write (whiteouts, copy-up, opaque
 * markers) is the overlay's business.
 */
import * as fs from 'fs';
import { AT_FDCWD, C, native } from '../native';
import { errnoError, errorCode } from '../util/errno';
import { openWithAtimeRule, type AtimeRule } from './atime-mount';
import { DirLayer } from './dir-layer';
import type { FdFile } from './fd-io';
import type { DescriptorFile, Loc } from './types';
import { AT_REMOVEDIR, AT_SYMLINK_NOFOLLOW, type Timespec } from '../util/linux';

const EMPTY = Buffer.alloc(0);
/** How long a mount waits for the upper's last daemon to let go of it (see lockForMount). */
const LOCK_WAIT_MS = 3000;
/** The daemon's own files in the workdir are read up to this size (see takeStateFile). */
const STATE_FILE_MAX = 256 << 20;

export class UpperDir extends DirLayer {
  /** workdir/work, as kernel overlayfs lays it out, so either can mount this upper. */
  private readonly workFd: number;
  private readonly workPath: string;
  private tempCounter = 0;
  /** The atime rule reads through this layer follow, when it was applied (see `atime`). */
  readonly atimeRule?: AtimeRule;

  /**
   * `atime`: the rule reads of upper files are to follow; applied through a private copy of the
   * upper's mount where that can be made (atimeRule says whether it was).
   */
  constructor(
    root: string,
    readonly workdir: string,
    label: string,
    opts: { sync?: boolean; atime?: AtimeRule } = {},
  ) {
    const workPath = `${workdir.replace(/\/+$/, '')}/work`;
    fs.mkdirSync(workPath, { recursive: true, mode: 0o700 });
    const ruled = opts.atime ? openWithAtimeRule([root, workPath], opts.atime) : undefined;
    super(root, label, { sync: opts.sync, ownMount: false, rootFd: ruled?.[0] });
    this.workPath = workPath;
    this.workFd = ruled?.[1] ?? fs.openSync(workPath, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
    if (ruled) this.atimeRule = opts.atime;
  }

  /**
   * Takes the upper for this mount alone, as kernel overlayfs allows one mount of an upper: a
   * second daemon would cache what the first changes (the upper is each daemon's alone) and
   * show stale names. The lock is on work/, which only the daemon's user can open, so nobody
   * else can take it to block a mount. A daemon whose mount was just unmounted may hold it a
   * moment longer (it learns of the unmount after the umount call returns): waited for.
   */
  async lockForMount(): Promise<void> {
    const deadline = Date.now() + LOCK_WAIT_MS;
    while (native.flockSync(this.workFd, C.LOCK_EX! | C.LOCK_NB!) < 0) {
      if (Date.now() >= deadline) throw new Error(`workdir ${this.workdir} is in use by another mount (of the same upper)`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  override close(): void {
    if (this.closed) return;
    super.close();
    fs.closeSync(this.workFd);
  }

  /** Clears what an interrupted run left in the work directory. */
  clearWorkdir(): void {
    for (const name of fs.readdirSync(this.workPath, { encoding: 'buffer' })) {
      fs.rmSync(Buffer.concat([Buffer.from(`${this.workPath}/`), name]), { recursive: true, force: true });
    }
  }

  /**
   * The daemon's own file `name` in the workdir (beside work/, which each mount clears), taken
   * out: read and removed, so it serves one mount only. Undefined when there is none.
   */
  takeStateFile(name: string): Buffer | undefined {
    const path = `${this.workdir.replace(/\/+$/, '')}/${name}`;
    let fd: number;
    try {
      fd = fs.openSync(path, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK);
    } catch (err) {
      if (errorCode(err) === 'ENOENT') return undefined;
      throw err;
    }
    try {
      const st = fs.fstatSync(fd);
      if (!st.isFile()) throw new Error(`${path} is not a regular file`);
      if (st.size > STATE_FILE_MAX) throw new Error(`${path} is larger than ${STATE_FILE_MAX} bytes`);
      return fs.readFileSync(fd);
    } finally {
      fs.closeSync(fd);
      fs.rmSync(path, { force: true });
    }
  }

  /** Writes the daemon's own file `name` in the workdir (mode 0600), replacing it whole. */
  writeStateFile(name: string, data: Buffer): void {
    const dir = this.workdir.replace(/\/+$/, '');
    const temp = `${dir}/.${name}.${process.pid}`;
    fs.rmSync(temp, { force: true });
    const fd = fs.openSync(temp, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW, 0o600);
    try {
      fs.writeFileSync(fd, data);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(temp, `${dir}/${name}`);
  }

  /** A fresh name in the work directory. */
  temp(): Loc {
    return { fd: this.workFd, path: Buffer.from(`#${process.pid.toString(16)}-${(++this.tempCounter).toString(16)}`) };
  }

  /**
   * Runs a calling-thread twin on a local upper (0 or -errno), or the Promise one elsewhere,
   * on `at` made short enough for one syscall.
   */
  private call(at: Loc, sync: (at: Loc) => number, async: (at: Loc) => Promise<void>, syscall: string): Promise<void> {
    this.dropHeldParent();
    return this.reach(at, (short) => {
      if (!this.sync) return async(short);
      const res = sync(short);
      return res < 0 ? Promise.reject(errnoError(res, syscall, at.path.toString())) : Promise.resolve();
    });
  }

  /** As `call`, for the calls that name two places. */
  private call2(a: Loc, b: Loc, sync: (a: Loc, b: Loc) => number, async: (a: Loc, b: Loc) => Promise<void>, syscall: string): Promise<void> {
    this.dropHeldParent();
    return this.reach(a, (sa) =>
      this.reach(b, (sb) => {
        if (!this.sync) return async(sa, sb);
        const res = sync(sa, sb);
        return res < 0 ? Promise.reject(errnoError(res, syscall, a.path.toString())) : Promise.resolve();
      }),
    );
  }

  mkdir(at: Loc, mode: number): Promise<void> {
    return this.call(
      at,
      (a) => native.mkdiratSync(a.fd, a.path, mode),
      (a) => native.mkdirat(a.fd, a.path, mode),
      'mkdir',
    );
  }

  mknod(at: Loc, mode: number, major: number, minor: number): Promise<void> {
    return this.call(
      at,
      (a) => native.mknodatSync(a.fd, a.path, mode, major, minor),
      (a) => native.mknodat(a.fd, a.path, mode, major, minor),
      'mknod',
    );
  }

  symlink(target: Buffer, at: Loc): Promise<void> {
    return this.call(
      at,
      (a) => native.symlinkatSync(target, a.fd, a.path),
      (a) => native.symlinkat(target, a.fd, a.path),
      'symlink',
    );
  }

  link(from: Loc, to: Loc): Promise<void> {
    return this.call2(
      from,
      to,
      (f, t) => native.linkatSync(f.fd, f.path, t.fd, t.path, 0),
      (f, t) => native.linkat(f.fd, f.path, t.fd, t.path, 0),
      'link',
    );
  }

  /**
   * Gives the object an open descriptor holds (an O_TMPFILE file, say) the name `to`: linkat
   * with AT_EMPTY_PATH, or where that is not permitted (it needs CAP_DAC_READ_SEARCH on older
   * kernels), through the descriptor's /proc link, followed.
   */
  async linkFile(file: DescriptorFile, to: Loc): Promise<void> {
    try {
      await this.call(
        to,
        (t) => native.linkatSync(file.fd, EMPTY, t.fd, t.path, C.AT_EMPTY_PATH!),
        (t) => native.linkat(file.fd, EMPTY, t.fd, t.path, C.AT_EMPTY_PATH!),
        'link',
      );
    } catch (err) {
      if (errorCode(err) !== 'EPERM' && errorCode(err) !== 'ENOENT') throw err;
      const from = Buffer.from(`/proc/self/fd/${file.fd}`);
      await this.call(
        to,
        (t) => native.linkatSync(AT_FDCWD, from, t.fd, t.path, C.AT_SYMLINK_FOLLOW!),
        (t) => native.linkat(AT_FDCWD, from, t.fd, t.path, C.AT_SYMLINK_FOLLOW!),
        'link',
      );
    }
  }

  unlink(at: Loc): Promise<void> {
    return this.call(
      at,
      (a) => native.unlinkatSync(a.fd, a.path, 0),
      (a) => native.unlinkat(a.fd, a.path, 0),
      'unlink',
    );
  }

  rmdir(at: Loc): Promise<void> {
    return this.call(
      at,
      (a) => native.unlinkatSync(a.fd, a.path, AT_REMOVEDIR),
      (a) => native.unlinkat(a.fd, a.path, AT_REMOVEDIR),
      'rmdir',
    );
  }

  /**
   * A descriptor holding the object at `path` (O_PATH: not opened for I/O), so it can be
   * reached after its last name goes.
   */
  pin(path: string): Promise<FdFile> {
    return this.openFile(this.loc(path), C.O_PATH! | fs.constants.O_NOFOLLOW);
  }

  /** Removes a tree in the work directory (what a replaced directory left behind). */
  removeTemp(at: Loc): Promise<void> {
    this.dropHeldParent();
    return fs.promises.rm(Buffer.concat([Buffer.from(`${this.workPath}/`), at.path]), { recursive: true, force: true });
  }

  rename(from: Loc, to: Loc, flags = 0): Promise<void> {
    return this.call2(
      from,
      to,
      (f, t) => native.renameat2Sync(f.fd, f.path, t.fd, t.path, flags),
      (f, t) => native.renameat2(f.fd, f.path, t.fd, t.path, flags),
      'rename',
    );
  }

  /** lchown; -1 leaves that id unchanged. */
  chown(at: Loc, uid: number, gid: number): Promise<void> {
    return this.call(
      at,
      (a) => native.fchownatSync(a.fd, a.path, uid, gid, AT_SYMLINK_NOFOLLOW),
      (a) => native.fchownat(a.fd, a.path, uid, gid, AT_SYMLINK_NOFOLLOW),
      'lchown',
    );
  }

  /**
   * chmod of a non-symlink (Linux cannot change a symlink's mode), never through one: a symlink
   * found there was swapped in for the object, which is then gone (ENOENT).
   */
  async chmod(at: Loc, mode: number): Promise<void> {
    try {
      await this.call(
        at,
        (a) => native.fchmodatSync(a.fd, a.path, mode, AT_SYMLINK_NOFOLLOW),
        (a) => native.fchmodat(a.fd, a.path, mode, AT_SYMLINK_NOFOLLOW),
        'chmod',
      );
    } catch (err) {
      if (errorCode(err) === 'EOPNOTSUPP') throw errnoError(-2, 'chmod', at.path.toString());
      throw err;
    }
  }

  utimens(at: Loc, atime: Timespec, mtime: Timespec): Promise<void> {
    return this.call(
      at,
      (a) => native.utimensatSync(a.fd, a.path, atime.sec, atime.nsec, mtime.sec, mtime.nsec, AT_SYMLINK_NOFOLLOW),
      (a) => native.utimensat(a.fd, a.path, atime.sec, atime.nsec, mtime.sec, mtime.nsec, AT_SYMLINK_NOFOLLOW),
      'utimensat',
    );
  }

  async truncate(at: Loc, size: bigint): Promise<void> {
    const fd = await this.openAt(at, fs.constants.O_WRONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK);
    try {
      await native.ftruncate(fd, size);
    } finally {
      fs.closeSync(fd);
    }
  }

  setxattr(at: Loc, name: string, value: Buffer, flags = 0): Promise<void> {
    const n = Buffer.from(name, 'latin1');
    return this.call(
      at,
      (a) => native.setxattratSync(a.fd, a.path, n, value, flags, false),
      (a) => native.setxattrat(a.fd, a.path, n, value, flags, false),
      'lsetxattr',
    );
  }

  removexattr(at: Loc, name: string): Promise<void> {
    const n = Buffer.from(name, 'latin1');
    return this.call(
      at,
      (a) => native.removexattratSync(a.fd, a.path, n, false),
      (a) => native.removexattrat(a.fd, a.path, n, false),
      'lremovexattr',
    );
  }

  /** fsync of a directory of the upper. */
  async fsyncDir(at: Loc): Promise<void> {
    const fd = await this.openAt(at, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
    try {
      await new Promise<void>((resolve, reject) => fs.fsync(fd, (err) => (err ? reject(err) : resolve())));
    } finally {
      fs.closeSync(fd);
    }
  }
}
