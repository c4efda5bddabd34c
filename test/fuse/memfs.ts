/**
 * A tiny in-memory filesystem on the protocol layer, for tests of that layer through the real
 * kernel. It knows nothing of overlays. Hooks let a test hold a request unanswered.
 */
import { constants as K } from 'fs';
import { Fattr, ROOT_ID } from '../../src/fuse/abi';
import { FuseError } from '../../src/fuse/errors';
import type { FuseHandler, RequestControl } from '../../src/fuse/handler';
import type { Attr, AttrOut, CreateOut, DirentList, DirentPlusList, EntryOut, LockOut, OpenOut, StatfsOut } from '../../src/fuse/replies';
import { direntType } from '../../src/fuse/replies';
import type {
  CreateRequest,
  GetxattrRequest,
  LinkRequest,
  ListxattrRequest,
  LockRequest,
  LookupRequest,
  MkdirRequest,
  MknodRequest,
  OpenRequest,
  ReadRequest,
  RemovexattrRequest,
  RenameRequest,
  RequestHeader,
  SetattrRequest,
  SetxattrRequest,
  SymlinkRequest,
  WriteRequest,
} from '../../src/fuse/requests';

interface MemNode {
  attr: Attr;
  data: Buffer;
  children?: Map<string, number>;
  target?: Buffer;
  xattrs: Map<string, Buffer>;
  lookups: number;
}

const F_UNLCK = 2;

function now(): { sec: number; nsec: number } {
  const t = Date.now();
  return { sec: Math.floor(t / 1000), nsec: (t % 1000) * 1e6 };
}

export class MemFs implements FuseHandler {
  readonly nodes = new Map<number, MemNode>();
  private nextIno = ROOT_ID + 1;
  private nextFh = 1;
  /** Names whose LOOKUP stays unanswered until `answerHung`. */
  readonly hangOnLookup = new Set<string>();
  private readonly hung: Array<{ name: string; fail: (err: Error) => void }> = [];
  /** Simple whole-file write locks: holder owner per inode, and queued waiters. */
  private readonly lockHolder = new Map<number, bigint>();
  private readonly lockWaiters = new Map<number, Array<{ owner: bigint; grant: () => void }>>();
  forgets = 0;

  constructor() {
    this.nodes.set(ROOT_ID, this.makeNode(ROOT_ID, K.S_IFDIR | 0o755, 0, 0));
    this.nodes.get(ROOT_ID)!.children = new Map();
    this.nodes.get(ROOT_ID)!.attr.nlink = 2;
  }

  private makeNode(ino: number, mode: number, uid: number, gid: number): MemNode {
    const t = now();
    return {
      attr: { ino, size: 0, blocks: 0, atime: t, mtime: t, ctime: t, mode, nlink: 1, uid, gid, rdev: 0, blksize: 4096 },
      data: Buffer.alloc(0),
      xattrs: new Map(),
      lookups: 0,
    };
  }

  private node(ino: number): MemNode {
    const n = this.nodes.get(ino);
    if (!n) throw new FuseError('ENOENT');
    return n;
  }

  private dir(ino: number): Map<string, number> {
    const n = this.node(ino);
    if (!n.children) throw new FuseError('ENOTDIR');
    return n.children;
  }

  private entry(ino: number): EntryOut {
    const n = this.node(ino);
    n.lookups++;
    return { nodeid: ino, generation: 1, entryTimeout: 0, attrTimeout: 0, attr: { ...n.attr } };
  }

  /** Adds a file from the test side. */
  addFile(parent: number, name: string, content: string | Buffer, mode = 0o644): number {
    const ino = this.nextIno++;
    const n = this.makeNode(ino, K.S_IFREG | mode, 0, 0);
    n.data = Buffer.from(content);
    n.attr.size = n.data.length;
    this.nodes.set(ino, n);
    this.dir(parent).set(name, ino);
    return ino;
  }

