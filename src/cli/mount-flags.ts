/**
 * The standard mount flag options (ro, nosuid, noatime, …): what each sets in MountFlags, the
 * last named winning as with any mount, and the MS_* flags for mount(2) they make.
 */
import { C } from '../native';
import type { MountFlags } from './options';

const FLAG_OPTIONS = new Map<string, Partial<MountFlags>>([
  ['ro', { readOnly: true }],
  ['rw', { readOnly: false }],
  ['nosuid', { nosuid: true }],
  ['suid', { nosuid: false }],
  ['nodev', { nodev: true }],
  ['dev', { nodev: false }],
  ['noexec', { noexec: true }],
  ['exec', { noexec: false }],
  ['nodiratime', { nodiratime: true }],
  ['diratime', { nodiratime: false }],
  ['lazytime', { lazytime: true }],
  ['nolazytime', { lazytime: false }],
  ['sync', { sync: true }],
  ['async', { sync: false }],
  ['dirsync', { dirsync: true }],
  ['noatime', { noatime: true, strictatime: false }],
  ['strictatime', { noatime: false, strictatime: true }],
  ['relatime', { noatime: false, strictatime: false }],
  ['atime', { noatime: false, strictatime: false }],
]);

/** Applies `opt` to `flags` if it is a mount flag option; false if it is not one. */
export function applyMountFlag(flags: MountFlags, opt: string): boolean {
  const set = FLAG_OPTIONS.get(opt);
  if (set) Object.assign(flags, set);
  return set !== undefined;
}

/** MS_* flags for mount(2). */
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
