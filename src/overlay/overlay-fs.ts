/**
 * The overlay filesystem as a FUSE handler: each request is turned into operations on the
 * node table and the layers (see core.ts, namespace.ts, files.ts, setattr.ts, xattrs.ts).
 */
import * as fs from 'fs';
import { FSYNC_FDATASYNC, Fopen, GETATTR_FH, InitFlag, SETXATTR_ACL_KILL_SGID, type InitFlagName } from '../fuse/abi';
import { FuseError } from '../fuse/errors';
import type { ConnectionInfo, FuseHandler, RequestControl } from '../fuse/handler';
import type {
  Attr,
  AttrOut,
  CreateOut,
  DirentList,
  DirentPlusList,
  EntryOut,
  IoctlOut,
  LentBuffer,
  LockOut,
  OpenOut,
  StatfsOut,
  StatxOut,
} from '../fuse/replies';
import type {
  AccessRequest,
  CopyFileRangeRequest,
  CreateRequest,
  FallocateRequest,
  FlushRequest,
  FsyncRequest,
  GetattrRequest,
  GetxattrRequest,
  IoctlRequest,
  LinkRequest,
  ListxattrRequest,
  LockRequest,
  LookupRequest,
  LseekRequest,
  MkdirRequest,
  MknodRequest,
  OpenRequest,
  ReadRequest,
  ReadlinkRequest,
  ReleaseRequest,
  RemovexattrRequest,
  RenameRequest,
  RmdirRequest,
  SetattrRequest,
  SetxattrRequest,
  StatfsRequest,
  StatxRequest,
  SymlinkRequest,
  UnlinkRequest,
  WriteRequest,
} from '../fuse/requests';
import type { DescriptorFile, LayerAttr } from '../layers/types';
import { decodeDev } from './attrs';
import { lookupParent, lookupSelf } from './export';
import { fileattr } from './fileattr';
import { OverlayCore } from './core';
import * as files from './files';
import { DirHandle, FileHandle, closeAllFiles, type ListedEntry } from './handles';
import { fillDirentPlus, mergedListing } from './listing';
import { Locking } from './locking';
import * as ns from './namespace';
import { Passthrough } from './passthrough';
import type { OverlayOptions } from './options';
import type { Layers } from './resolve';
import type { Node } from './nodes';
import { setattr } from './setattr';
import { statxOut } from './statx';
import * as xattrs from './xattrs';
import { O_ACCMODE, S_IFDIR, S_IFLNK, S_IFREG } from '../util/linux';
import { ONE_TICK } from '../util/bounds';

const name = OverlayCore.checkName;
const DOT = Buffer.from('.');
const DOTDOT = Buffer.from('..');
const newName = OverlayCore.checkNewName;

export class OverlayFs implements FuseHandler {
  readonly core: OverlayCore;
  readonly locking: Locking;

  constructor(layers: Layers, opts: OverlayOptions, root: { upper?: LayerAttr; lowers: LayerAttr[] }) {
    this.core = new OverlayCore(layers, opts, root);
    this.locking = new Locking(this.core, opts.forwardLocks);
  }

  prepare(kernelMinor: number): void {
    this.core.startWatching(kernelMinor);
  }

  get wantFlags(): InitFlagName[] {
    const flags: InitFlagName[] = ['HANDLE_KILLPRIV_V2', 'EXPORT_SUPPORT'];
    // The kernel checks a file's size and mtime before each read from its pages: needed only
    // while lower changes are polled. Watched, each change invalidates what it touches.
    if (!this.core.watch?.watching) flags.push('AUTO_INVAL_DATA');
    if (this.core.opts.passthrough && !this.core.opts.readOnly && this.core.atime.passthroughKeepsAtimes) flags.push('PASSTHROUGH');
    // The kernel checks ACLs itself; a create's umask then comes to the daemon, which applies
    // it unless the directory has a default ACL.
    if (this.core.opts.posixAcl && !this.core.opts.noXattrs) flags.push('POSIX_ACL', 'DONT_MASK');
    return flags;
  }

