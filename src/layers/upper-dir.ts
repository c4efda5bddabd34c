/**
 * The writable upper layer: a directory, with a work directory on the same filesystem where
 * objects are built before being renamed into place. Write primitives only; what to write
 * (whiteouts, copy-up, opaque markers) is the overlay's business.
 */
import * as fs from 'fs';
import { native } from '../native';
import { errnoError } from '../util/errno';
import { DirLayer, type LocalFile } from './dir-layer';

const AT_FDCWD = -100;
const AT_SYMLINK_NOFOLLOW = 0x100;
export const UTIME_NOW = (1 << 30) - 1;
export const UTIME_OMIT = (1 << 30) - 2;

export interface TimeArg {
  sec: number;
  /** nanoseconds, or UTIME_NOW / UTIME_OMIT */
  nsec: number;
}

export class UpperDir extends DirLayer {
  /** workdir/work, as kernel overlayfs lays it out, so either can mount this upper. */
  private readonly workBin: string;
  private tempCounter = 0;

  constructor(root: string, readonly workdir: string, label: string, opts: { sync?: boolean } = {}) {
    super(root, label, opts);
    this.workBin = Buffer.from(`${workdir.replace(/\/+$/, '')}/work`, 'utf8').toString('latin1');
  }

  /** Creates the work directory and clears what an interrupted run left in it. */
  prepareWorkdir(): void {
    const work = Buffer.from(this.workBin, 'latin1');
    fs.mkdirSync(work, { recursive: true, mode: 0o700 });
    for (const name of fs.readdirSync(work, { encoding: 'buffer' })) {
      fs.rmSync(Buffer.concat([work, Buffer.from('/'), name]), { recursive: true, force: true });
    }
  }

  /** A fresh name in the work directory (absolute, bytes). */
  tempPath(): Buffer {
    return Buffer.from(`${this.workBin}/#${process.pid.toString(16)}-${(++this.tempCounter).toString(16)}`, 'latin1');
  }

