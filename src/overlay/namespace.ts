/**
 * Operations on names: creating objects, hard links, removal and rename, in the upper, with
 * whiteouts, opaque directories and redirects where lower objects are involved.
 */
import createDebug from 'debug';
import { FuseError } from '../fuse/errors';
import type { DescriptorFile, Loc } from '../layers/types';
import type { LayerAttr } from '../layers/types';
import { errorCode } from '../util/errno';
import { OverlayCore } from './core';
import { isDirMode } from './format';
import { isEmptyDir } from './listing';
import { Node } from './nodes';
import { lowerShadows } from './resolve';
import { clearWhiteoutFile, makeWhiteout, removeLeavingWhiteout, removeUpper, replaceWhiteout, setOpaque } from './whiteouts';
import { O_TMPFILE, RENAME_EXCHANGE, RENAME_NOREPLACE, RENAME_WHITEOUT, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, S_ISGID, S_ISUID } from '../util/linux';
import { constants as K } from 'fs';
import { ACL_DEFAULT_XATTR } from '../idmap/acl-xattr';
import { inheritAcls } from './acl-inherit';
import { isProtected } from './fileattr';

const log = createDebug('ovshift:overlay');

export interface NewObject {
  /** File type and permission bits as asked for. */
  mode: number;
  /** The caller's umask, where the kernel left applying it to the filesystem (else 0). */
  umask: number;
  uid: number;
  gid: number;
  /**
   * Makes the object at `at` (the final place, or a temp in the work dir) with `mode`; a file
   * it opens as it makes it (create) is returned, and ownership and attributes are then taken
   * through it.
   */
  make(at: Loc, mode: number): Promise<DescriptorFile | void>;
}

/**
 * The mode to create an object with, and the directory's default ACL where it matters: the
 * default ACL takes the place of the umask (as on any filesystem with ACLs), and is inherited
 * from here where the object is built in the work directory (`elsewhere`).
 */
async function creationMode(
  core: OverlayCore,
  parent: Node,
  obj: Omit<NewObject, 'make'>,
  elsewhere: boolean,
): Promise<{ mode: number; defaultAcl: Buffer | null }> {
  const wantsDefault = (obj.umask !== 0 || elsewhere) && (obj.mode & S_IFMT) !== S_IFLNK;
  const defaultAcl = wantsDefault ? await core.upper.getxattr(parent.path, ACL_DEFAULT_XATTR) : null;
  return { mode: defaultAcl ? obj.mode : obj.mode & ~obj.umask, defaultAcl };
}

/**
 * An unnamed regular file in `parent` (O_TMPFILE), open for `access`: a node no name reaches,
 * pinned by a descriptor of its own, which a later link (linkat of the open file) names unless
 * `linkable` is false (O_EXCL).
 */
export async function createTmpfile(
  core: OverlayCore,
  parent: Node,
  obj: Omit<NewObject, 'make'>,
  access: number,
  linkable: boolean,
): Promise<{ node: Node; attr: LayerAttr; file: DescriptorFile }> {
  const upper = core.upper;
  await core.copyUp!.ensure(parent);
  const parentAttr = await upper.stat(parent.path);
  if (!parentAttr) throw new FuseError('ENOENT');
  // In the directory itself: the upper filesystem applies ACL inheritance.
  const { mode } = await creationMode(core, parent, obj, false);
  const file = await upper.openFile(upper.loc(parent.path), O_TMPFILE | access, mode & 0o7777);
  try {
    file.chownSync(obj.uid, parentAttr.mode & S_ISGID ? parentAttr.gid : obj.gid);
    let attr = file.statNow();
    const lost = attr ? setIdBitsLost(mode, attr.mode) : 0;
    if (attr && lost) {
      file.chmodSync((attr.mode & 0o7777) | lost);
      attr = file.statNow();
    }
    if (!attr) throw new FuseError('EIO', 'an O_TMPFILE file could not be stat()ed');
    const node = core.nodes.create(parent, TMPFILE_NAME, S_IFREG, attr.identity, [], core.inodes.map(attr.dev, attr.ino));
    core.nodes.unbindName(node, parent, TMPFILE_NAME);
    node.pin = await upper.reopen(file, K.O_RDONLY);
    node.linkable = linkable;
    return { node, attr, file };
  } catch (err) {
    file.closeSync();
    throw err;
  }
}

/** The name a tmpfile node is made under and at once unbound from: no real name holds a '/'. */
const TMPFILE_NAME = 'O_TMPFILE/';

