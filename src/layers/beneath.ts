/**
 * Reaching a directory inside a layer without ever leaving it: every component is resolved
 * beneath the layer's root, no symlink is followed (magic links included) and no mount inside
 * the layer is crossed. Layer contents are untrusted: anyone who can write part of a layer can
 * swap a directory for a symlink between two calls, and the daemon runs as root.
 *
 * openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV) does
 * it in one call; kernels without openat2 get the same walk one O_PATH|O_NOFOLLOW component at
 * a time (mounts are then crossed). A path that would leave the layer fails with ENOENT, as if
 * the object were gone: that is what the overlay's usual absent/ESTALE handling expects.
 */
import { closeSync } from 'fs';
import createDebug from 'debug';
import { C, native } from '../native';
import { errnoError, errnoNumber } from '../util/errno';
import { O_CLOEXEC, O_CREAT, O_DIRECTORY, O_NOFOLLOW, O_PATH, O_TMPFILE } from '../util/linux';

const log = createDebug('ovshift:layers');

const RESOLVE_CONFINED = C.RESOLVE_BENEATH! | C.RESOLVE_NO_SYMLINKS! | C.RESOLVE_NO_MAGICLINKS! | C.RESOLVE_NO_XDEV!;
const DIR_FLAGS = O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;

const ENOENT = -errnoNumber('ENOENT');
const EXDEV = -errnoNumber('EXDEV');
const ENOTDIR = -errnoNumber('ENOTDIR');
const ENOSYS = -errnoNumber('ENOSYS');
const ELOOP = -errnoNumber('ELOOP');
const ENAMETOOLONG = -errnoNumber('ENAMETOOLONG');
const EINVAL = -errnoNumber('EINVAL');
/** The kernel's __FMODE_EXEC, in the flags of an exec's FUSE OPEN: openat ignores it, openat2 refuses it. */
const FMODE_EXEC = 0o40;
/** Paths from this length on are resolved a piece at a time (PATH_MAX is 4096 with the NUL). */
const LONG_PATH = 4000;

let haveOpenat2 = true;

const WHY: Record<number, string> = {
  [ELOOP]: 'a symlink on the way',
  [EXDEV]: 'outside the layer or across a mount',
  [ENOTDIR]: 'a non-directory (or a symlink) where a directory was',
};

/**
 * A symlink or mount on the way, an attempt to climb out, or a directory replaced by something
 * else: the object is not there (ENOENT), whichever component it was.
 */
function confined(res: number, path: Buffer): number {
  const why = WHY[res];
  if (why === undefined) return res;
  log('%s: %s; treated as absent', path.toString(), why);
  return ENOENT;
}

/** One component at a time with O_NOFOLLOW, for kernels without openat2 (before 5.6). */
function walkSync(dirfd: number, path: Buffer): number {
  let fd = dirfd;
  for (const name of path.toString('latin1').split('/')) {
    if (name === '' || name === '.' || name === '..') {
      if (fd !== dirfd) closeSync(fd);
      return ENOENT;
    }
    const next = native.openatSync(fd, Buffer.from(name, 'latin1'), DIR_FLAGS, 0);
    if (fd !== dirfd) closeSync(fd);
    if (next < 0) return next;
    fd = next;
  }
  return fd;
}

/** openat2 of a directory below dirfd, or the walk where openat2 is missing: fd or -errno. */
function openDirOnceSync(dirfd: number, path: Buffer): number {
  if (haveOpenat2) {
    const fd = native.openat2Sync(dirfd, path, DIR_FLAGS, 0, RESOLVE_CONFINED);
    if (fd !== ENOSYS) return confined(fd, path);
    haveOpenat2 = false;
  }
  return confined(walkSync(dirfd, path), path);
}

/**
 * Opens the directory `path` (relative, without leading '/') beneath `dirfd` as an O_PATH
 * descriptor the caller closes; a path too long for one call is resolved a piece at a time.
 * Returns the fd or -errno.
 */
export function openDirBeneathSync(dirfd: number, path: Buffer): number {
  let fd = dirfd;
  let rest = path;
  while (rest.length >= LONG_PATH) {
    const cut = rest.lastIndexOf(0x2f, LONG_PATH - 1);
    if (cut <= 0) {
      if (fd !== dirfd) closeSync(fd);
      return ENAMETOOLONG;
    }
    const next = openDirOnceSync(fd, rest.subarray(0, cut));
    if (fd !== dirfd) closeSync(fd);
    if (next < 0) return next;
    fd = next;
    rest = rest.subarray(cut + 1);
  }
  const last = openDirOnceSync(fd, rest);
  if (fd !== dirfd) closeSync(fd);
  return last;
}

/**
 * Opens `path` beneath `dirfd` in one call where openat2 can (as confined as reaching its
 * parent and opening the name there with O_NOFOLLOW: a symlink as the last component fails
 * too); undefined where the caller must take the long way (no openat2, a path too long).
 * Returns the fd or -errno.
 */
export function openBeneathSync(dirfd: number, path: Buffer, flags: number, mode: number): number | undefined {
  if (!haveOpenat2 || path.length >= LONG_PATH) return undefined;
  // openat2 refuses what openat ignores: flag bits it does not know and a mode without O_CREAT
  // or O_TMPFILE.
  const creates = (flags & O_CREAT) !== 0 || (flags & O_TMPFILE) === O_TMPFILE;
  const fd = native.openat2Sync(dirfd, path, (flags & ~FMODE_EXEC) | O_NOFOLLOW | O_CLOEXEC, creates ? mode : 0, RESOLVE_CONFINED);
  if (fd === ENOSYS) {
    haveOpenat2 = false;
    return undefined;
  }
  // Anything else it refuses takes the long way, as before.
  if (fd === EINVAL) return undefined;
  return confined(fd, path);
}

/** As openDirBeneathSync on the thread pool, for layers whose calls may wait on a server. */
export async function openDirBeneath(dirfd: number, path: Buffer): Promise<number> {
  if (path.length >= LONG_PATH || !haveOpenat2) return openDirBeneathSync(dirfd, path);
  try {
    return await native.openat2(dirfd, path, DIR_FLAGS, 0, RESOLVE_CONFINED);
  } catch (err) {
    const errno = (err as NodeJS.ErrnoException).errno ?? 0;
    if (errno === ENOSYS) {
      haveOpenat2 = false;
      return openDirBeneathSync(dirfd, path);
    }
    return confined(errno, path);
  }
}

/** An error for a failed openDirBeneath, naming the path. */
export function beneathError(res: number, path: Buffer): NodeJS.ErrnoException {
  return errnoError(res, 'openat2', path.toString());
}
