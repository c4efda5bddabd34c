/**
 * Merged directory listings: the upper's entries, then each lower directory's entries not
 * already listed and not whited out above; overlay bookkeeping names never appear.
 */
import { DirentPlusList } from '../fuse/replies';
import type { LayerDirent, LayerPath, ReadableLayer } from '../layers/types';
import { baseName, childPath } from '../layers/types';
import { Interrupted, forEachOrdered, mapBounded, type Interruptible } from '../util/concurrency';
import type { OverlayCore } from './core';
import { OPAQUE_MARKER, WHITEOUT_PREFIX, isWhiteout, parseOrigin, type OverlayXattrs } from './format';
import type { ListedEntry } from './handles';
import type { InodeNumbers } from './inodes';
import type { Node } from './nodes';
import type { Layers, Resolution } from './resolve';
import { DT_CHR, DT_DIR } from '../util/linux';

/**
 * Layer calls one listing keeps in flight at most: a slow lower (an NFS server, an injected
 * delay) costs about one round trip per this many entries instead of one per entry.
 */
const CHECKS_IN_FLIGHT = 32;

interface LayerListing {
  layer: ReadableLayer;
  /** The directory listed. */
  dir: LayerPath;
  path: string;
  dev: number;
  /** Whether st_ino of regular files may come from an origin xattr (upper only). */
  upper: boolean;
  /** The lower layer's number; none for the upper. */
  lower?: number;
}

/**
 * What an entry's check found: for an upper entry its origin xattr (a Buffer, or null); for a
 * character device in a lower, WHITED_OUT or nothing.
 */
type Checked = Buffer | null | typeof WHITED_OUT | undefined;
const WHITED_OUT = 'whiteout';

/** A layer directory as read: its entries, each with what its check found (if it needed one). */
interface ReadLayer {
  src: LayerListing;
  dirents: LayerDirent[];
  checked: Checked[];
}

/**
 * Whether an entry needs a call of its own: a character device may be a whiteout, and an
 * upper entry may carry the inode number of the lower file it was copied up from.
 */
function needsCheck(src: LayerListing, e: LayerDirent): boolean {
  if (e.name === OPAQUE_MARKER || e.name.startsWith(WHITEOUT_PREFIX)) return false;
  return e.type === DT_CHR || src.upper;
}

/** The layer's own promise where one call does (no wrapper per entry on the common path). */
function checkEntry(src: LayerListing, e: LayerDirent, xattrs: OverlayXattrs): Promise<Checked> {
  const path = childPath(src.path, e.name);
  if (e.type !== DT_CHR) return src.layer.getxattr(path, xattrs.origin);
  return checkDevice(src, path, xattrs);
}

async function checkDevice(src: LayerListing, path: string, xattrs: OverlayXattrs): Promise<Checked> {
  const attr = await src.layer.lookup(src.dir, baseName(path));
  if (attr && isWhiteout(attr)) return WHITED_OUT;
  return src.upper ? src.layer.getxattr(path, xattrs.origin) : undefined;
}

/** The layer directories a listing merges, topmost first; lower ones checked concurrently. */
async function listingSources(layers: Layers, node: Node, stop?: Interruptible): Promise<LayerListing[]> {
  const sources: Array<LayerListing | null> = [];
  if (node.inUpper && layers.upper) {
    const dir = await layers.upper.stat(node.path);
    if (dir) sources.push({ layer: layers.upper, dir: node.path, path: node.path, dev: dir.dev, upper: true });
  }
  if (!(node.inUpper && node.opaque)) {
    sources.push(
      ...(await mapBounded(
        node.lowers,
        CHECKS_IN_FLIGHT,
        async (part): Promise<LayerListing | null> => {
          const layer = layers.lowers[part.layer]!;
          const dir = await layer.stat(part);
          // A lower directory that vanished or changed since lookup is left out, not an error.
          return dir && dir.identity === part.identity ? { layer, dir: part, path: part.path, dev: dir.dev, upper: false, lower: part.layer } : null;
        },
        stop,
      )),
    );
  }
  return sources.filter((s): s is LayerListing => s !== null);
}

/** Reads every source, then checks the entries that need it, one source after another. */
async function readSources(sources: LayerListing[], xattrs: OverlayXattrs, stop?: Interruptible): Promise<ReadLayer[]> {
  const read = await mapBounded(
    sources,
    CHECKS_IN_FLIGHT,
    async (src): Promise<ReadLayer> => ({ src, dirents: await src.layer.readdir(src.dir), checked: [] }),
    stop,
  );
  for (const r of read) {
    const which = r.dirents.filter((e) => needsCheck(r.src, e));
    if (which.length === 0) continue;
    const found = await mapBounded(which, CHECKS_IN_FLIGHT, (e) => checkEntry(r.src, e, xattrs), stop);
    let k = 0;
    r.checked = r.dirents.map((e) => (e === which[k] ? found[k++] : undefined));
  }
  return read;
}