/**
 * Creates an object named `name` in `parent`, owned by the caller (or the directory's group
 * where it is set-group-ID). Where the name is whited out, the object is built in the work
 * dir and swapped in; a directory made there is opaque, so the lower one stays hidden.
 */
export async function createObject(core: OverlayCore, parent: Node, name: string, obj: NewObject): Promise<{ node: Node; attr: LayerAttr }> {
  const upper = core.upper;
  const res = await core.resolve(parent, name);
  if (res.positive) throw new FuseError('EEXIST');
  await core.copyUp!.ensure(parent);
  const parentAttr = await upper.stat(parent.path);
  if (!parentAttr) throw new FuseError('ENOENT');
  const path = parent.childPath(name);
  const isDir = (obj.mode & S_IFMT) === S_IFDIR;
  const inheritGroup = (parentAttr.mode & S_ISGID) !== 0;
  const gid = inheritGroup ? parentAttr.gid : obj.gid;
  const overWhiteout = res.reason === 'whiteout';
  const { mode, defaultAcl } = await creationMode(core, parent, obj, overWhiteout);
  // The new file's descriptor, where make opened one on a local upper: owner and attributes go
  // through it, with no walk to its parent again.
  let made: DescriptorFile | undefined;
  if (!overWhiteout) {
    // In place: the upper filesystem applies set-group-ID and ACL inheritance itself.
    made = (await obj.make(upper.loc(path), mode)) ?? undefined;
    if (!upper.sync) made = undefined;
    if (made) made.chownSync(obj.uid, gid);
    else await upper.chown(upper.loc(path), obj.uid, gid);
  } else {
    const temp = upper.temp();
    try {
      await obj.make(temp, mode);
      await upper.chown(temp, obj.uid, gid);
      const made = defaultAcl ? await inheritAcls(upper, temp, defaultAcl, mode, isDir) : mode;
      if (isDir) {
        if (inheritGroup) await upper.chmod(temp, (made & 0o7777) | S_ISGID);
        await setOpaque(upper, temp, core.opts.xattrs);
      }
      await replaceWhiteout(upper, temp, path, isDir);
    } catch (err) {
      await upper.removeTemp(temp).catch(() => undefined);
      throw err;
    }
  }
  let attr = made ? made.statNow() : await upper.stat(path);
  if (!attr) throw new FuseError('ENOENT');
  const lost = setIdBitsLost(mode, attr.mode);
  if (lost) {
    await upper.chmod(upper.loc(path), (attr.mode & 0o7777) | lost);
    attr = await upper.stat(path);
    if (!attr) throw new FuseError('ENOENT');
  }
  core.forgetAbsence(parent, name);
  return core.bind(parent, name, { positive: true, upper: attr, lowers: [], opaque: isDir && overWhiteout });
}

/**
 * The set-user-ID and set-group-ID bits an object was made with (`made`, as the kernel let the
 * caller have them) that it no longer has (`now`): giving it to its owner (chown) clears them
 * from anything but a directory, even for root, and they must be set again after.
 */
function setIdBitsLost(made: number, now: number): number {
  if ((now & S_IFMT) === S_IFDIR || (now & S_IFMT) === S_IFLNK) return 0;
  return made & (S_ISUID | S_ISGID) & ~now;
}

export async function link(core: OverlayCore, node: Node, parent: Node, name: string): Promise<{ node: Node; attr: LayerAttr }> {
  if (node.isDir) throw new FuseError('EPERM');
  if (node.unlinked) {
    if (node.linkable && node.pin) return linkTmpfile(core, node, node.pin, parent, name);
    throw new FuseError('ENOENT');
  }
  const upper = core.upper;
  const res = await core.resolve(parent, name);
  if (res.positive) throw new FuseError('EEXIST');
  await core.copyUp!.ensure(node);
  await core.copyUp!.ensure(parent);
  const path = parent.childPath(name);
  if (res.reason === 'whiteout') {
    const temp = upper.temp();
    await upper.link(upper.loc(node.path), temp);
    await replaceWhiteout(upper, temp, path, false);
  } else {
    await upper.link(upper.loc(node.path), upper.loc(path));
  }
  core.nodes.bind(parent, name, node);
  core.forgetAbsence(parent, name);
  const attr = await upper.stat(path);
  if (!attr) throw new FuseError('ENOENT');
  return { node, attr };
}

