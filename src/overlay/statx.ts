/**
 * STATX: what GETATTR answers, and what only statx(2) carries: the birth time of the layer
 * object behind a node, and the inode flags of an upper object that statx reports as
 * attributes (append-only, immutable, nodump, compressed), as lsattr shows them (a lower
 * object shows none: see fileattr.ts). Kernel 6.18's FUSE passes the birth time on but not
 * the attributes (measured): they are sent for kernels that do.
 */
import type { Attr, StatxOut } from '../fuse/replies';
import type { LayerAttr } from '../layers/types';
import { decodeDev } from './attrs';
import type { Node } from './nodes';

const STATX_BASIC_STATS = 0x7ff;
const STATX_BTIME = 0x800;
/** STATX_ATTR_COMPRESSED, _IMMUTABLE, _APPEND, _NODUMP: the inode flags statx reports. */
const FLAG_ATTRIBUTES = 0x04 | 0x10 | 0x20 | 0x40;

export function statxOut(node: Node, attr: Attr, layer: LayerAttr | undefined, attrTimeout: number): StatxOut {
  const btime = layer?.btime;
  const attributes = node.inUpper ? (layer?.statxAttributes ?? 0) & FLAG_ATTRIBUTES : 0;
  const rdev = decodeDev(attr.rdev);
  return {
    attrTimeout,
    flags: 0,
    stat: {
      mask: STATX_BASIC_STATS | (btime ? STATX_BTIME : 0),
      blksize: attr.blksize,
      attributes: BigInt(attributes),
      attributesMask: BigInt(FLAG_ATTRIBUTES),
      nlink: attr.nlink,
      uid: attr.uid,
      gid: attr.gid,
      mode: attr.mode,
      ino: attr.ino,
      size: attr.size,
      blocks: attr.blocks,
      atime: attr.atime,
      btime: btime ?? { sec: 0, nsec: 0 },
      ctime: attr.ctime,
      mtime: attr.mtime,
      rdevMajor: rdev.major,
      rdevMinor: rdev.minor,
      // The kernel shows its own device for the mount.
      devMajor: 0,
      devMinor: 0,
    },
  };
}