export async function mergedListing(layers: Layers, xattrs: OverlayXattrs, inodes: InodeNumbers, node: Node, stop?: Interruptible): Promise<ListedEntry[]> {
  const read = await readSources(await listingSources(layers, node, stop), xattrs, stop);
  const out: ListedEntry[] = [
    { name: '.', type: DT_DIR, ino: node.ino },
    { name: '..', type: DT_DIR, ino: node.parent?.ino ?? node.ino },
  ];
  const taken = new Set<string>();
  for (const { src, dirents, checked } of read) {
    const whiteouts: string[] = [];
    dirents.forEach((e, i) => {
      if (e.name === OPAQUE_MARKER) return;
      if (e.name.startsWith(WHITEOUT_PREFIX)) return void whiteouts.push(e.name.slice(WHITEOUT_PREFIX.length));
      const c = checked[i];
      if (c === WHITED_OUT) return void whiteouts.push(e.name);
      if (taken.has(e.name)) return;
      taken.add(e.name);
      const listed = src.lower !== undefined && e.attr ? { layer: src.lower, dir: src.dir, attr: e.attr } : undefined;
      out.push({ name: e.name, type: e.type, ino: (c instanceof Buffer ? parseOrigin(c) : undefined) ?? inodes.map(src.dev, e.ino), listed });
    });
    for (const w of whiteouts) taken.add(w);
  }
  return out;
}

/**
 * Fills a READDIRPLUS reply from entries[offset…]: each entry is looked up through the layers
 * as LOOKUP would, several at a time, and bound and added in order while the reply has room.
 * Nothing is looked up that the reply cannot hold. With `listedNow` (the listing was read by
 * this very request), what a lower's listing said of an entry stands in for its lookup in that
 * layer. Interrupted, the request gets the entries already added, or EINTR when there are none
 * (no lookup reference was counted then).
 */
/** An entry whose lookup failed: listed by name, its lookup answers the error on access. */
const UNRESOLVED = Symbol('unresolved');

export async function fillDirentPlus(
  core: OverlayCore,
  dir: Node,
  entries: readonly ListedEntry[],
  offset: number,
  out: DirentPlusList,
  listedNow: boolean,
  since: number | undefined,
  stop?: Interruptible,
): Promise<void> {
  const names: Buffer[] = [];
  let reserved = 0;
  try {
    await forEachOrdered<ListedEntry, Resolution | null | typeof UNRESOLVED>(entries, offset, {
      limit: CHECKS_IN_FLIGHT,
      stop,
      admit: (e, i) => {
        const length = DirentPlusList.recordLength((names[i - offset] = Buffer.from(e.name, 'latin1')));
        if (reserved + length > out.room) return false;
        reserved += length;
        return true;
      },
      run: (e) => (e.name === '.' || e.name === '..' ? null : core.resolve(dir, e.name, listedNow ? e.listed : undefined).catch(() => UNRESOLVED)),
      take: (res, e, i) => {
        const name = names[i - offset]!;
        reserved -= DirentPlusList.recordLength(name);
        if (res === null || res === UNRESOLVED) {
          // No node: the kernel takes no reference and lists the name alone, but keeps d_ino
          // (readdir(3) skips entries whose inode number is 0). So for "." and "..", and for an
          // entry whose lookup fails (a directory with a malformed redirect answers EIO to its
          // own lookup, not to its parent's listing, as with kernel overlayfs).
          const bare = core.negative(false);
          out.add(name, { ...bare, attr: { ...bare.attr, ino: e.ino } }, e.type, i + 1);
        } else if (res.positive) {
          const { node, attr } = core.bind(dir, e.name, res);
          out.add(name, core.entryOf(node, attr, since), e.type, i + 1);
        } // else: gone since the listing was read
      },
    });
  } catch (err) {
    if (err instanceof Interrupted && !out.empty) return;
    throw err;
  }
}

/** Does the merged directory hold anything? (rmdir and rename over a directory ask.) */
export async function isEmptyDir(layers: Layers, xattrs: OverlayXattrs, inodes: InodeNumbers, node: Node): Promise<boolean> {
  return (await mergedListing(layers, xattrs, inodes, node)).length === 2;
}