  private makeChild(parent: number, name: Buffer, mode: number, req: RequestHeader): number {
    const children = this.dir(parent);
    const key = name.toString('latin1');
    if (children.has(key)) throw new FuseError('EEXIST');
    const ino = this.nextIno++;
    const n = this.makeNode(ino, mode, req.uid, req.gid);
    if ((mode & K.S_IFMT) === K.S_IFDIR) {
      n.children = new Map();
      n.attr.nlink = 2;
      this.node(parent).attr.nlink++;
    }
    this.nodes.set(ino, n);
    children.set(key, ino);
    return ino;
  }

  async lookup(req: LookupRequest, _ctl: RequestControl): Promise<EntryOut> {
    const name = req.name.toString('latin1');
    if (this.hangOnLookup.has(name)) {
      return new Promise((_resolve, reject) => this.hung.push({ name, fail: reject }));
    }
    const ino = this.dir(req.nodeid).get(name);
    if (ino === undefined) throw new FuseError('ENOENT');
    return this.entry(ino);
  }

  get hungCount(): number {
    return this.hung.length;
  }

  /** Answers every held LOOKUP of `name` with ENOENT. */
  answerHung(name: string): void {
    for (let i = this.hung.length - 1; i >= 0; i--) {
      if (this.hung[i]!.name !== name) continue;
      this.hung[i]!.fail(new FuseError('ENOENT'));
      this.hung.splice(i, 1);
    }
  }

  forget(nodeid: number, nlookup: number): void {
    const n = this.nodes.get(nodeid);
    if (n) n.lookups -= nlookup;
    this.forgets += nlookup;
  }

  async getattr(req: RequestHeader): Promise<AttrOut> {
    return { attrTimeout: 0, attr: { ...this.node(req.nodeid).attr } };
  }

  async setattr(req: SetattrRequest): Promise<AttrOut> {
    const n = this.node(req.nodeid);
    if (req.valid & Fattr.MODE) n.attr.mode = (n.attr.mode & K.S_IFMT) | (req.mode & 0o7777);
    if (req.valid & Fattr.UID) n.attr.uid = req.newUid;
    if (req.valid & Fattr.GID) n.attr.gid = req.newGid;
    if (req.valid & Fattr.SIZE) {
      const size = Number(req.size);
      const data = Buffer.alloc(size);
      n.data.copy(data, 0, 0, Math.min(size, n.data.length));
      n.data = data;
      n.attr.size = size;
    }
    if (req.valid & Fattr.ATIME) n.attr.atime = req.atime;
    if (req.valid & Fattr.MTIME) n.attr.mtime = req.mtime;
    if (req.valid & Fattr.ATIME_NOW) n.attr.atime = now();
    if (req.valid & Fattr.MTIME_NOW) n.attr.mtime = now();
    n.attr.ctime = now();
    return { attrTimeout: 0, attr: { ...n.attr } };
  }

  async readlink(req: RequestHeader): Promise<Buffer> {
    const t = this.node(req.nodeid).target;
    if (!t) throw new FuseError('EINVAL');
    return t;
  }

  async symlink(req: SymlinkRequest): Promise<EntryOut> {
    const ino = this.makeChild(req.nodeid, req.name, K.S_IFLNK | 0o777, req);
    const n = this.node(ino);
    n.target = Buffer.from(req.target);
    n.attr.size = req.target.length;
    return this.entry(ino);
  }

  async mknod(req: MknodRequest): Promise<EntryOut> {
    const ino = this.makeChild(req.nodeid, req.name, req.mode & ~req.umask, req);
    this.node(ino).attr.rdev = req.rdev;
    return this.entry(ino);
  }

  async mkdir(req: MkdirRequest): Promise<EntryOut> {
    return this.entry(this.makeChild(req.nodeid, req.name, K.S_IFDIR | (req.mode & ~req.umask & 0o7777), req));
  }

