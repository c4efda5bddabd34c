/**
 * Looking a name up through the layers: the upper first, then each lower in order. Directories
 * merge; a non-directory hides everything below it; whiteouts and opaque directories stop the
 * search; redirects send it to where a renamed directory's lower parts live.
 */
import type { UpperDir } from '../layers/upper-dir';
import { baseName, childPath, parentPath, pathOf, type LayerAttr, type LayerPath, type ReadableLayer } from '../layers/types';
import { FuseError } from '../fuse/errors';
import { InvalidRedirect, isDirMode, parseOrigin, isOpaque, isWhiteout, readRedirect, whiteoutFile, type OverlayXattrs, type Redirect } from './format';
import type { LowerPart, Node } from './nodes';

export interface Layers {
  upper?: UpperDir;
  lowers: ReadableLayer[];
}

export interface FoundLower {
  layer: number;
  path: string;
  attr: LayerAttr;
}

/** Why a name is absent; only absences that depend on the upper alone may be cached. */
export type AbsenceReason = 'whiteout' | 'upper-only' | 'lower-miss';

export type Resolution =
  | { positive: false; reason: AbsenceReason }
  | {
      positive: true;
      /** The upper object, when there is one. */
      upper?: LayerAttr;
      /** Directories: the lower directories merged below; else the one lower object shown. */
      lowers: FoundLower[];
      /** The upper directory is opaque. */
      opaque: boolean;
      /** st_ino recorded at copy-up, for an upper object that came from a lower one. */
      origin?: number;
    };

/**
 * What a listing of the parent's directory in a lower layer, read just now, found of a name:
 * it stands in for looking the name up there (the same server answer, one call fewer).
 */
export interface Listed {
  layer: number;
  /** The directory listed: the parent's part in that layer. */
  dir: LayerPath;
  attr: LayerAttr;
}

const WHITEOUT: Resolution = { positive: false, reason: 'whiteout' };
const UPPER_ONLY: Resolution = { positive: false, reason: 'upper-only' };
const LOWER_MISS: Resolution = { positive: false, reason: 'lower-miss' };

export function absenceCacheable(reason: AbsenceReason): boolean {
  return reason !== 'lower-miss';
}

export function toLowerParts(found: FoundLower[]): LowerPart[] {
  return found.map((f) => ({ layer: f.layer, path: f.path, identity: f.attr.identity }));
}

async function readOrigin(upper: UpperDir, path: string, xattrs: OverlayXattrs): Promise<number | undefined> {
  return parseOrigin(await upper.getxattr(path, xattrs.origin));
}

/** Paths whose invalid redirect was reported already: one line each, not one per lookup. */
const reported = new Set<string>();
const MAX_REPORTED = 1000;

/**
 * A directory's redirect; a malformed one (hostile, or damaged) is never followed: the
 * directory answers EIO, and the first time one line on stderr names it.
 */
async function checkedRedirect(layer: ReadableLayer, at: LayerPath, xattrs: OverlayXattrs): Promise<Redirect | undefined> {
  const path = pathOf(at);
  try {
    return await readRedirect(layer, at, xattrs);
  } catch (err) {
    if (!(err instanceof InvalidRedirect)) throw err;
    const key = `${layer.label}\0${path}`;
    if (!reported.has(key) && reported.size < MAX_REPORTED) {
      reported.add(key);
      process.stderr.write(`ovshift: ${layer.label}: directory "${path}" has an ${err.message}; it answers EIO\n`);
    }
    throw new FuseError('EIO', err.message);
  }
}

/** Where the search looks in each lower layer, as redirects change it on the way down. */
class LowerSearch {
  private relativeName: string;
  private absolute: string | undefined;
  /** A redirect changed where the search looks. */
  redirected = false;

  constructor(
    private readonly parent: Node,
    name: string,
  ) {
    this.relativeName = name;
  }

  redirect(r: Redirect): void {
    this.redirected = true;
    if ('absolute' in r) this.absolute = r.absolute;
    else this.relativeName = r.name;
  }

