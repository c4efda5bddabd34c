/** Attributes shown for a node, from the layer object that backs it. */
import type { Attr } from '../fuse/replies';
import type { IdShift } from '../idmap';
import type { LayerAttr } from '../layers/types';
import type { Node } from './nodes';

/** The kernel's new_encode_dev, as fuse_attr.rdev carries it. */
export function encodeDev(major: number, minor: number): number {
  return ((minor & 0xff) | (major << 8) | ((minor & ~0xff) << 12)) >>> 0;
}

/** The kernel's new_decode_dev: a FUSE request's rdev (MKNOD) as major and minor. */
export function decodeDev(rdev: number): { major: number; minor: number } {
  return { major: (rdev & 0xfff00) >>> 8, minor: (rdev & 0xff) | ((rdev >>> 12) & 0xfff00) };
}

/**
 * What the mount shows of a layer object: owners mapped from layer ids to view ids. With
 * `staticNlink`, every directory shows 1 link.
 */
export function nodeAttr(node: Node, a: LayerAttr, ids: IdShift, staticNlink = false): Attr {
  let nlink = a.nlink;
  // A directory merged from several layers: counting its subdirectories is not worth it, and
  // 1 tells find(1) not to rely on the count (as kernel overlayfs does).
  if (node.isDir && (staticNlink || (node.inUpper ? 1 : 0) + node.lowers.length > 1)) nlink = 1;
  if (node.unlinked) nlink = 0;
  return {
    ino: node.ino,
    size: a.size,
    blocks: a.blocks,
    atime: a.atime,
    mtime: a.mtime,
    ctime: a.ctime,
    mode: a.mode,
    nlink,
    uid: ids.uids.toView(a.uid),
    gid: ids.gids.toView(a.gid),
    rdev: encodeDev(a.rdevMajor, a.rdevMinor),
    blksize: a.blksize,
  };
}
