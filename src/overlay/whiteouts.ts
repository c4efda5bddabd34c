/**
 * Writing the overlay format into the upper: whiteouts for removed lower names, opaque markers
 * for directories that must not merge, and atomic replacement of a whiteout by a new object.
 */
import { errorCode } from '../util/errno';
import type { Loc } from '../layers/types';
import type { UpperDir } from '../layers/upper-dir';
import { childPath, parentPath, baseName } from '../layers/types';
import { OPAQUE_MARKER, WHITEOUT_PREFIX, type OverlayXattrs } from './format';
import { RENAME_EXCHANGE, RENAME_WHITEOUT, S_IFCHR, S_IFREG } from '../util/linux';

function cannotHold(err: unknown): boolean {
  return ['EPERM', 'EOPNOTSUPP', 'ENOTSUP', 'EINVAL'].includes(errorCode(err) ?? '');
}

/** Where fuse-overlayfs's fallback whiteout for `path` lives. */
export function whiteoutFilePath(path: string): string {
  return childPath(parentPath(path), WHITEOUT_PREFIX + baseName(path));
}

/** Marks `path` deleted: a 0/0 character device, or a `.wh.` file where devices cannot be made. */
export async function makeWhiteout(upper: UpperDir, path: string): Promise<void> {
  try {
    await upper.mknod(upper.loc(path), S_IFCHR, 0, 0);
  } catch (err) {
    if (!cannotHold(err)) throw err;
    await upper.mknod(upper.loc(whiteoutFilePath(path)), S_IFREG | 0o600, 0, 0);
  }
}

/** Removes a stale `.wh.` file for `path`, if there is one. */
export async function clearWhiteoutFile(upper: UpperDir, path: string): Promise<void> {
  await upper.unlink(upper.loc(whiteoutFilePath(path))).catch((err) => {
    // ENAMETOOLONG: a name too long to carry the prefix never had such a whiteout.
    if (errorCode(err) !== 'ENOENT' && errorCode(err) !== 'ENAMETOOLONG') throw err;
  });
}

/**
 * Removes the upper object at `path` and leaves a whiteout in its place in one step
 * (RENAME_WHITEOUT), so the lower object below never shows; then deletes what was moved.
 */
export async function removeLeavingWhiteout(upper: UpperDir, path: string): Promise<void> {
  const temp = upper.temp();
  try {
    await upper.rename(upper.loc(path), temp, RENAME_WHITEOUT);
  } catch (err) {
    if (!cannotHold(err)) throw err;
    await upper.rename(upper.loc(path), temp);
    await makeWhiteout(upper, path);
  }
  await upper.removeTemp(temp);
}

/** Removes the upper object at `path` (a directory may still hold whiteouts). */
export async function removeUpper(upper: UpperDir, path: string, isDir: boolean): Promise<void> {
  if (!isDir) return upper.unlink(upper.loc(path));
  try {
    await upper.rmdir(upper.loc(path));
  } catch (err) {
    if (errorCode(err) !== 'ENOTEMPTY' && errorCode(err) !== 'EEXIST') throw err;
    const temp = upper.temp();
    await upper.rename(upper.loc(path), temp);
    await upper.removeTemp(temp);
  }
}

/**
 * Puts the object built at `temp` (in the work dir) at `path`, where a whiteout is, in one
 * step: a non-directory replaces a whiteout device; a directory is exchanged with it, and the
 * whiteout, now at `temp`, deleted. A `.wh.` whiteout file is removed afterwards.
 */
export async function replaceWhiteout(upper: UpperDir, temp: Loc, path: string, isDir: boolean): Promise<void> {
  const deviceThere = (await upper.stat(path)) !== null;
  if (isDir && deviceThere) {
    await upper.rename(temp, upper.loc(path), RENAME_EXCHANGE);
    await upper.unlink(temp);
  } else {
    await upper.rename(temp, upper.loc(path));
  }
  await clearWhiteoutFile(upper, path);
}

/** Makes the upper directory at `at` opaque: lower directories are not merged below it. */
export async function setOpaque(upper: UpperDir, at: Loc, xattrs: OverlayXattrs): Promise<void> {
  try {
    await upper.setxattr(at, xattrs.opaque, Buffer.from('y'));
  } catch (err) {
    if (!cannotHold(err)) throw err;
    await upper.mknod({ fd: at.fd, path: Buffer.concat([at.path, Buffer.from(`/${OPAQUE_MARKER}`)]) }, S_IFREG | 0o600, 0, 0);
  }
}