  /** The directory to look in, in `layer`, and the name to look up there. */
  whereIn(layer: number): { dir: LayerPath; name: string } | undefined {
    if (this.absolute !== undefined) return { dir: parentPath(this.absolute), name: baseName(this.absolute) };
    const dir = this.parent.lowerDirIn(layer);
    return dir ? { dir, name: this.relativeName } : undefined;
  }

  /** Only an absolute redirect reaches layers where the parent has no directory. */
  get mayLeaveParent(): boolean {
    return this.absolute !== undefined;
  }
}

export async function resolveChild(layers: Layers, xattrs: OverlayXattrs, parent: Node, name: string, listed?: Listed): Promise<Resolution> {
  const upper = layers.upper;
  const path = parent.childPath(name);
  let upperAttr: LayerAttr | null = null;
  let opaque = false;
  const search = new LowerSearch(parent, name);

  if (upper && parent.inUpper) {
    upperAttr = await upper.stat(path);
    if (upperAttr === null) {
      if (await whiteoutFile(upper, parent.path, name)) return WHITEOUT;
    } else {
      if (isWhiteout(upperAttr)) return WHITEOUT;
      const origin = await readOrigin(upper, path, xattrs);
      if (!isDirMode(upperAttr.mode)) return { positive: true, upper: upperAttr, lowers: [], opaque: false, origin };
      opaque = await isOpaque(upper, path, xattrs);
      const redirect = opaque ? undefined : await checkedRedirect(upper, path, xattrs);
      if (redirect) search.redirect(redirect);
      if (opaque) return { positive: true, upper: upperAttr, lowers: [], opaque, origin };
      const found = await searchLowers(layers, xattrs, parent, search, true, listed);
      return { positive: true, upper: upperAttr, lowers: found.dirs, opaque, origin };
    }
  }
  if (parent.lowers.length === 0 || (parent.opaque && parent.inUpper)) return UPPER_ONLY;
  const found = await searchLowers(layers, xattrs, parent, search, false, listed);
  if (found.shown) return { positive: true, lowers: [found.shown], opaque: false };
  if (found.dirs.length > 0) return { positive: true, lowers: found.dirs, opaque: false };
  return LOWER_MISS;
}

async function searchLowers(
  layers: Layers,
  xattrs: OverlayXattrs,
  parent: Node,
  search: LowerSearch,
  haveUpperDir: boolean,
  listed?: Listed,
): Promise<{ dirs: FoundLower[]; shown?: FoundLower }> {
  const dirs: FoundLower[] = [];
  for (let i = 0; i < layers.lowers.length; i++) {
    if (!search.mayLeaveParent && !parent.lowerDirIn(i)) continue;
    const where = search.whereIn(i);
    if (where === undefined) continue;
    const layer = layers.lowers[i]!;
    // Whiteouts, opaque markers and redirects hide or find what is below: the bottom layer's
    // are never asked for.
    const bottom = i === layers.lowers.length - 1;
    const attr = listed?.layer === i && listed.dir === where.dir && !search.redirected ? listed.attr : await layer.lookup(where.dir, where.name);
    const p = childPath(pathOf(where.dir), where.name);
    if (attr === null) {
      if (!bottom && (await whiteoutFile(layer, where.dir, where.name))) break;
      continue;
    }
    if (isWhiteout(attr)) break;
    if (!isDirMode(attr.mode)) {
      // A non-directory is shown only when nothing above it is; below a directory it is hidden.
      if (!haveUpperDir && dirs.length === 0) return { dirs, shown: { layer: i, path: p, attr } };
      break;
    }
    dirs.push({ layer: i, path: p, attr });
    if (bottom) break;
    const found = { path: p, identity: attr.identity };
    if (await isOpaque(layer, found, xattrs)) break;
    const redirect = await checkedRedirect(layer, found, xattrs);
    if (redirect) search.redirect(redirect);
  }
  return { dirs };
}

/** Would a lower layer show something at `name` in `parent` (so removing it needs a whiteout)? */
export async function lowerShadows(layers: Layers, xattrs: OverlayXattrs, parent: Node, name: string): Promise<boolean> {
  if (parent.lowers.length === 0) return false;
  const found = await searchLowers(layers, xattrs, parent, new LowerSearch(parent, name), false);
  return found.shown !== undefined || found.dirs.length > 0;
}
