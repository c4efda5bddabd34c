/**
 * The on-disk overlay format, shared with kernel overlayfs: 0/0 character-device whiteouts,
 * opaque directories and redirects in trusted.overlay.* (or user.overlay.* when not root), and
 * the `.wh.` files fuse-overlayfs falls back to where a layer cannot hold device nodes.
 */
import type { LayerAttr, LayerPath, ReadableLayer } from '../layers/types';
import { NAME_MAX, S_IFCHR, S_IFMT } from '../util/linux';

export const WHITEOUT_PREFIX = '.wh.';
export const OPAQUE_MARKER = '.wh..wh..opq';
export const TRUSTED_PREFIX = 'trusted.overlay.';
export const USER_PREFIX = 'user.overlay.';

/**
 * Names of the overlay's own xattrs, in the one namespace that is overlay metadata on this
 * mount: trusted.overlay.* on a mount by root in the initial user namespace, user.overlay.*
 * only where trusted.* cannot be used (as kernel overlayfs's `userxattr`). On a root mount
 * user.overlay.* is plain user data: any user may set it on their own files, so it decides
 * nothing there.
 */
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

  /** Overlay metadata: never shown, set or removed through the mount, never copied up. */
  isPrivate(name: string): boolean {
    return name.startsWith(this.prefix);
  }
}

export function isWhiteout(attr: LayerAttr): boolean {
  return (attr.mode & S_IFMT) === S_IFCHR && attr.rdevMajor === 0 && attr.rdevMinor === 0;
}

/** Directory entries that are overlay bookkeeping, not files. */
export function isPrivateName(name: string): boolean {
  return name.startsWith(WHITEOUT_PREFIX);
}

/** Does the layer mark `name` in `dir` as deleted (a 0/0 device, or a `.wh.` file)? */
export async function whiteoutFile(layer: ReadableLayer, dir: LayerPath, name: string): Promise<boolean> {
  // Names too long to carry the prefix cannot have such a whiteout.
  if (Buffer.byteLength(name, 'latin1') + WHITEOUT_PREFIX.length > NAME_MAX) return false;
  return (await layer.lookup(dir, WHITEOUT_PREFIX + name)) !== null;
}

/** Is the directory at `path` opaque in `layer` (lower layers are not merged below it)? */
export async function isOpaque(layer: ReadableLayer, at: LayerPath, xattrs: OverlayXattrs): Promise<boolean> {
  // As kernel overlayfs: "y" is opaque, anything else is not.
  const v = await layer.getxattr(at, xattrs.opaque);
  if (v !== null && v.length === 1 && v[0] === 0x79 /* 'y' */) return true;
  return (await layer.lookup(at, OPAQUE_MARKER)) !== null;
}

/**
 * The redirect of a renamed directory: where its lower parts live. Kernel overlayfs stores an
 * absolute path from the layer roots ("/a/b"), or a bare name for a rename within one parent
 * (then looked up in each of the parent's lower directories).
 */
export type Redirect = { absolute: string } | { name: string };

/** A redirect that is neither of the two forms: the directory answers EIO rather than guess. */
export class InvalidRedirect extends Error {
  constructor(readonly value: string) {
    super(`invalid redirect ${JSON.stringify(value)}`);
  }
}

export function isPlainName(name: string): boolean {
  return name !== '' && name !== '.' && name !== '..' && !name.includes('/') && !name.includes('\0') && Buffer.byteLength(name, 'latin1') <= NAME_MAX;
}

/**
 * Checks a redirect as kernel overlayfs does, and more strictly: an absolute one has no empty,
 * "." or ".." component (so it stays below the layer roots), a relative one is a single name.
 */
export function parseRedirect(value: Buffer): Redirect {
  const target = value.toString('latin1');
  if (target.startsWith('/')) {
    const parts = target.slice(1).split('/');
    if (!parts.every(isPlainName)) throw new InvalidRedirect(target);
    return { absolute: parts.join('/') };
  }
  if (!isPlainName(target)) throw new InvalidRedirect(target);
  return { name: target };
}

/** The directory's redirect, if any; InvalidRedirect if it has one that is malformed. */
export async function readRedirect(layer: ReadableLayer, at: LayerPath, xattrs: OverlayXattrs): Promise<Redirect | undefined> {
  const v = await layer.getxattr(at, xattrs.redirect);
  return v === null ? undefined : parseRedirect(v);
}

/** The inode number an origin xattr records (a positive integer), if it holds one. */
export function parseOrigin(value: Buffer | null): number | undefined {
  const n = value === null ? NaN : Number(value.toString('latin1'));
  return Number.isSafeInteger(n) && n > 0 ? n : undefined;
}

export function isDirMode(mode: number): boolean {
  return (mode & S_IFMT) === 0o040000;
}
