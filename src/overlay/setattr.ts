/** SETATTR: owner, mode, size and times, applied to the upper copy (made first if needed). */
import { Fattr } from '../fuse/abi';
import { FuseError } from '../fuse/errors';
import type { SetattrRequest } from '../fuse/requests';
import type { DescriptorFile } from '../layers/types';
import type { OverlayCore } from './core';
import { killSuidGid, withoutSuidGid } from './files';
import type { Node } from './nodes';
import { S_IFLNK, S_IFMT, S_IFREG, UTIME_NOW, UTIME_OMIT, type Timespec } from '../util/linux';

const CHANGES =
  Fattr.MODE | Fattr.UID | Fattr.GID | Fattr.SIZE | Fattr.ATIME | Fattr.MTIME | Fattr.ATIME_NOW | Fattr.MTIME_NOW | Fattr.CTIME | Fattr.KILL_SUIDGID;

function timeArg(valid: number, set: number, now: number, t: Timespec): Timespec {
  if (valid & now) return { sec: 0, nsec: UTIME_NOW };
  if (valid & set) return t;
  return { sec: 0, nsec: UTIME_OMIT };
}

/**
 * The upper object at the node's path is still of the node's kind. Calls by path never follow
 * a symlink, but one swapped in for the object would still get the change itself: the object
 * is gone instead, as for every other call (see src/layers/beneath.ts).
 */
async function checkSameKind(core: OverlayCore, node: Node): Promise<void> {
  const now = await core.upper.stat(node.path);
  if (!now || (now.mode & S_IFMT) !== node.type) throw new FuseError('ENOENT');
}

/** Applies a SETATTR; `fd` is an open upper file of the node when the kernel named one. */
export async function setattr(core: OverlayCore, node: Node, req: SetattrRequest, fd: DescriptorFile | undefined): Promise<void> {
  // Nothing to change: chown(f, -1, -1), which FUSE sends as it is; it still moves the ctime,
  // as on a local filesystem (and kernel overlayfs, which copies up for it too).
  const v = req.valid & CHANGES ? req.valid : req.valid | Fattr.UID | Fattr.GID;
  // Owners to set arrive as view ids; one without a mapping changes nothing (EOVERFLOW).
  const uid = req.valid & Fattr.UID ? core.opts.ids.uids.toLayer(req.newUid) : -1;
  const gid = req.valid & Fattr.GID ? core.opts.ids.gids.toLayer(req.newGid) : -1;
  if (uid === undefined || gid === undefined) throw new FuseError('EOVERFLOW');
  const upper = core.upper;
  await core.copyUp!.ensure(node, { truncate: (v & Fattr.SIZE) !== 0 && req.size === 0n && !node.isDir });
  if (node.unlinked && fd === undefined) throw new FuseError('ESTALE');
  const at = upper.loc(node.path);
  if (fd === undefined) await checkSameKind(core, node);
  if (v & (Fattr.UID | Fattr.GID)) {
    if (fd !== undefined) fd.chownSync(uid, gid);
    else await upper.chown(at, uid, gid);
  }
  if (v & Fattr.MODE && node.type !== S_IFLNK) {
    if (fd !== undefined) fd.chmodSync(req.mode & 0o7777);
    else await upper.chmod(at, req.mode & 0o7777);
  }
  if (v & Fattr.SIZE) {
    if (node.isDir) throw new FuseError('EISDIR');
    if (fd !== undefined) await fd.truncate(req.size);
    else await upper.truncate(at, req.size);
  }
  // A change of owner (chown(f, -1, -1) too, which is also how FUSE passes on fallocate's call
  // for set-user-ID and set-group-ID to go) clears them as a write does, by the caller's
  // rights: the daemon's own chown above judged set-group-ID by root's.
  if (v & (Fattr.KILL_SUIDGID | Fattr.UID | Fattr.GID) && !(v & Fattr.MODE) && node.type === S_IFREG) {
    if (fd !== undefined) await killSuidGid(core, req, fd);
    else {
      // By path, never by opening it: an open could block (a FIFO) or have side effects.
      const current = await upper.stat(node.path);
      const next = current ? withoutSuidGid(core, req, current.mode, current.gid) : undefined;
      if (next !== undefined) await upper.chmod(at, next);
    }
  }
  if (v & (Fattr.ATIME | Fattr.MTIME | Fattr.ATIME_NOW | Fattr.MTIME_NOW)) {
    const atime = timeArg(v, Fattr.ATIME, Fattr.ATIME_NOW, req.atime);
    const mtime = timeArg(v, Fattr.MTIME, Fattr.MTIME_NOW, req.mtime);
    if (fd !== undefined) await fd.utimens(atime, mtime);
    else await upper.utimens(at, atime, mtime);
  }
}