  private remove(parent: number, name: Buffer, wantDir: boolean): void {
    const children = this.dir(parent);
    const key = name.toString('latin1');
    const ino = children.get(key);
    if (ino === undefined) throw new FuseError('ENOENT');
    const n = this.node(ino);
    const isDir = n.children !== undefined;
    if (wantDir && !isDir) throw new FuseError('ENOTDIR');
    if (!wantDir && isDir) throw new FuseError('EISDIR');
    if (isDir && n.children!.size > 0) throw new FuseError('ENOTEMPTY');
    children.delete(key);
    n.attr.nlink = isDir ? 0 : n.attr.nlink - 1;
    if (isDir) this.node(parent).attr.nlink--;
  }

  async unlink(req: RequestHeader & { name: Buffer }): Promise<void> {
    this.remove(req.nodeid, req.name, false);
  }

  async rmdir(req: RequestHeader & { name: Buffer }): Promise<void> {
    this.remove(req.nodeid, req.name, true);
  }

  async rename(req: RenameRequest): Promise<void> {
    const from = this.dir(req.nodeid);
    const to = this.dir(req.newdir);
    const key = req.name.toString('latin1');
    const newKey = req.newname.toString('latin1');
    const ino = from.get(key);
    if (ino === undefined) throw new FuseError('ENOENT');
    const existing = to.get(newKey);
    if (existing !== undefined) {
      if (req.flags & 1) throw new FuseError('EEXIST');
      this.node(existing).attr.nlink--;
    }
    from.delete(key);
    to.set(newKey, ino);
  }

  async link(req: LinkRequest): Promise<EntryOut> {
    const n = this.node(req.oldnodeid);
    const to = this.dir(req.nodeid);
    const key = req.newname.toString('latin1');
    if (to.has(key)) throw new FuseError('EEXIST');
    to.set(key, req.oldnodeid);
    n.attr.nlink++;
    return this.entry(req.oldnodeid);
  }

  async open(req: OpenRequest): Promise<OpenOut> {
    this.node(req.nodeid);
    return { fh: this.nextFh++, openFlags: 0 };
  }

  async opendir(req: OpenRequest): Promise<OpenOut> {
    this.dir(req.nodeid);
    return { fh: this.nextFh++, openFlags: 0 };
  }

  async read(req: ReadRequest): Promise<Buffer> {
    const n = this.node(req.nodeid);
    return n.data.subarray(req.offset, req.offset + req.size);
  }

  async write(req: WriteRequest): Promise<number> {
    const n = this.node(req.nodeid);
    const end = req.offset + req.data.length;
    if (end > n.data.length) {
      const grown = Buffer.alloc(end);
      n.data.copy(grown);
      n.data = grown;
      n.attr.size = end;
    }
    req.data.copy(n.data, req.offset);
    n.attr.mtime = now();
    return req.data.length;
  }

  async statfs(): Promise<StatfsOut> {
    return { blocks: 1000, bfree: 500, bavail: 500, files: 100, ffree: 50, bsize: 4096, namelen: 255, frsize: 4096 };
  }

  /** Closing any fd drops the closer's POSIX locks. */
  async flush(req: RequestHeader & { lockOwner: bigint }): Promise<void> {
    this.unlock(req.nodeid, req.lockOwner);
  }
  async fsync(): Promise<void> {}

  async release(): Promise<void> {}

  async releasedir(): Promise<void> {}

  private listing(ino: number): Array<[string, number]> {
    return [['.', ino], ['..', ROOT_ID], ...this.dir(ino).entries()];
  }

  async readdir(req: ReadRequest, _ctl: RequestControl, out: DirentList): Promise<void> {
    const all = this.listing(req.nodeid);
    for (let i = req.offset; i < all.length; i++) {
      const [name, ino] = all[i]!;
      if (!out.add(Buffer.from(name, 'latin1'), ino, direntType(this.node(ino).attr.mode), i + 1)) break;
    }
  }