  init(info: ConnectionInfo): void {
    if (info.backing && this.core.layers.upper) {
      const passthrough = new Passthrough(info.backing, this.core.layers.upper);
      this.core.passthrough = passthrough;
      this.core.nodes.onGone = (node) => passthrough.forget(node);
    }
    this.core.kernelChecksPages = (info.flags & InitFlag.AUTO_INVAL_DATA) !== 0n;
    this.core.daemonAppliesUmask = (info.flags & InitFlag.DONT_MASK) !== 0n;
  }

  private file(fh: number): FileHandle {
    const h = this.core.files.get(fh);
    if (!h) throw new FuseError('EBADF');
    return h;
  }

  private writable(): void {
    if (!this.core.layers.upper) throw new FuseError('EROFS');
  }

  async lookup(req: LookupRequest): Promise<EntryOut> {
    // "." and "..": the kernel asking for a node by a file handle (FUSE_EXPORT_SUPPORT).
    if (req.name.length <= 2 && (req.name.equals(DOT) || req.name.equals(DOTDOT))) {
      return req.name.length === 1 ? lookupSelf(this.core, req.nodeid) : lookupParent(this.core, req.nodeid);
    }
    return this.core.lookupEntry(this.core.dirNode(req.nodeid), name(req.name));
  }

  forget(nodeid: number, nlookup: number): void {
    this.core.nodes.forget(nodeid, nlookup);
  }

  async getattr(req: GetattrRequest): Promise<AttrOut> {
    const node = this.core.node(req.nodeid);
    const since = this.core.changeMark();
    const { attr } = await this.stat(node, req);
    return { attrTimeout: this.core.attrTimeoutFor(node, since), attr };
  }

  async statx(req: StatxRequest): Promise<StatxOut> {
    const node = this.core.node(req.nodeid);
    const since = this.core.changeMark();
    const { attr, layer } = await this.stat(node, req);
    return statxOut(node, attr, layer, this.core.attrTimeoutFor(node, since));
  }

  /** A node's attributes for GETATTR and STATX, with the layer object's they were made from. */
  private async stat(node: Node, req: { getattrFlags: number; fh: number }): Promise<{ attr: Attr; layer?: LayerAttr }> {
    if (req.getattrFlags & GETATTR_FH) {
      // fstat of an open file: answer from the file itself, which outlives its name.
      const h = this.core.files.get(req.fh);
      const got = h && (node.unlinked || h.upperFile !== undefined) ? this.core.handleStat(h) : null;
      if (got) return got;
    }
    return this.core.statOf(node);
  }

  async setattr(req: SetattrRequest): Promise<AttrOut> {
    this.writable();
    const node = this.core.node(req.nodeid);
    let file: DescriptorFile | undefined;
    const h = this.core.files.get(req.fh);
    if (h && (node.unlinked || h.upperFile !== undefined)) {
      await this.core.copyUp!.ensure(node);
      file = h.upperFile ?? undefined;
    }
    await setattr(this.core, node, req, file);
    return { attrTimeout: this.core.attrTimeoutFor(node), attr: await this.core.attrOf(node) };
  }

  async readlink(req: ReadlinkRequest): Promise<Buffer> {
    const node = this.core.node(req.nodeid);
    if (node.type !== S_IFLNK) throw new FuseError('EINVAL');
    if (node.inUpper) return this.core.upper.readlink(node.path);
    const part = node.lowers[0]!;
    return this.core.layers.lowers[part.layer]!.readlink(part);
  }

  async mknod(req: MknodRequest): Promise<EntryOut> {
    this.writable();
    const parent = this.core.dirNode(req.nodeid);
    const upper = this.core.upper;
    const { major, minor } = decodeDev(req.rdev);
    const { node, attr } = await ns.createObject(this.core, parent, newName(req.name), {
      mode: req.mode,
      umask: this.core.umaskOf(req),
      ...this.core.layerOwner(req.uid, req.gid),
      make: (at, mode) => upper.mknod(at, mode, major, minor),
    });
    return this.core.entryOf(node, attr);
  }

