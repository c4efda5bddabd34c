/**
 * `mount -o remount,…` of an ovshift mount, which mount.fuse3 hands to ovshift as one more
 * option. As kernel overlayfs does for a remount through mount(2), the mount flags change (ro,
 * rw, nosuid, nodev, noexec, the atime rules, sync, dirsync, lazytime) and every other option
 * is ignored: mount(8) and scripts such as xfstests pass the whole option string again, layers
 * included, and the layers of a running mount do not change. A flag not named keeps the value
 * the mount has (mount(2) would clear it). Done by the caller's own process, so mount(2)
 * checks the caller's privilege, never the server's.
 */
import { promises as fsp } from 'fs';
import { mountAt, type MountInfo } from '../fuse/mount';
import { C, native } from '../native';
import { applyMountFlag, msFlags } from './mount-flags';
import type { MountFlags } from './options';

/** The mount flags a mount has now, from its mountinfo options. */
function currentFlags(m: MountInfo): MountFlags {
  const flags: MountFlags = {
    readOnly: false,
    nosuid: false,
    nodev: false,
    noexec: false,
    noatime: false,
    nodiratime: false,
    strictatime: !m.options.includes('relatime') && !m.options.includes('noatime'),
    lazytime: false,
    sync: false,
    dirsync: false,
  };
  for (const opt of m.options) applyMountFlag(flags, opt);
  return flags;
}

/**
 * Remounts the ovshift mount at `mountpoint` with the mount flags among `options` (the rest are
 * ignored); throws naming what is wrong.
 */
export async function remount(mountpoint: string, options: string[]): Promise<void> {
  let path: string;
  try {
    path = await fsp.realpath(mountpoint);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new Error(`cannot remount ${mountpoint}: ${code === 'ENOENT' ? 'no such directory' : (code ?? (err as Error).message)}`);
  }
  const mounted = await mountAt(path);
  if (mounted?.type !== 'fuse.ovshift') {
    throw new Error(`cannot remount ${mountpoint}: ${mounted ? `it is a ${mounted.type} mount, not ovshift's` : 'nothing is mounted there'}`);
  }
  const flags = currentFlags(mounted);
  for (const opt of options) applyMountFlag(flags, opt);
  try {
    await native.mount('', path, '', C.MS_REMOUNT! | msFlags(flags), '');
  } catch (err) {
    throw new Error(`cannot remount ${mountpoint}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}