/** Names an O_TMPFILE file (see createTmpfile) for the first time. */
async function linkTmpfile(core: OverlayCore, node: Node, pin: DescriptorFile, parent: Node, name: string): Promise<{ node: Node; attr: LayerAttr }> {
  const upper = core.upper;
  const res = await core.resolve(parent, name);
  if (res.positive) throw new FuseError('EEXIST');
  await core.copyUp!.ensure(parent);
  const path = parent.childPath(name);
  if (res.reason === 'whiteout') {
    const temp = upper.temp();
    await upper.linkFile(pin, temp);
    await replaceWhiteout(upper, temp, path, false);
  } else {
    await upper.linkFile(pin, upper.loc(path));
  }
  const attr = await upper.stat(path);
  if (!attr || attr.identity !== node.upperIdentity) throw new FuseError('ENOENT');
  node.unlinked = false;
  node.linkable = false;
  core.nodes.bind(parent, name, node);
  core.nodes.setUpper(node, attr.identity);
  core.forgetAbsence(parent, name);
  return { node, attr };
}

export async function unlink(core: OverlayCore, parent: Node, name: string): Promise<void> {
  const { node } = await core.existing(parent, name);
  if (node.isDir) throw new FuseError('EISDIR');
  await remove(core, parent, name, node);
}

export async function rmdir(core: OverlayCore, parent: Node, name: string): Promise<void> {
  const { node } = await core.existing(parent, name);
  if (!node.isDir) throw new FuseError('ENOTDIR');
  if (node === core.nodes.root) throw new FuseError('EBUSY');
  // Checked before emptiness, as Linux does: an immutable or append-only directory keeps its
  // entries, and one that is itself so cannot go (the kernel cannot tell: FUSE shows no flags).
  if ((await isProtected(core, parent)) || (await isProtected(core, node))) throw new FuseError('EPERM');
  if (!(await isEmptyDir(core.layers, core.opts.xattrs, core.inodes, node))) throw new FuseError('ENOTEMPTY');
  await remove(core, parent, name, node);
}

async function remove(core: OverlayCore, parent: Node, name: string, node: Node): Promise<void> {
  const upper = core.upper;
  const path = parent.childPath(name);
  await bindAnotherName(core, node, path);
  if (!node.links?.length) await core.pin(node);
  if (node.inUpper) {
    const shadowed = await lowerShadows(core.layers, core.opts.xattrs, parent, name);
    if (shadowed) await removeLeavingWhiteout(upper, path);
    else await removeUpper(upper, path, node.isDir);
  } else {
    await core.copyUp!.ensure(parent);
    await makeWhiteout(upper, path);
  }
  core.nodes.unbindName(node, parent, name);
}

/**
 * Before `path`, the name the kernel knows upper file `node` by, is removed: binds the node to
 * another name the file is known to have (see LinkNames), so that it, and the file handles of
 * it, go on naming the file rather than turn unlinked while the file still has a name.
 */
async function bindAnotherName(core: OverlayCore, node: Node, path: string): Promise<void> {
  if (node.isDir || node.upperIdentity === undefined || node.links?.length) return;
  for (const other of core.nodes.linkNames.namesOf(node.upperIdentity, path)) {
    if ((await core.nodeAt(other).catch(() => undefined)) === node) return;
  }
}

export interface RenameArgs {
  from: Node;
  oldName: string;
  to: Node;
  newName: string;
  flags: number;
}

