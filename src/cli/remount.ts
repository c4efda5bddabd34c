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

/** `flags` with the mount flag option `opt` applied; false if `opt` is not one. */
function applyFlag(flags: MountFlags, opt: string): boolean {
  const set = (key: keyof MountFlags, value: boolean): true => {
    flags[key] = value;
    return true;
  };
  const atime = (noatime: boolean, strictatime: boolean): true => {
    flags.noatime = noatime;
    flags.strictatime = strictatime;
    return true;
  };
  switch (opt) {
    case 'ro':
    case 'rw':
      return set('readOnly', opt === 'ro');
    case 'suid':
    case 'nosuid':
      return set('nosuid', opt === 'nosuid');
    case 'dev':
    case 'nodev':
      return set('nodev', opt === 'nodev');
    case 'exec':
    case 'noexec':
      return set('noexec', opt === 'noexec');
    case 'diratime':
    case 'nodiratime':
      return set('nodiratime', opt === 'nodiratime');
    case 'lazytime':
    case 'nolazytime':
      return set('lazytime', opt === 'lazytime');
    case 'sync':
    case 'async':
      return set('sync', opt === 'sync');
    case 'dirsync':
      return set('dirsync', true);
    case 'noatime':
      return atime(true, false);
    case 'relatime':
    case 'atime':
      return atime(false, false);
    case 'strictatime':
      return atime(false, true);
    default:
      return false;
  }
}

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
  for (const opt of m.options) applyFlag(flags, opt);
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
  for (const opt of options) applyFlag(flags, opt);
  try {
    await native.mount('', path, '', C.MS_REMOUNT! | msFlags(flags), '');
  } catch (err) {
    throw new Error(`cannot remount ${mountpoint}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}
