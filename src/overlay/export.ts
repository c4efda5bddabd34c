/**
 * File handles (name_to_handle_at / open_by_handle_at, an NFS export of the mount): with
 * FUSE_EXPORT_SUPPORT the kernel encodes a handle as the node id and, once it no longer holds
 * that node, asks for it back by LOOKUP of "." in it; for a directory's parent, ".." in it.
 *
 * A node the daemon still has is answered as it is. One the kernel forgot is found again at
 * the path it had (its name in its parent, wherever the parent is now), if the object there is
 * the one it showed (same identity), under its old id; anything else (removed, replaced,
 * renamed away since, or forgotten too long ago, see FORGOTTEN_KEPT) answers ESTALE, as a
 * stale handle must. Ids go with the mount's generation: a handle of an earlier mount is stale,
 * unless nfs_export=on kept the ids from one mount to the next (see handle-table.ts).
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
 * LOOKUP of "." in node `id`: that node. One the kernel forgot is looked for where it was, and
 * then at the other names its file was seen to have (a hard link's, see LinkNames); found, it
 * takes its id back (see NodeTable.create).
 */
export async function lookupSelf(core: OverlayCore, id: number): Promise<EntryOut> {
  const known = core.nodes.get(id);
  if (known) return entry(core, known);
  const was = core.nodes.recall(id);
  const path = core.nodes.pathOf(id);
  if (!was || path === undefined) throw new FuseError('ESTALE');
  for (const at of [path, ...core.nodes.linkNames.namesOf(was.identity, path)]) {
    const node = await core.nodeAt(at).catch(() => undefined);
    if (node?.id === id) return entry(core, node);
  }
  throw new FuseError('ESTALE');
}

/** LOOKUP of ".." in directory node `id`: its parent (the root's is itself). */
export async function lookupParent(core: OverlayCore, id: number): Promise<EntryOut> {
  const node = core.nodes.get(id);
  if (!node || node.unlinked) throw new FuseError('ESTALE');
  if (!node.isDir) throw new FuseError('ENOTDIR');
  return entry(core, node.parent ?? node);
}