  async readdirplus(req: ReadRequest, _ctl: RequestControl, out: DirentPlusList): Promise<void> {
    const all = this.listing(req.nodeid);
    for (let i = req.offset; i < all.length; i++) {
      const [name, ino] = all[i]!;
      const n = this.node(ino);
      const dot = name === '.' || name === '..';
      const e: EntryOut = { nodeid: ino, generation: 1, entryTimeout: 0, attrTimeout: 0, attr: { ...n.attr } };
      if (!out.add(Buffer.from(name, 'latin1'), e, direntType(n.attr.mode), i + 1)) break;
      if (!dot) n.lookups++;
    }
  }

  async setxattr(req: SetxattrRequest): Promise<void> {
    const n = this.node(req.nodeid);
    const key = req.name.toString('latin1');
    if (req.flags === 1 && n.xattrs.has(key)) throw new FuseError('EEXIST');
    if (req.flags === 2 && !n.xattrs.has(key)) throw new FuseError('ENODATA');
    n.xattrs.set(key, Buffer.from(req.value));
  }

  async getxattr(req: GetxattrRequest): Promise<Buffer> {
    const v = this.node(req.nodeid).xattrs.get(req.name.toString('latin1'));
    if (!v) throw new FuseError('ENODATA');
    return v;
  }

  async listxattr(req: ListxattrRequest): Promise<Buffer> {
    const names = [...this.node(req.nodeid).xattrs.keys()];
    return Buffer.from(names.map((k) => k + '\0').join(''), 'latin1');
  }

  async removexattr(req: RemovexattrRequest): Promise<void> {
    if (!this.node(req.nodeid).xattrs.delete(req.name.toString('latin1'))) throw new FuseError('ENODATA');
  }

  async create(req: CreateRequest): Promise<CreateOut> {
    const ino = this.makeChild(req.nodeid, req.name, K.S_IFREG | (req.mode & ~req.umask & 0o7777), req);
    return { entry: this.entry(ino), open: { fh: this.nextFh++, openFlags: 0 } };
  }

  async access(): Promise<void> {}

  async getlk(req: LockRequest): Promise<LockOut> {
    const holder = this.lockHolder.get(req.nodeid);
    if (holder === undefined || holder === req.owner) return { ...req.lk, type: F_UNLCK };
    return { start: 0n, end: 0x7fffffffffffffffn, type: 1, pid: 0 };
  }

  /** Whole-file exclusive locks only: enough to exercise a lock answered later. */
  async setlk(req: LockRequest, ctl: RequestControl): Promise<void> {
    if (req.lk.type === F_UNLCK) {
      this.unlock(req.nodeid, req.owner);
      return;
    }
    const holder = this.lockHolder.get(req.nodeid);
    if (holder === undefined || holder === req.owner) {
      this.lockHolder.set(req.nodeid, req.owner);
      return;
    }
    if (req.op !== 33) throw new FuseError('EAGAIN');
    return new Promise((resolve, reject) => {
      const queue = this.lockWaiters.get(req.nodeid) ?? [];
      const waiter = { owner: req.owner, grant: resolve };
      queue.push(waiter);
      this.lockWaiters.set(req.nodeid, queue);
      ctl.onInterrupt(() => {
        queue.splice(queue.indexOf(waiter), 1);
        reject(new FuseError('EINTR'));
      });
    });
  }

  waiting(nodeid: number): number {
    return this.lockWaiters.get(nodeid)?.length ?? 0;
  }

  private unlock(nodeid: number, owner: bigint): void {
    if (this.lockHolder.get(nodeid) !== owner) return;
    this.lockHolder.delete(nodeid);
    const next = this.lockWaiters.get(nodeid)?.shift();
    if (next) {
      this.lockHolder.set(nodeid, next.owner);
      next.grant();
    }
  }
}
