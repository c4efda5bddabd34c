/**
 * Inode flags (chattr, lsattr; FS_IOC_GETFLAGS/SETFLAGS and FS_IOC_FSGETXATTR/FSSETXATTR), which
 * the kernel asks of a FUSE filesystem as ioctls once it has checked the caller may (owner, and
 * CAP_LINUX_IMMUTABLE for the immutable and append-only flags). An upper object's flags are its
 * own, set by the upper filesystem (which refuses what it does not support); setting one on a
 * lower object copies it up first. A lower object shows none: its copy would not have them.
 */
import { constants as K } from 'fs';
import { FuseError } from '../fuse/errors';
import type { IoctlOut } from '../fuse/replies';
import { native } from '../native';
import { errnoName } from '../util/errno';
import type { OverlayCore } from './core';
import type { DescriptorFile } from '../layers/types';
import type { Node } from './nodes';
import { S_IFDIR, S_IFREG } from '../util/linux';

const FS_IOC_GETFLAGS = 0x80086601;
const FS_IOC_SETFLAGS = 0x40086602;
const FS_IOC_FSGETXATTR = 0x801c581f;
const FS_IOC_FSSETXATTR = 0x401c5820;
const FLAGS_SIZE = 4;
const FSXATTR_SIZE = 28;

const COMMANDS = new Map<number, { which: 0 | 1 | 2 | 3; size: number; sets: boolean }>([
  [FS_IOC_GETFLAGS, { which: 0, size: FLAGS_SIZE, sets: false }],
  [FS_IOC_SETFLAGS, { which: 1, size: FLAGS_SIZE, sets: true }],
  [FS_IOC_FSGETXATTR, { which: 2, size: FSXATTR_SIZE, sets: false }],
  [FS_IOC_FSSETXATTR, { which: 3, size: FSXATTR_SIZE, sets: true }],
]);

const FS_IMMUTABLE_FL = 0x10;
const FS_APPEND_FL = 0x20;

/**
 * Whether the upper object of `node` is immutable or append-only (false for an object only in
 * a lower, or a filesystem without flags): what forbids removing names in it, or it.
 */
export async function isProtected(core: OverlayCore, node: Node): Promise<boolean> {
  if (!node.inUpper || node.unlinked || (node.type !== S_IFREG && node.type !== S_IFDIR) || !core.layers.upper) return false;
  const file = await openUpperObject(core, node);
  try {
    const buf = Buffer.alloc(FLAGS_SIZE);
    return native.fileattrSync(file.fd, 0, buf) === 0 && (buf.readInt32LE(0) & (FS_IMMUTABLE_FL | FS_APPEND_FL)) !== 0;
  } finally {
    file.closeSync();
  }
}

/**
 * The node's upper file or directory, opened to ask its flags: never blocking (O_NONBLOCK, were
 * a FIFO swapped in at the path underneath), and only if it is still the node's object.
 */
async function openUpperObject(core: OverlayCore, node: Node): Promise<DescriptorFile> {
  const upper = core.upper;
  const file = await upper.openFile(upper.loc(node.path), K.O_RDONLY | K.O_NOFOLLOW | K.O_NONBLOCK | (node.isDir ? K.O_DIRECTORY : 0));
  if (file.statNow()?.identity !== node.upperIdentity) {
    file.closeSync();
    throw new FuseError('ESTALE');
  }
  return file;
}

/** Answers one of the four inode flag ioctls on `node`; any other command is ENOTTY. */
export async function fileattr(core: OverlayCore, node: Node, cmd: number, data: Buffer): Promise<IoctlOut> {
  const c = COMMANDS.get(cmd >>> 0);
  if (!c) throw new FuseError('ENOTTY');
  if (node.unlinked) throw new FuseError('ESTALE');
  // Only files and directories: opening a device node or a FIFO in the upper to ask could do
  // what opening it does (the ioctl of such a node is the driver's anyway).
  if (node.type !== S_IFREG && node.type !== S_IFDIR) throw new FuseError('ENOTTY');
  if (c.sets) {
    if (!core.layers.upper) throw new FuseError('EROFS');
    if (data.length < c.size) throw new FuseError('EINVAL');
    await core.copyUp!.ensure(node);
  } else if (!node.inUpper) {
    return { result: 0, flags: 0, inIovs: 0, outIovs: 0, data: Buffer.alloc(c.size) };
  }
  const file = await openUpperObject(core, node);
  try {
    const buf = c.sets ? Buffer.from(data.subarray(0, c.size)) : Buffer.alloc(c.size);
    const res = native.fileattrSync(file.fd, c.which, buf);
    if (res < 0) throw new FuseError(errnoName(res));
    // Setting flags moves the object's ctime; the kernel's cached attributes would keep the old one.
    if (c.sets) await core.notifier?.invalAttrs(node.id);
    return { result: 0, flags: 0, inIovs: 0, outIovs: 0, data: c.sets ? Buffer.alloc(0) : buf };
  } finally {
    file.closeSync();
  }
}
