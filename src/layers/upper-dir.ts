/**
 * The writable upper layer: a directory, with a work directory on the same filesystem where
 * objects are built before being renamed into place. Write primitives only, each on a Loc (a
 * directory descriptor and a path relative to it); what to write (whiteouts, copy-up, opaque
 * markers) is the overlay's business.
 */
import * as fs from 'fs';
import { native } from '../native';
import { errnoError } from '../util/errno';
import { DirLayer, type Loc } from './dir-layer';

const AT_SYMLINK_NOFOLLOW = 0x100;
const AT_REMOVEDIR = 0x200;
export const UTIME_NOW = (1 << 30) - 1;
export const UTIME_OMIT = (1 << 30) - 2;

export interface TimeArg {
  sec: number;
  /** nanoseconds, or UTIME_NOW / UTIME_OMIT */
  nsec: number;
}

export class UpperDir extends DirLayer {
  /** workdir/work, as kernel overlayfs lays it out, so either can mount this upper. */
  private readonly workFd: number;
  private readonly workPath: string;
  private tempCounter = 0;

  constructor(root: string, readonly workdir: string, label: string, opts: { sync?: boolean } = {}) {
    super(root, label, opts);
    this.workPath = `${workdir.replace(/\/+$/, '')}/work`;
    fs.mkdirSync(this.workPath, { recursive: true, mode: 0o700 });
    this.workFd = fs.openSync(this.workPath, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
  }

  /** Clears what an interrupted run left in the work directory. */
  clearWorkdir(): void {
    for (const name of fs.readdirSync(this.workPath, { encoding: 'buffer' })) {
      fs.rmSync(Buffer.concat([Buffer.from(`${this.workPath}/`), name]), { recursive: true, force: true });
    }
  }

  /** A fresh name in the work directory. */
  temp(): Loc {
    return { fd: this.workFd, path: Buffer.from(`#${process.pid.toString(16)}-${(++this.tempCounter).toString(16)}`) };
  }

  /** Runs a calling-thread twin on a local upper (0 or -errno), or the Promise one elsewhere. */
  private call(sync: () => number, async: () => Promise<void>, syscall: string, at: Loc): Promise<void> {
    if (!this.sync) return async();
    const res = sync();
    return res < 0 ? Promise.reject(errnoError(res, syscall, at.path.toString())) : Promise.resolve();
  }

  mkdir(at: Loc, mode: number): Promise<void> {
    return this.call(() => native.mkdiratSync(at.fd, at.path, mode), () => native.mkdirat(at.fd, at.path, mode), 'mkdir', at);
  }

  mknod(at: Loc, mode: number, major: number, minor: number): Promise<void> {
    return this.call(
      () => native.mknodatSync(at.fd, at.path, mode, major, minor),
      () => native.mknodat(at.fd, at.path, mode, major, minor), 'mknod', at,
    );
  }

  symlink(target: Buffer, at: Loc): Promise<void> {
    return this.call(() => native.symlinkatSync(target, at.fd, at.path), () => native.symlinkat(target, at.fd, at.path), 'symlink', at);
  }

  link(from: Loc, to: Loc): Promise<void> {
    return this.call(
      () => native.linkatSync(from.fd, from.path, to.fd, to.path, 0),
      () => native.linkat(from.fd, from.path, to.fd, to.path, 0), 'link', to,
    );
  }

  unlink(at: Loc): Promise<void> {
    return this.call(() => native.unlinkatSync(at.fd, at.path, 0), () => native.unlinkat(at.fd, at.path, 0), 'unlink', at);
  }

  rmdir(at: Loc): Promise<void> {
    return this.call(
      () => native.unlinkatSync(at.fd, at.path, AT_REMOVEDIR),
      () => native.unlinkat(at.fd, at.path, AT_REMOVEDIR), 'rmdir', at,
    );
  }

  /** Removes a tree in the work directory (what a replaced directory left behind). */
  removeTemp(at: Loc): Promise<void> {
    return fs.promises.rm(Buffer.concat([Buffer.from(`${this.workPath}/`), at.path]), { recursive: true, force: true });
  }

  rename(from: Loc, to: Loc, flags = 0): Promise<void> {
    return this.call(
      () => native.renameat2Sync(from.fd, from.path, to.fd, to.path, flags),
      () => native.renameat2(from.fd, from.path, to.fd, to.path, flags), 'rename', from,
    );
  }

  /** lchown; -1 leaves that id unchanged. */
  chown(at: Loc, uid: number, gid: number): Promise<void> {
    return this.call(
      () => native.fchownatSync(at.fd, at.path, uid, gid, AT_SYMLINK_NOFOLLOW),
      () => native.fchownat(at.fd, at.path, uid, gid, AT_SYMLINK_NOFOLLOW), 'lchown', at,
    );
  }

  /** chmod of a non-symlink (Linux cannot change a symlink's mode). */
  chmod(at: Loc, mode: number): Promise<void> {
    return this.call(() => native.fchmodatSync(at.fd, at.path, mode, 0), () => native.fchmodat(at.fd, at.path, mode, 0), 'chmod', at);
  }

  utimens(at: Loc, atime: TimeArg, mtime: TimeArg): Promise<void> {
    return this.call(
      () => native.utimensatSync(at.fd, at.path, atime.sec, atime.nsec, mtime.sec, mtime.nsec, AT_SYMLINK_NOFOLLOW),
      () => native.utimensat(at.fd, at.path, atime.sec, atime.nsec, mtime.sec, mtime.nsec, AT_SYMLINK_NOFOLLOW), 'utimensat', at,
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
      () => native.setxattratSync(at.fd, at.path, n, value, flags, false),
      () => native.setxattrat(at.fd, at.path, n, value, flags, false), 'lsetxattr', at,
    );
  }

  removexattr(at: Loc, name: string): Promise<void> {
    const n = Buffer.from(name, 'latin1');
    return this.call(
      () => native.removexattratSync(at.fd, at.path, n, false),
      () => native.removexattrat(at.fd, at.path, n, false), 'lremovexattr', at,
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
