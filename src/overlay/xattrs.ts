/**
 * Extended attributes through the mount. The overlay's own (see OverlayXattrs) cannot be read,
 * set or removed through it: EOPNOTSUPP, as kernel overlayfs answers for its own xattrs.
 */
import { FuseError } from '../fuse/errors';
import { ACL_ACCESS_XATTR, ACL_DEFAULT_XATTR, CAP_XATTR, aclToLayer, aclToView, capToLayer, capToView, type IdShift } from '../idmap';
import type { LayerPath, ReadableLayer } from '../layers/types';
import type { OverlayCore } from './core';
import type { Node } from './nodes';
import { S_ISGID } from '../util/linux';

/** The layer object whose xattrs a node shows: its upper copy, else its top lower object. */
function holder(core: OverlayCore, node: Node): { layer: ReadableLayer; at: LayerPath } {
  if (node.unlinked) throw new FuseError('ESTALE');
  if (node.inUpper) return { layer: core.upper, at: node.path };
  const part = node.lowers[0];
  if (!part) throw new FuseError('ENOENT');
  return { layer: core.layers.lowers[part.layer]!, at: part };
}

/** An xattr value as the mount shows it: ids in ACLs and a capability's root id mapped to the view. */
function toView(ids: IdShift, name: string, value: Buffer): Buffer | null {
  if (name === ACL_ACCESS_XATTR || name === ACL_DEFAULT_XATTR) return aclToView(value, ids.uids, ids.gids);
  if (name === CAP_XATTR) return capToView(value, ids.uids);
  return value;
}

/** An xattr value as the layers store it; EOVERFLOW for ids the mapping does not cover. */
function toLayer(ids: IdShift, name: string, value: Buffer): Buffer {
  if (name === ACL_ACCESS_XATTR || name === ACL_DEFAULT_XATTR) return aclToLayer(value, ids.uids, ids.gids);
  if (name === CAP_XATTR) {
    const v = capToLayer(value, ids.uids);
    if (v === null) throw new FuseError('EOVERFLOW', "the capability's root id has no mapping");
    return v;
  }
  return value;
}

function refusePrivate(core: OverlayCore, name: string): void {
  if (core.opts.xattrs.isPrivate(name)) throw new FuseError('EOPNOTSUPP');
}

export async function getxattr(core: OverlayCore, node: Node, name: string): Promise<Buffer> {
  refusePrivate(core, name);
  const held = core.openUpperFile(node);
  let v: Buffer | null;
  if (held) {
    v = held.file.getxattrSync(name);
  } else {
    const { layer, at } = holder(core, node);
    v = await layer.getxattr(at, name);
  }
  const shown = v === null ? null : toView(core.opts.ids, name, v);
  // A capability whose root has no mapping here is not shown at all (never the wrong root).
  if (shown === null) throw new FuseError('ENODATA');
  return shown;
}

export async function listxattr(core: OverlayCore, node: Node): Promise<Buffer> {
  const { layer, at } = holder(core, node);
  const names = (await layer.listxattr(at)).filter((n) => !core.opts.xattrs.isPrivate(n));
  return Buffer.from(names.map((n) => `${n}\0`).join(''), 'latin1');
}

/**
 * `killSgid`: the kernel asks that setting an access ACL also clear set-group-ID (the caller is
 * not in the file's group): the daemon sets it with privilege, which keeps the bit.
 */
export async function setxattr(core: OverlayCore, node: Node, name: string, value: Buffer, flags: number, killSgid = false): Promise<void> {
  refusePrivate(core, name);
  const stored = toLayer(core.opts.ids, name, value);
  await core.copyUp!.ensure(node);
  const at = core.upper.loc(node.path);
  await core.upper.setxattr(at, name, stored, flags);
  if (killSgid && name === ACL_ACCESS_XATTR) {
    const mode = (await core.upper.stat(node.path))?.mode;
    if (mode !== undefined && mode & S_ISGID) await core.upper.chmod(at, mode & 0o7777 & ~S_ISGID);
  }
}

export async function removexattr(core: OverlayCore, node: Node, name: string): Promise<void> {
  refusePrivate(core, name);
  if (!node.inUpper) {
    // Removing what is not there must not cost a copy-up.
    await getxattr(core, node, name);
  }
  await core.copyUp!.ensure(node);
  await core.upper.removexattr(core.upper.loc(node.path), name);
}