export async function rename(core: OverlayCore, a: RenameArgs): Promise<void> {
  if (a.flags & RENAME_WHITEOUT || a.flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE | RENAME_WHITEOUT)) throw new FuseError('EINVAL');
  const exchange = (a.flags & RENAME_EXCHANGE) !== 0;
  const src = await core.existing(a.from, a.oldName);
  const dstRes = await core.resolve(a.to, a.newName);
  const dst = dstRes.positive ? core.bind(a.to, a.newName, dstRes) : undefined;
  if (dst && dst.node === src.node) return; // two names of one file: nothing to do (POSIX)
  if (a.flags & RENAME_NOREPLACE && dst) throw new FuseError('EEXIST');
  if (exchange && !dst) throw new FuseError('ENOENT');
  if (dst && !exchange) {
    if (src.node.isDir && !dst.node.isDir) throw new FuseError('ENOTDIR');
    if (!src.node.isDir && dst.node.isDir) throw new FuseError('EISDIR');
    if (dst.node.isDir && !(await isEmptyDir(core.layers, core.opts.xattrs, core.inodes, dst.node))) throw new FuseError('ENOTEMPTY');
  }
  const moving = exchange ? [src.node, dst!.node] : [src.node];
  for (const n of moving) {
    if (n.isDir && n.lowers.length > 0 && !core.opts.redirectDir) throw new FuseError('EXDEV');
  }

  const copyUp = core.copyUp!;
  const upper = core.upper;
  await copyUp.ensure(a.from);
  await copyUp.ensure(a.to);
  for (const n of moving) await copyUp.ensure(n);
  for (const n of moving) if (n.isDir && n.lowers.length > 0) await setRedirect(core, n);

  const oldPath = a.from.childPath(a.oldName);
  const newPath = a.to.childPath(a.newName);
  const oldShadowed = await lowerShadows(core.layers, core.opts.xattrs, a.from, a.oldName);
  const newShadowed = await lowerShadows(core.layers, core.opts.xattrs, a.to, a.newName);

  if (exchange) {
    await upper.rename(upper.loc(oldPath), upper.loc(newPath), RENAME_EXCHANGE);
    await makeOpaqueIfCovering(core, dst!.node, oldPath, oldShadowed);
    await makeOpaqueIfCovering(core, src.node, newPath, newShadowed);
    swapNames(a, src.node, dst!.node);
    return;
  }

  if (dst) await bindAnotherName(core, dst.node, a.to.childPath(a.newName));
  if (dst && !dst.node.links?.length) await core.pin(dst.node);
  const dstUpper = await upper.stat(newPath);
  let replacedDir: Loc | undefined;
  if (dstUpper && isDirMode(dstUpper.mode)) {
    // The directory replaced may still hold whiteouts; move it aside and delete it after.
    replacedDir = upper.temp();
    await upper.rename(upper.loc(newPath), replacedDir);
  }
  if (src.node.isDir && dstUpper && !isDirMode(dstUpper.mode)) {
    // Only a whiteout can be there (dst was negative): swap the directory in.
    await upper.rename(upper.loc(oldPath), upper.loc(newPath), RENAME_EXCHANGE);
    if (!oldShadowed) await upper.unlink(upper.loc(oldPath));
  } else {
    await renameLeavingWhiteout(core, oldPath, newPath, oldShadowed);
  }
  await clearWhiteoutFile(upper, newPath);
  await makeOpaqueIfCovering(core, src.node, newPath, newShadowed);
  if (replacedDir) await upper.removeTemp(replacedDir);
  core.nodes.move(src.node, a.from, a.oldName, a.to, a.newName);
  core.forgetAbsence(a.to, a.newName);
}

async function renameLeavingWhiteout(core: OverlayCore, oldPath: string, newPath: string, whiteout: boolean): Promise<void> {
  const upper = core.upper;
  const from = upper.loc(oldPath);
  const to = upper.loc(newPath);
  if (!whiteout) return upper.rename(from, to);
  try {
    await upper.rename(from, to, RENAME_WHITEOUT);
  } catch (err) {
    if (!['EINVAL', 'EOPNOTSUPP', 'ENOTSUP'].includes(errorCode(err) ?? '')) throw err;
    await upper.rename(from, to);
    await makeWhiteout(upper, oldPath);
  }
}

/** A directory with lower parts keeps finding them at their old place through a redirect. */
async function setRedirect(core: OverlayCore, node: Node): Promise<void> {
  const target = `/${node.lowers[0]!.path}`;
  log('redirect %s -> %s', node.path, target);
  await core.upper.setxattr(core.upper.loc(node.path), core.opts.xattrs.redirect, Buffer.from(target, 'latin1'));
}

/** A pure upper directory moved over lower contents must not merge with them. */
async function makeOpaqueIfCovering(core: OverlayCore, node: Node, path: string, lowerThere: boolean): Promise<void> {
  if (!node.isDir || node.lowers.length > 0 || !lowerThere || node.opaque) return;
  await setOpaque(core.upper, core.upper.loc(path), core.opts.xattrs);
  node.opaque = true;
}

function swapNames(a: RenameArgs, srcNode: Node, dstNode: Node): void {
  a.from.children.set(a.oldName, dstNode);
  a.to.children.set(a.newName, srcNode);
  srcNode.parent = a.to;
  srcNode.name = a.newName;
  dstNode.parent = a.from;
  dstNode.name = a.oldName;
}
