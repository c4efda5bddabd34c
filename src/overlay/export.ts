/**
 * File handles (name_to_handle_at / open_by_handle_at, an NFS export of the mount): with
 * FUSE_EXPORT_SUPPORT the kernel encodes a handle as the node id and, once it no longer holds
 * that node, asks for it back by LOOKUP of "." in it; for a directory's parent, ".." in it.
 *
 * A node the daemon still has is answered as it is. One the kernel forgot is found again at
 * the path it had, if the object there is the one it showed (same identity), under its old id;
 * anything else (removed, replaced, renamed away since, or forgotten too long ago, see
 * FORGOTTEN_KEPT) answers ESTALE, as a stale handle must. Ids die with the mount: a handle
 * does not outlive it (the kernel's overlayfs needs index=on,nfs_export=on for that).
 */
import { FuseError } from '../fuse/errors';
import type { EntryOut } from '../fuse/replies';
import type { OverlayCore } from './core';
import type { Node } from './nodes';

async function entry(core: OverlayCore, node: Node): Promise<EntryOut> {
  if (node.unlinked) throw new FuseError('ESTALE');
  return core.entry(node, await core.attrOf(node));
}

/**
 * The node at `name` in `dir` (overlay path `path`), bound as a lookup would, under the id it had
 * if the kernel forgot it and the object there is still the one it showed.
 */
async function step(core: OverlayCore, dir: Node, name: string, path: string): Promise<Node> {
  const res = await core.resolve(dir, name);
  if (!res.positive) throw new FuseError('ESTALE');
  const old = dir.children.has(name) ? undefined : core.nodes.recallPath(path);
  const was = old === undefined ? undefined : core.nodes.recall(old);
  const shows = res.upper?.identity ?? res.lowers[0]?.attr.identity;
  if (old !== undefined && was?.identity === shows && !core.nodes.get(old)) return core.nodes.revive(old, () => core.bind(dir, name, res)).node;
  return core.bind(dir, name, res).node;
}

/** LOOKUP of "." in node `id`: that node. */
export async function lookupSelf(core: OverlayCore, id: number): Promise<EntryOut> {
  const known = core.nodes.get(id);
  if (known) return entry(core, known);
  const was = core.nodes.recall(id);
  if (!was || was.identity === undefined) throw new FuseError('ESTALE');
  const names = was.path.split('/');
  let node = core.nodes.root;
  for (const [i, name] of names.entries()) {
    if (!node.isDir) throw new FuseError('ESTALE');
    node = await step(core, node, name, names.slice(0, i + 1).join('/'));
  }
  // Found under another id (known by it meanwhile): the handle's id cannot be given back.
  if (node.id !== id) throw new FuseError('ESTALE');
  return entry(core, node);
}

/** LOOKUP of ".." in directory node `id`: its parent (the root's is itself). */
export async function lookupParent(core: OverlayCore, id: number): Promise<EntryOut> {
  const node = core.nodes.get(id);
  if (!node || node.unlinked) throw new FuseError('ESTALE');
  if (!node.isDir) throw new FuseError('ENOTDIR');
  return entry(core, node.parent ?? node);
}
