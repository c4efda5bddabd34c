/**
 * `mount -o remount,…` of an ovshift mount, which mount.fuse3 hands to ovshift as one more
 * option. As kernel overlayfs does for a remount through mount(2), the mount flags change (ro,
 * rw, nosuid, nodev, noexec, the atime rules, sync, dirsync, lazytime) and every other option
 * is ignored: mount(8) and scripts such as xfstests pass the whole option string again, layers
 * included, and the layers of a running mount do not change. Done by the caller's own process,
 * so mount(2) checks the caller's privilege, never the server's.
 */
import { promises as fsp } from 'fs';
import { C, native } from '../native';
import type { MountFlags } from './options';

/** MS_* flags for mount(2) from the parsed flag options. */
export function msFlags(f: MountFlags): number {
  let flags = 0;
  if (f.readOnly) flags |= C.MS_RDONLY!;
  if (f.nosuid) flags |= C.MS_NOSUID!;
  if (f.nodev) flags |= C.MS_NODEV!;
  if (f.noexec) flags |= C.MS_NOEXEC!;
  if (f.noatime) flags |= C.MS_NOATIME!;
  if (f.nodiratime) flags |= C.MS_NODIRATIME!;
  if (f.strictatime) flags |= C.MS_STRICTATIME!;
  if (f.lazytime) flags |= C.MS_LAZYTIME!;
  if (f.sync) flags |= C.MS_SYNCHRONOUS!;
  if (f.dirsync) flags |= C.MS_DIRSYNC!;
  return flags;
}

/** The filesystem type of the mount a path reaches (the last one listed there), if mounted. */
async function typeMountedAt(path: string): Promise<string | undefined> {
  const info = await fsp.readFile('/proc/self/mountinfo', 'utf8');
  let type: string | undefined;
  for (const line of info.split('\n')) {
    const f = line.split(' ');
    // mountinfo escapes blanks in paths as \040.
    if (f[4]?.replace(/\\040/g, ' ') === path) type = f[f.indexOf('-') + 1];
  }
  return type;
}

/** Remounts the ovshift mount at `mountpoint` with `flags`; throws naming what is wrong. */
export async function remount(mountpoint: string, flags: MountFlags): Promise<void> {
  let path: string;
  try {
    path = await fsp.realpath(mountpoint);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new Error(`cannot remount ${mountpoint}: ${code === 'ENOENT' ? 'no such directory' : (code ?? (err as Error).message)}`);
  }
  const type = await typeMountedAt(path);
  if (type !== 'fuse.ovshift') throw new Error(`cannot remount ${mountpoint}: ${type ? `it is a ${type} mount, not ovshift's` : 'nothing is mounted there'}`);
  try {
    await native.mount('', path, '', C.MS_REMOUNT! | msFlags(flags), '');
  } catch (err) {
    throw new Error(`cannot remount ${mountpoint}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}