  async mkdir(req: MkdirRequest): Promise<EntryOut> {
    this.writable();
    const parent = this.core.dirNode(req.nodeid);
    const upper = this.core.upper;
    const mode = S_IFDIR | (req.mode & 0o7777);
    const { node, attr } = await ns.createObject(this.core, parent, newName(req.name), {
      mode,
      umask: this.core.umaskOf(req),
      ...this.core.layerOwner(req.uid, req.gid),
      make: (at, asked) => upper.mkdir(at, asked & 0o7777),
    });
    return this.core.entryOf(node, attr);
  }

  async symlink(req: SymlinkRequest): Promise<EntryOut> {
    this.writable();
    const parent = this.core.dirNode(req.nodeid);
    const upper = this.core.upper;
    const { node, attr } = await ns.createObject(this.core, parent, newName(req.name), {
      mode: S_IFLNK | 0o777,
      umask: 0,
      ...this.core.layerOwner(req.uid, req.gid),
      make: (at) => upper.symlink(req.target, at),
    });
    return this.core.entryOf(node, attr);
  }

  async create(req: CreateRequest): Promise<CreateOut> {
    this.writable();
    const parent = this.core.dirNode(req.nodeid);
    const upper = this.core.upper;
    const mode = S_IFREG | (req.mode & 0o7777);
    let file: DescriptorFile | undefined;
    const access = req.flags & O_ACCMODE;
    const { node, attr } = await ns.createObject(this.core, parent, newName(req.name), {
      mode,
      umask: this.core.umaskOf(req),
      ...this.core.layerOwner(req.uid, req.gid),
      make: async (at, asked) => {
        file = await upper.openFile(at, files.layerOpenFlags(req.flags) | access | fs.constants.O_CREAT | fs.constants.O_EXCL, asked & 0o7777);
        return file;
      },
    });
    const h = this.core.files.allocate((id) => new FileHandle(id, node, req.flags));
    h.upperFile = file;
    h.upperWritable = access !== fs.constants.O_RDONLY;
    node.openCount++;
    await files.chooseMode(this.core, h);
    return { entry: freshFileEntry(this.core.entryOf(node, attr)), open: files.openReply(this.core, h) };
  }

  /** open(O_TMPFILE): an unnamed file in the directory, which linkat may name later. */
  async tmpfile(req: CreateRequest): Promise<CreateOut> {
    this.writable();
    const parent = this.core.dirNode(req.nodeid);
    const access = req.flags & O_ACCMODE;
    if (access === fs.constants.O_RDONLY) throw new FuseError('EINVAL');
    const { node, attr, file } = await ns.createTmpfile(
      this.core,
      parent,
      { mode: S_IFREG | (req.mode & 0o7777), umask: this.core.umaskOf(req), ...this.core.layerOwner(req.uid, req.gid) },
      access,
      (req.flags & fs.constants.O_EXCL) === 0,
    );
    const h = this.core.files.allocate((id) => new FileHandle(id, node, req.flags));
    h.upperFile = file;
    h.upperWritable = true;
    node.openCount++;
    await files.chooseMode(this.core, h);
    return { entry: this.core.entryOf(node, attr), open: files.openReply(this.core, h) };
  }

  /** chattr and lsattr: the inode flag ioctls (see fileattr.ts); no other. */
  async ioctl(req: IoctlRequest): Promise<IoctlOut> {
    return fileattr(this.core, this.core.node(req.nodeid), req.cmd, req.data);
  }

  async unlink(req: UnlinkRequest): Promise<void> {
    this.writable();
    await ns.unlink(this.core, this.core.dirNode(req.nodeid), name(req.name));
  }

  async rmdir(req: RmdirRequest): Promise<void> {
    this.writable();
    await ns.rmdir(this.core, this.core.dirNode(req.nodeid), name(req.name));
  }