  /** Runs a synchronous call on a local upper, or its async twin elsewhere; failures reject. */
  private call<T>(sync: () => T, async: () => Promise<T>): Promise<T> {
    if (!this.sync) return async();
    try {
      return Promise.resolve(sync());
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** For native twins: 0/value or -errno. */
  private check<T>(res: T | number, syscall: string, where: Buffer): T {
    if (typeof res === 'number' && res < 0) throw errnoError(res, syscall, where.toString());
    return res as T;
  }

  mkdirAbs(abs: Buffer, mode: number): Promise<void> {
    return this.call(
      () => void fs.mkdirSync(abs, mode),
      () => fs.promises.mkdir(abs, mode).then(() => undefined),
    );
  }

  mkdir(path: string, mode: number): Promise<void> {
    return this.mkdirAbs(this.abs(path), mode);
  }

  mknodAbs(abs: Buffer, mode: number, major: number, minor: number): Promise<void> {
    return this.call(
      () => void this.check(native.mknodatSync(AT_FDCWD, abs, mode, major, minor), 'mknod', abs),
      () => native.mknodat(AT_FDCWD, abs, mode, major, minor),
    );
  }

  mknod(path: string, mode: number, major: number, minor: number): Promise<void> {
    return this.mknodAbs(this.abs(path), mode, major, minor);
  }

  symlinkAbs(target: Buffer, abs: Buffer): Promise<void> {
    return this.call(() => fs.symlinkSync(target, abs), () => fs.promises.symlink(target, abs));
  }

  link(existing: string, path: string): Promise<void> {
    return this.linkAbs(this.abs(existing), this.abs(path));
  }

  linkAbs(from: Buffer, to: Buffer): Promise<void> {
    return this.call(() => fs.linkSync(from, to), () => fs.promises.link(from, to));
  }

  unlink(path: string): Promise<void> {
    return this.unlinkAbs(this.abs(path));
  }

  unlinkAbs(abs: Buffer): Promise<void> {
    return this.call(() => fs.unlinkSync(abs), () => fs.promises.unlink(abs));
  }

  rmdir(path: string): Promise<void> {
    return this.rmdirAbs(this.abs(path));
  }

  rmdirAbs(abs: Buffer): Promise<void> {
    return this.call(() => fs.rmdirSync(abs), () => fs.promises.rmdir(abs));
  }

  /** Removes a tree in the work directory (what a replaced directory left behind). */
  removeTreeAbs(abs: Buffer): Promise<void> {
    return fs.promises.rm(abs, { recursive: true, force: true });
  }

  renameAbs(from: Buffer, to: Buffer, flags = 0): Promise<void> {
    return this.call(
      () => void this.check(native.renameat2Sync(AT_FDCWD, from, AT_FDCWD, to, flags), 'renameat2', from),
      () => native.renameat2(AT_FDCWD, from, AT_FDCWD, to, flags),
    );
  }

  rename(from: string, to: string, flags = 0): Promise<void> {
    return this.renameAbs(this.abs(from), this.abs(to), flags);
  }

  /** open(2) of an absolute path, with the given flags and mode. */
  openAbs(abs: Buffer, flags: number, mode = 0): Promise<number> {
    return this.call(
      () => fs.openSync(abs, flags, mode),
      () => new Promise<number>((resolve, reject) => fs.open(abs, flags, mode, (err, fd) => (err ? reject(err) : resolve(fd)))),
    );
  }

  /** lchown; -1 leaves that id unchanged. */
  chownAbs(abs: Buffer, uid: number, gid: number): Promise<void> {
    return this.call(
      () => void this.check(native.fchownatSync(AT_FDCWD, abs, uid, gid, AT_SYMLINK_NOFOLLOW), 'lchown', abs),
      () => native.fchownat(AT_FDCWD, abs, uid, gid, AT_SYMLINK_NOFOLLOW),
    );
  }

  chown(path: string, uid: number, gid: number): Promise<void> {
    return this.chownAbs(this.abs(path), uid, gid);
  }

  chmodAbs(abs: Buffer, mode: number): Promise<void> {
    return this.call(() => fs.chmodSync(abs, mode), () => fs.promises.chmod(abs, mode));
  }

  chmod(path: string, mode: number): Promise<void> {
    return this.chmodAbs(this.abs(path), mode);
  }

  utimensAbs(abs: Buffer, atime: TimeArg, mtime: TimeArg): Promise<void> {
    return this.call(
      () => void this.check(native.utimensatSync(AT_FDCWD, abs, atime.sec, atime.nsec, mtime.sec, mtime.nsec, AT_SYMLINK_NOFOLLOW), 'utimensat', abs),
      () => native.utimensat(AT_FDCWD, abs, atime.sec, atime.nsec, mtime.sec, mtime.nsec, AT_SYMLINK_NOFOLLOW),
    );
  }

  utimens(path: string, atime: TimeArg, mtime: TimeArg): Promise<void> {
    return this.utimensAbs(this.abs(path), atime, mtime);
  }

  truncate(path: string, size: bigint): Promise<void> {
    return native.truncate(this.abs(path), size);
  }

  setxattrAbs(abs: Buffer, name: string, value: Buffer, flags = 0): Promise<void> {
    const n = Buffer.from(name, 'latin1');
    return this.call(
      () => void this.check(native.setxattrSync(abs, n, value, flags, false), 'lsetxattr', abs),
      () => native.setxattr(abs, n, value, flags, false),
    );
  }

  setxattr(path: string, name: string, value: Buffer, flags = 0): Promise<void> {
    return this.setxattrAbs(this.abs(path), name, value, flags);
  }

  removexattr(path: string, name: string): Promise<void> {
    const abs = this.abs(path);
    const n = Buffer.from(name, 'latin1');
    return this.call(
      () => void this.check(native.removexattrSync(abs, n, false), 'lremovexattr', abs),
      () => native.removexattr(abs, n, false),
    );
  }

  /** fsync of the upper file system object at `path`. */
  async fsyncPath(path: string): Promise<void> {
    const fd = await this.openAbs(this.abs(path), fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
    try {
      await new Promise<void>((resolve, reject) => fs.fsync(fd, (err) => (err ? reject(err) : resolve())));
    } finally {
      fs.closeSync(fd);
    }
  }
}

export type { LocalFile };
