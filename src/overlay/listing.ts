/**
 * Merged directory listings: the upper's entries, then each lower directory's entries not
 * already listed and not whited out above; overlay bookkeeping names never appear.
 */
import type { LayerDirent, ReadableLayer } from '../layers/types';
import { childPath } from '../layers/types';
import { OPAQUE_MARKER, WHITEOUT_PREFIX, isWhiteout, type OverlayXattrs } from './format';
import type { ListedEntry } from './handles';
import type { InodeNumbers } from './inodes';
import type { Node } from './nodes';
import type { Layers } from './resolve';

const DT_CHR = 2;
const DT_DIR = 4;

interface LayerListing {
  layer: ReadableLayer;
  path: string;
  dev: number;
  /** Whether st_ino of regular files may come from an origin xattr (upper only). */
  upper: boolean;
}

/** Entries of one layer directory, and the names it whites out for the layers below. */
async function readLayerDir(src: LayerListing): Promise<{ entries: LayerDirent[]; whiteouts: string[] }> {
  const entries: LayerDirent[] = [];
  const whiteouts: string[] = [];
  for (const e of await src.layer.readdir(src.path)) {
    if (e.name === OPAQUE_MARKER) continue;
    if (e.name.startsWith(WHITEOUT_PREFIX)) {
      whiteouts.push(e.name.slice(WHITEOUT_PREFIX.length));
      continue;
    }
    if (e.type === DT_CHR) {
      const attr = await src.layer.stat(childPath(src.path, e.name));
      if (attr && isWhiteout(attr)) {
        whiteouts.push(e.name);
        continue;
      }
    }
    entries.push(e);
  }
  return { entries, whiteouts };
}

export async function mergedListing(layers: Layers, xattrs: OverlayXattrs, inodes: InodeNumbers, node: Node): Promise<ListedEntry[]> {
  const sources: LayerListing[] = [];
  if (node.inUpper && layers.upper) {
    const dir = await layers.upper.stat(node.path);
    if (dir) sources.push({ layer: layers.upper, path: node.path, dev: dir.dev, upper: true });
  }
  if (!(node.inUpper && node.opaque)) {
    for (const part of node.lowers) {
      const layer = layers.lowers[part.layer]!;
      const dir = await layer.stat(part.path);
      // A lower directory that vanished or changed since lookup is left out, not an error.
      if (dir && dir.identity === part.identity) sources.push({ layer, path: part.path, dev: dir.dev, upper: false });
    }
  }
  const out: ListedEntry[] = [
    { name: '.', type: DT_DIR, ino: node.ino },
    { name: '..', type: DT_DIR, ino: node.parent?.ino ?? node.ino },
  ];
  const taken = new Set<string>();
  for (const src of sources) {
    const { entries, whiteouts } = await readLayerDir(src);
    for (const e of entries) {
      if (taken.has(e.name)) continue;
      taken.add(e.name);
      const ino = src.upper ? await upperEntryIno(src, e, xattrs, inodes) : inodes.map(src.dev, e.ino);
      out.push({ name: e.name, type: e.type, ino });
    }
    for (const w of whiteouts) taken.add(w);
  }
  return out;
}

/** A copied-up file shows the inode number of the lower file it came from. */
async function upperEntryIno(src: LayerListing, e: LayerDirent, xattrs: OverlayXattrs, inodes: InodeNumbers): Promise<number> {
  const origin = await src.layer.getxattr(childPath(src.path, e.name), xattrs.origin);
  const n = origin ? Number(origin.toString('latin1')) : NaN;
  return Number.isSafeInteger(n) && n > 0 ? n : inodes.map(src.dev, e.ino);
}

/** Does the merged directory hold anything? (rmdir and rename over a directory ask.) */
export async function isEmptyDir(layers: Layers, xattrs: OverlayXattrs, inodes: InodeNumbers, node: Node): Promise<boolean> {
  return (await mergedListing(layers, xattrs, inodes, node)).length === 2;
}