  async rename(req: RenameRequest): Promise<void> {
    this.writable();
    await ns.rename(this.core, {
      from: this.core.dirNode(req.nodeid),
      oldName: name(req.name),
      to: this.core.dirNode(req.newdir),
      newName: newName(req.newname),
      flags: req.flags,
    });
  }

  async link(req: LinkRequest): Promise<EntryOut> {
    this.writable();
    const { node, attr } = await ns.link(this.core, this.core.node(req.oldnodeid), this.core.dirNode(req.nodeid), newName(req.newname));
    return this.core.entryOf(node, attr);
  }

  async open(req: OpenRequest): Promise<OpenOut> {
    const node = this.core.node(req.nodeid);
    const h = await files.open(this.core, node, req.flags);
    return files.openReply(this.core, h);
  }

  async read(req: ReadRequest): Promise<Buffer | LentBuffer> {
    return files.read(this.core, this.file(req.fh), req.offset, req.size);
  }

  async write(req: WriteRequest): Promise<number> {
    this.writable();
    return files.write(this.core, this.file(req.fh), req.offset, req.data, req.writeFlags, req);
  }

  async statfs(_req: StatfsRequest): Promise<StatfsOut> {
    const layer = this.core.layers.upper ?? this.core.layers.lowers[0]!;
    return layer.statfs();
  }

  async flush(req: FlushRequest): Promise<void> {
    await this.locking.flush(req.nodeid, req.lockOwner);
    // A program that wrote through a mapping and exits unmaps before it closes: the close
    // returns after this, so the stat that follows it sees the times the writes gave the file
    // (attributes cached before the open would otherwise stand for their whole timeout).
    const node = this.core.nodes.get(req.nodeid);
    if (node && node.kernelWriters > 0 && node.attrsKeptLong) {
      node.attrsKeptLong = false;
      await this.core.notifier?.invalAttrs(node.id);
    }
  }

  async release(req: ReleaseRequest): Promise<void> {
    const h = this.core.files.get(req.fh);
    if (!h) return;
    await this.locking.release(h.node, req.fh);
    await files.release(this.core, h);
  }

  getlk(req: LockRequest): Promise<LockOut> {
    return this.locking.getlk(req);
  }

  setlk(req: LockRequest, ctl: RequestControl): Promise<void> {
    return this.locking.setlk(req, ctl);
  }

  destroy(): void {
    this.locking.dispose();
  }

  /** The mount is gone: every descriptor on the layers is closed now (see closeAllFiles). */
  closeAll(): void {
    this.core.watch?.close();
    this.core.passthrough?.close();
    closeAllFiles(this.core.files);
  }

  async fsync(req: FsyncRequest): Promise<void> {
    const h = this.file(req.fh);
    if (this.core.opts.volatile) return;
    await files.fsync(h, (req.fsyncFlags & FSYNC_FDATASYNC) !== 0);
  }

  /** noxattrs: ENOSYS, as fuse-overlayfs answers; the kernel stops asking (EOPNOTSUPP). */
  private checkXattrsEnabled(): void {
    if (this.core.opts.noXattrs) throw new FuseError('ENOSYS');
  }

  async setxattr(req: SetxattrRequest): Promise<void> {
    this.checkXattrsEnabled();
    this.writable();
    const killSgid = (req.setxattrFlags & SETXATTR_ACL_KILL_SGID) !== 0;
    await xattrs.setxattr(this.core, this.core.node(req.nodeid), req.name.toString('latin1'), Buffer.from(req.value), req.flags, killSgid);
  }

  async getxattr(req: GetxattrRequest): Promise<Buffer> {
    this.checkXattrsEnabled();
    return xattrs.getxattr(this.core, this.core.node(req.nodeid), req.name.toString('latin1'));
  }

  async listxattr(req: ListxattrRequest): Promise<Buffer> {
    this.checkXattrsEnabled();
    return xattrs.listxattr(this.core, this.core.node(req.nodeid));
  }

  async removexattr(req: RemovexattrRequest): Promise<void> {
    this.checkXattrsEnabled();
    this.writable();
    await xattrs.removexattr(this.core, this.core.node(req.nodeid), req.name.toString('latin1'));
  }

