/**
 * The on-disk overlay format, shared with kernel overlayfs: 0/0 character-device whiteouts,
 * opaque directories and redirects in trusted.overlay.* (or user.overlay.* when not root), and
 * the `.wh.` files fuse-overlayfs falls back to where a layer cannot hold device nodes.
 */
import type { LayerAttr, ReadableLayer } from '../layers/types';
import { childPath } from '../layers/types';

const S_IFMT = 0o170000;
const S_IFCHR = 0o020000;

export const WHITEOUT_PREFIX = '.wh.';
const NAME_MAX = 255;
export const OPAQUE_MARKER = '.wh..wh..opq';
export const TRUSTED_PREFIX = 'trusted.overlay.';
export const USER_PREFIX = 'user.overlay.';

/** Names of the overlay's own xattrs, in the namespace this mount writes. */
export class OverlayXattrs {
  readonly opaque: string;
  readonly redirect: string;
  /** Where a copied-up object came from, to keep its inode number (ovshift's own). */
  readonly origin: string;

  constructor(readonly prefix: typeof TRUSTED_PREFIX | typeof USER_PREFIX) {
    this.opaque = `${prefix}opaque`;
    this.redirect = `${prefix}redirect`;
    this.origin = `${prefix}ovshift.origin`;
  }
}

export function isWhiteout(attr: LayerAttr): boolean {
  return (attr.mode & S_IFMT) === S_IFCHR && attr.rdevMajor === 0 && attr.rdevMinor === 0;
}

/** xattrs that describe the overlay itself and are never shown through the mount. */
export function isPrivateXattr(name: string): boolean {
  return name.startsWith(TRUSTED_PREFIX) || name.startsWith(USER_PREFIX);
}

/** Directory entries that are overlay bookkeeping, not files. */
export function isPrivateName(name: string): boolean {
  return name.startsWith(WHITEOUT_PREFIX);
}

/** Does the layer mark `name` in `dir` as deleted (a 0/0 device, or a `.wh.` file)? */
export async function whiteoutFile(layer: ReadableLayer, dir: string, name: string): Promise<boolean> {
  // Names too long to carry the prefix cannot have such a whiteout.
  if (Buffer.byteLength(name, 'latin1') + WHITEOUT_PREFIX.length > NAME_MAX) return false;
  return (await layer.stat(childPath(dir, WHITEOUT_PREFIX + name))) !== null;
}

/** Is the directory at `path` opaque in `layer` (lower layers are not merged below it)? */
export async function isOpaque(layer: ReadableLayer, path: string): Promise<boolean> {
  for (const name of [`${TRUSTED_PREFIX}opaque`, `${USER_PREFIX}opaque`]) {
    const v = await layer.getxattr(path, name);
    if (v !== null && v.length === 1 && v[0] === 0x79 /* 'y' */) return true;
  }
  return (await layer.stat(childPath(path, OPAQUE_MARKER))) !== null;
}

/**
 * The redirect of a renamed directory: where its lower parts live. Kernel overlayfs stores an
 * absolute path from the layer roots ("/a/b"), or a bare name for a rename within one parent
 * (then looked up in each of the parent's lower directories).
 */
export type Redirect = { absolute: string } | { name: string };

export async function readRedirect(layer: ReadableLayer, path: string): Promise<Redirect | undefined> {
  for (const name of [`${TRUSTED_PREFIX}redirect`, `${USER_PREFIX}redirect`]) {
    const v = await layer.getxattr(path, name);
    if (v === null || v.length === 0) continue;
    const target = v.toString('latin1');
    if (target.startsWith('/')) return { absolute: target.replace(/^\/+/, '').replace(/\/+$/, '') };
    return { name: target };
  }
  return undefined;
}

export function isDirMode(mode: number): boolean {
  return (mode & S_IFMT) === 0o040000;
}