  async opendir(req: OpenRequest): Promise<OpenOut> {
    const node = this.core.dirNode(req.nodeid);
    const h = this.core.dirs.allocate((id) => new DirHandle(id, node));
    // The kernel may keep a listing that only the daemon can change (it drops it itself when
    // the directory changes through the mount), one a lower change invalidates (watched
    // lowers), or any listing where lookups are cached anyway.
    const keep = node.upperOnly || this.core.opts.revalidate !== 'always' || this.core.watch?.watching === true;
    return { fh: h.id, openFlags: keep ? Fopen.KEEP_CACHE | Fopen.CACHE_DIR : 0 };
  }

  /**
   * The listing a READDIR or READDIRPLUS serves: a read from the start reads the directory
   * again, as on a local filesystem.
   */
  private async listing(req: ReadRequest, ctl: RequestControl): Promise<{ h: DirHandle; entries: ListedEntry[]; readNow: boolean }> {
    const h = this.core.dirs.get(req.fh);
    if (!h) throw new FuseError('EBADF');
    const readNow = req.offset === 0 || !h.entries;
    if (readNow) {
      // Stopped only for a caller that is dying: one that handles a signal would see EINTR.
      h.entries = await mergedListing(this.core.layers, this.core.opts.xattrs, this.core.inodes, h.node, ctl.abandoned);
    }
    return { h, entries: h.entries!, readNow };
  }

  async readdir(req: ReadRequest, ctl: RequestControl, out: DirentList): Promise<void> {
    const { entries } = await this.listing(req, ctl);
    for (let i = req.offset; i < entries.length; i++) {
      const e = entries[i]!;
      if (!out.add(Buffer.from(e.name, 'latin1'), e.ino, e.type, i + 1)) break;
    }
  }

  /**
   * READDIRPLUS: each entry comes with its node and attributes, looked up through the layers
   * as LOOKUP would (where a lower's listing, read by this request, gave them, from it), so a
   * listing followed by stats costs one request per batch of entries.
   */
  async readdirplus(req: ReadRequest, ctl: RequestControl, out: DirentPlusList): Promise<void> {
    const since = this.core.changeMark();
    const { h, entries, readNow } = await this.listing(req, ctl);
    await fillDirentPlus(this.core, h.node, entries, req.offset, out, readNow, since, ctl.abandoned);
  }

  async releasedir(req: ReleaseRequest): Promise<void> {
    const h = this.core.dirs.get(req.fh);
    if (h) this.core.dirs.delete(h);
  }

  async fsyncdir(req: FsyncRequest): Promise<void> {
    const node = this.core.dirNode(req.nodeid);
    if (node.inUpper && !this.core.opts.volatile) await this.core.upper.fsyncDir(this.core.upper.loc(node.path));
  }

  async access(_req: AccessRequest): Promise<void> {}

  async fallocate(req: FallocateRequest): Promise<void> {
    this.writable();
    await files.fallocate(this.core, this.file(req.fh), req.mode, req.offset, req.length);
  }

  async lseek(req: LseekRequest): Promise<bigint> {
    return files.lseek(this.core, this.file(req.fh), req.offset, req.whence);
  }

  async copyFileRange(req: CopyFileRangeRequest): Promise<bigint> {
    this.writable();
    return files.copyFileRange(this.core, this.file(req.fhIn), req.offIn, this.file(req.fhOut), req.offOut, req.length);
  }
}

/**
 * The entry of a file just created: one the kernel writes itself has attributes with no cache
 * time (attrTimeoutFor), but these may be kept for a tick, so that the open they come with
 * needs no GETATTR for its permission check. Nothing can move the file's times unseen within
 * it: the file is empty, a mapping cannot write it before a write or truncate gives it a size,
 * and the kernel drops its attributes at each of those.
 */
function freshFileEntry(entry: EntryOut): EntryOut {
  return entry.attrTimeout === 0 ? { ...entry, attrTimeout: ONE_TICK } : entry;
}
