/**
 * State shared by the overlay's operations: layers, node table, handles, copy-up, and the
 * helpers that turn a node into attributes, entries and paths.
 */
import { AtimePolicy } from './atime';
import type { Passthrough } from './passthrough';
import createDebug from 'debug';
import { LRUCache } from 'lru-cache';
import * as fs from 'fs';
import { FuseError } from '../fuse/errors';
import { negativeEntry, type Attr, type EntryOut } from '../fuse/replies';
import { ONE_TICK } from '../util/bounds';
import type { UpperDir } from '../layers/upper-dir';
import type { DescriptorFile, LayerAttr } from '../layers/types';
import { nodeAttr } from './attrs';
import { CopyUp } from './copy-up';
import { DirHandle, type FileHandle, HandleTable } from './handles';
import { InodeNumbers } from './inodes';
import { childPath } from '../layers/types';
import { Node, NodeTable } from './nodes';
import type { OverlayOptions } from './options';
import { absenceCacheable, resolveChild, toLowerParts, type Layers, type Listed, type Resolution } from './resolve';
import { isPrivateName } from './format';
import { LowerWatch, type Invalidations } from './lower-watch';
import { NAME_MAX, S_IFMT, type Timespec } from '../util/linux';

const logRevalidate = createDebug('ovshift:revalidate');

/** Kernel cache time where the mode caches lower lookups ("forever", as fuse-overlayfs does). */
const CACHE_TIMEOUT = 86400;

/** Telling the kernel what changed behind its caches; never awaited in a request's path. */
export type Notifier = Invalidations;

export class OverlayCore {
  readonly nodes: NodeTable;
  readonly inodes = new InodeNumbers();
  readonly files = new HandleTable<FileHandle>();
  readonly dirs = new HandleTable<DirHandle>();
  readonly copyUp?: CopyUp;
  notifier?: Notifier;
  /** Set at INIT while every lower reports its changes (see LowerWatch). */
  watch?: LowerWatch;
  /** Why the lowers are not watched, for `ovshift ctl MNT status`. */
  private unwatchedBecause = 'decided at the first request';
  /** Set at INIT when the kernel agreed to passthrough and the mount has an upper. */
  passthrough?: Passthrough;
  /**
   * Whether the kernel checks a file's size and mtime before reading its cached pages
   * (AUTO_INVAL_DATA, asked for while lower changes are polled). Otherwise a change the
   * daemon sees in a lower file's attributes is its cue to drop them.
   */
  kernelChecksPages = true;
  /**
   * Absences remembered by the daemon where the mode allows caching them (revalidate=cached
   * only). Made there alone: an LRUCache allocates its whole capacity up front (20 ms and
   * megabytes per mount).
   */
  private readonly absent?: LRUCache<string, true>;

  /** FUSE_DONT_MASK was granted: the kernel sends modes unmasked, with the caller's umask. */
  daemonAppliesUmask = false;

  /** How reads of upper files move their atimes. */
  readonly atime: AtimePolicy;

  constructor(
    readonly layers: Layers,
    readonly opts: OverlayOptions,
    root: { upper?: LayerAttr; lowers: LayerAttr[] },
  ) {
    this.atime = new AtimePolicy(opts.atime, layers.upper?.atimeRule === opts.atime);
    if (opts.revalidate === 'cached') this.absent = new LRUCache<string, true>({ max: 100_000 });
    if (root.upper) this.inodes.register(root.upper.dev);
    for (const l of root.lowers) this.inodes.register(l.dev);
    const top = root.upper ?? root.lowers[0]!;
    this.nodes = new NodeTable(
      root.upper?.identity,
      root.lowers.map((a, i) => ({ layer: i, path: '', identity: a.identity })),
      this.inodes.map(top.dev, top.ino),
    );
    if (layers.upper) {
      this.copyUp = new CopyUp(
        layers,
        layers.upper,
        opts.xattrs,
        this.nodes,
        (node) => this.detach(node, node.parent!, node.name, 'gone from the lower before its copy-up'),
        (node) => [...this.files.of(node)].find((h) => h.lower)?.lower,
      );
    }
  }

  get upper(): UpperDir {
    if (!this.layers.upper) throw new FuseError('EROFS');
    return this.layers.upper;
  }

  node(id: number): Node {
    const n = this.nodes.get(id);
    if (!n) throw new FuseError('ESTALE', `unknown node ${id}`);
    return n;
  }

  dirNode(id: number): Node {
    const n = this.node(id);
    if (!n.isDir) throw new FuseError('ENOTDIR');
    return n;
  }

  /**
   * The layer ids a caller's new object gets; the overflow id for a caller id without a
   * mapping, as fuse-overlayfs stores it (a chown to such an id still fails, see setattr).
   */
  layerOwner(viewUid: number, viewGid: number): { uid: number; gid: number } {
    return this.opts.ids.creatorToLayer(viewUid, viewGid);
  }

  static checkName(name: Buffer): string {
    if (name.length > NAME_MAX) throw new FuseError('ENAMETOOLONG');
    return name.toString('latin1');
  }

  /**
   * A name a new object may take: never an overlay-private one (`.wh.NAME` would hide another
   * user's NAME, `.wh..wh..opq` a whole directory), whatever format the upper uses.
   */
  static checkNewName(name: Buffer): string {
    const s = OverlayCore.checkName(name);
    if (isPrivateName(s)) throw new FuseError('EINVAL', `${s}: overlay-private name`);
    return s;
  }

  /**
   * Kernel cache time of a node's entry (name → node) and attributes. Where a lower decides
   * them: `lowerTimeout`, by default one clock tick, the least the kernel can keep (it rounds
   * any non-zero time up to a jiffy, 4 ms at HZ=250): the walks, stats and reads of one moment
   * share one check of the lower instead of repeating it per call, and anything later checks
   * again. Data is never served from a replaced object whatever the time: an open that finds
   * another object at the path answers ESTALE and the kernel looks the path up afresh.
   * lower_timeout=0 makes every single access ask.
   */
  timeoutFor(node: Node, since?: number): number {
    if (this.opts.revalidate !== 'always') return CACHE_TIMEOUT;
    return node.upperOnly || this.watch?.unchangedSince(since) ? this.opts.upperTimeout : this.opts.lowerTimeout;
  }

  /** The umask a create must apply (see NewObject.umask). */
  umaskOf(req: { umask: number }): number {
    return this.daemonAppliesUmask ? req.umask & 0o777 : 0;
  }

  /** The attributes' cache time: none while the kernel itself writes the file (kernelWriters). */
  attrTimeoutFor(node: Node, since?: number): number {
    if (node.kernelWriters > 0) return 0;
    const timeout = this.timeoutFor(node, since);
    if (timeout > ONE_TICK) node.attrsKeptLong = true;
    return timeout;
  }

  /**
   * Taken before the layer reads a reply is built from: with it, the reply may be kept long
   * if no lower change was reported meanwhile (see LowerWatch).
   */
  changeMark(): number | undefined {
    return this.watch?.mark;
  }

  /** Has the lowers report their changes (INIT: the kernel takes FUSE_NOTIFY_INC_EPOCH from 7.44). */
  startWatching(kernelMinor: number): void {
    if (this.opts.revalidate !== 'always') this.unwatchedBecause = `revalidate=${this.opts.revalidate}`;
    else if (!this.opts.watch) this.unwatchedBecause = 'watch=off';
    else if (kernelMinor < 44) this.unwatchedBecause = `the kernel's FUSE 7.${kernelMinor} cannot drop all entries at once (7.44)`;
    else if (!this.notifier) this.unwatchedBecause = 'no way to notify the kernel';
    else {
      const res = LowerWatch.start(this.layers.lowers, this.nodes, this.notifier);
      if (typeof res === 'string') this.unwatchedBecause = res;
      else this.watch = res;
    }
    logRevalidate('lower changes: %s', this.lowerChanges);
  }

  /** How lower changes reach the kernel's caches, for `ovshift ctl MNT status`. */
  get lowerChanges(): string {
    if (this.watch?.watching) return 'pushed by the kernel (fanotify)';
    if (this.watch) return 'polled: watching ended (see the log)';
    return `polled at each lookup (${this.unwatchedBecause})`;
  }

  /** What the mount shows of a node's layer object; remembered for when no path reaches it. */
  shownAttr(node: Node, a: LayerAttr): Attr {
    const attr = nodeAttr(node, a, this.opts.ids, this.opts.staticNlink);
    if (node.lastAttr && !node.inUpper && (!sameData(node.lastAttr, attr) || node.lastChange !== a.change)) {
      // The kernel drops its pages when it sees new contents: so do the open files' read-aheads.
      if (node.openCount > 0) for (const h of this.files.of(node)) h.lower?.forgetReadAhead?.();
      if (!this.kernelChecksPages && !node.isDir) void this.notifier?.invalInode(node.id);
    }
    node.lastAttr = attr;
    node.lastChange = a.change;
    return attr;
  }

  /** The entry reply for a node (counting the kernel's reference), from its layer object read since `since`. */
  entryOf(node: Node, a: LayerAttr, since?: number): EntryOut {
    return this.entry(node, this.shownAttr(node, a), since);
  }

  /** The attributes of the layer object backing a node, or null when it is gone from there. */
  async layerAttr(node: Node): Promise<LayerAttr | null> {
    if (node.inUpper) {
      const held = this.openUpperFile(node);
      if (held) return held.attr;
      const a = await this.upper.stat(node.path);
      return a && a.identity === node.upperIdentity ? a : null;
    }
    const part = node.lowers[0];
    if (!part) return null;
    const a = await this.layers.lowers[part.layer]!.stat(part);
    return a && a.identity === part.identity ? a : null;
  }

  /**
   * The upper file an open handle of the node holds, with its attributes, if it is the node's
   * upper object: fstat and fgetxattr on it answer for the node without walking its path. Only
   * on a local upper, where they return at once.
   */
  openUpperFile(node: Node): { file: DescriptorFile; attr: LayerAttr } | undefined {
    if (!node.inUpper || node.unlinked || node.openCount === 0 || !this.upper.sync) return undefined;
    for (const h of this.files.of(node)) {
      const attr = h.upperFile?.statNow();
      if (attr && attr.identity === node.upperIdentity) return { file: h.upperFile!, attr };
    }
    return undefined;
  }

  /** Attributes through an open file of the node (for nodes no path reaches any more). */
  openFileAttr(node: Node): LayerAttr | null {
    const pinned = node.pin?.statNow();
    if (pinned) return pinned;
    for (const h of this.files.of(node)) {
      const a = h.anyFile?.statNow();
      if (a) return a;
    }
    return null;
  }

  /**
   * Keeps a descriptor of an open node's object before its last name goes (unlink, rename
   * over it, or a change on the lower), so its open files can be reopened and copied up.
   */
  async pin(node: Node): Promise<void> {
    if (node.pin !== undefined || node.openCount === 0) return;
    if (node.inUpper && !node.unlinked && this.layers.upper) {
      node.pin = await this.upper.pin(node.path);
      return;
    }
    for (const h of this.files.of(node)) {
      const file = h.anyFile;
      if (file === undefined) continue;
      node.pin = file.reopenSync(fs.constants.O_RDONLY);
      return;
    }
  }

  /** The attributes shown for a node through one of its open files, with the layer object's own. */
  handleStat(h: FileHandle): { attr: Attr; layer: LayerAttr } | null {
    const a = h.anyFile?.statNow();
    return a ? { attr: this.shownAttr(h.node, a), layer: a } : null;
  }

  /** Current attributes of a node, remembered for when it can no longer be reached. */
  async attrOf(node: Node): Promise<Attr> {
    return (await this.statOf(node)).attr;
  }

  /** attrOf, with the layer object's own attributes they were made from (none when remembered). */
  async statOf(node: Node): Promise<{ attr: Attr; layer?: LayerAttr }> {
    let a: LayerAttr | null = null;
    if (!node.unlinked) a = await this.layerAttr(node);
    if (a === null) a = this.openFileAttr(node);
    if (a === null) {
      if (node.lastAttr) return { attr: { ...node.lastAttr, nlink: 0 } };
      // The object changed under its name: ESTALE makes the kernel look the path up again.
      throw new FuseError('ESTALE');
    }
    return { attr: this.shownAttr(node, a), layer: a };
  }

  entry(node: Node, attr: Attr, since?: number): EntryOut {
    node.nlookup++;
    return {
      nodeid: node.id,
      generation: this.nodes.generation,
      entryTimeout: this.timeoutFor(node, since),
      attrTimeout: this.attrTimeoutFor(node, since),
      attr,
    };
  }

  /** The entry reply for a name that is not there (`cacheable`: the upper alone decides it). */
  negative(cacheable: boolean, since?: number): EntryOut {
    if (this.opts.revalidate !== 'always') return negativeEntry(CACHE_TIMEOUT);
    return negativeEntry(cacheable || this.watch?.unchangedSince(since) ? this.opts.upperTimeout : 0);
  }

  /** `listed`: what a listing of `parent` read just now found of the name in a lower. */
  async resolve(parent: Node, name: string, listed?: Listed): Promise<Resolution> {
    if (this.opts.revalidate === 'always' && parent.inUpper && !parent.opaque && parent.lowers.length === 0 && parent.parent) {
      await this.refreshLowerDirs(parent);
    }
    return resolveChild(this.layers, this.opts.xattrs, parent, name, listed);
  }

  /**
   * An upper directory with no lower part has its entry cached by the kernel, so it is not
   * looked up again before its children are: a directory that appeared at its place in a lower
   * layer since is found here, and merged from now on.
   */
  private async refreshLowerDirs(dir: Node): Promise<void> {
    // Cheap probe first: below the nearest ancestor that has lower parts (none under an
    // opaque one), is there a lower directory at this path now?
    const names = [dir.name];
    let a = dir.parent!;
    while (a.lowers.length === 0 && !a.opaque && a.parent) {
      names.unshift(a.name);
      a = a.parent;
    }
    if (a.lowers.length === 0) return;
    const rel = names.join('/');
    let appeared = false;
    for (const part of a.lowers) {
      const attr = await this.layers.lowers[part.layer]!.stat(childPath(part.path, rel));
      if (attr && (attr.mode & S_IFMT) === 0o040000) appeared = true;
    }
    if (!appeared) return;
    const res = await resolveChild(this.layers, this.opts.xattrs, dir.parent!, dir.name);
    if (!res.positive || !res.upper || res.upper.identity !== dir.upperIdentity || res.lowers.length === 0) return;
    logRevalidate('%s: lower directories appeared below it; merging them', dir.path);
    this.nodes.setLowers(dir, toLowerParts(res.lowers));
    dir.opaque = res.opaque;
  }

  /** The node at overlay path `path`, each step bound as a lookup binds it; undefined if none. */
  async nodeAt(path: string): Promise<Node | undefined> {
    let node = this.nodes.root;
    for (const name of path.split('/')) {
      if (!node.isDir) return undefined;
      const res = await this.resolve(node, name);
      if (!res.positive) return undefined;
      node = this.bind(node, name, res).node;
    }
    return node;
  }

  /**
   * Binds a positive resolution to a node: the node already bound to the name when it is the
   * same object, the node of the same upper file under another name (a hard link), or a new one.
   */
  bind(parent: Node, name: string, res: Extract<Resolution, { positive: true }>): { node: Node; attr: LayerAttr } {
    const attr = res.upper ?? res.lowers[0]!.attr;
    const type = attr.mode & S_IFMT;
    if (res.upper && res.upper.nlink > 1 && type !== 0o040000) this.nodes.linkNames.note(res.upper.identity, parent.childPath(name));
    const existing = parent.children.get(name);
    if (existing && this.sameObject(existing, type, res)) {
      if (existing.isDir) {
        this.nodes.setLowers(existing, toLowerParts(res.lowers));
        existing.opaque = res.opaque;
      }
      this.noticeDataChange(existing, attr);
      return { node: existing, attr };
    }
    if (res.upper && !(type === 0o040000)) {
      const linked = this.nodes.findUpper(res.upper.identity);
      if (linked && !linked.unlinked) {
        this.nodes.bind(parent, name, linked);
        return { node: linked, attr };
      }
    }
    if (existing) {
      if (this.opts.revalidate === 'kernel')
        this.goStale(parent, name, existing, `changed underneath (${identityOfNode(existing)} -> ${identityOfResolution(res)})`);
      this.detach(existing, parent, name, `now ${identityOfResolution(res)}`);
    }
    const ino = res.origin ?? this.inodes.map(attr.dev, attr.ino);
    const node = this.nodes.create(parent, name, type, res.upper?.identity, toLowerParts(res.lowers), ino);
    node.opaque = res.opaque;
    if (existing) logRevalidate('%s: new node %d for %s', parent.childPath(name), node.id, identityOfResolution(res));
    return { node, attr };
  }

  /** revalidate=kernel: the name answers ESTALE from now on, as kernel overlayfs would. */
  goStale(parent: Node, name: string, node: Node, why: string): never {
    logRevalidate('%s: node %d %s: ESTALE, as kernel overlayfs answers, until the kernel drops its caches', parent.childPath(name), node.id, why);
    (parent.staleNames ??= new Set()).add(name);
    this.nodes.unbindName(node, parent, name);
    throw new FuseError('ESTALE');
  }

  /** The name no longer refers to `node`: it lives on for its open files; the kernel drops its pages. */
  private detach(node: Node, parent: Node, name: string, why: string): void {
    logRevalidate('%s: node %d (%s) detached: %s; inval_inode sent', parent.childPath(name), node.id, identityOfNode(node), why);
    // Its object is not at its path any more: pin it through the files still open on it.
    if (!node.inUpper) void this.pin(node).catch(() => undefined);
    this.nodes.unbindName(node, parent, name);
    void this.notifier?.invalInode(node.id);
  }

  /** Same object, new contents (a lower file appended to, say): the kernel's pages go. */
  private noticeDataChange(node: Node, attr: LayerAttr): void {
    const last = node.lastAttr;
    if (!last || node.isDir) return;
    if (last.size === attr.size && sameTime(last.mtime, attr.mtime) && node.lastChange === attr.change) return;
    logRevalidate('%s: node %d data changed (size %d -> %d); inval_inode sent', node.path, node.id, last.size, attr.size);
    void this.notifier?.invalInode(node.id);
  }

  /**
   * Checks a node's data against its layer, as a lock grant asks (seed 000): when it changed
   * since the kernel last saw it, the kernel's cached pages go before the caller reads.
   */
  async revalidateData(node: Node): Promise<void> {
    if (node.upperOnly || node.isDir) return;
    // Bytes read ahead before the lock was had may predate a change the lock now orders after
    // (a rewrite keeping size and mtime included): reads under the lock fetch them again.
    for (const h of this.files.of(node)) h.lower?.forgetReadAhead?.();
    const last = node.lastAttr;
    const now = node.unlinked ? this.openFileAttr(node) : await this.layerAttr(node).catch(() => null);
    if (!now || !last) return;
    if (last.size === now.size && sameTime(last.mtime, now.mtime) && sameTime(last.ctime, now.ctime) && node.lastChange === now.change) return;
    logRevalidate('%s: node %d changed before a lock grant (size %d -> %d); invalidating its pages', node.path, node.id, last.size, now.size);
    this.shownAttr(node, now);
    await this.notifier?.invalInode(node.id);
  }

  private sameObject(node: Node, type: number, res: Extract<Resolution, { positive: true }>): boolean {
    if (node.type !== type || node.unlinked) return false;
    if (res.upper) return node.upperIdentity === res.upper.identity;
    const top = res.lowers[0]!;
    return !node.inUpper && node.lowers[0]?.layer === top.layer && node.lowers[0]?.identity === top.attr.identity;
  }

  /** Looks a name up and returns its entry (counting the kernel's reference) or a negative one. */
  async lookupEntry(parent: Node, name: string): Promise<EntryOut> {
    // Whiteout files and opaque markers are bookkeeping, never entries.
    if (isPrivateName(name)) return this.negative(true);
    if (this.opts.revalidate === 'cached') {
      // As fuse-overlayfs: what was looked up once is not checked again.
      const known = parent.children.get(name);
      if (known && !known.unlinked && known.lastAttr) return this.entry(known, known.lastAttr);
      if (this.absent?.has(`${parent.id}/${name}`)) return this.negative(true);
    }
    if (parent.staleNames?.has(name)) throw new FuseError('ESTALE');
    const since = this.changeMark();
    const res = await this.resolve(parent, name);
    if (!res.positive) {
      const gone = parent.children.get(name);
      if (gone) {
        if (this.opts.revalidate === 'kernel') this.goStale(parent, name, gone, 'vanished underneath');
        this.detach(gone, parent, name, `gone (${res.reason})`);
      }
      this.absent?.set(`${parent.id}/${name}`, true);
      return this.negative(absenceCacheable(res.reason), since);
    }
    const { node, attr } = this.bind(parent, name, res);
    return this.entryOf(node, attr, since);
  }

  /** Changes made through the mount end what the daemon remembers of a name's absence. */
  forgetAbsence(parent: Node, name: string): void {
    this.absent?.delete(`${parent.id}/${name}`);
  }

  /** A positive resolution or ENOENT. */
  async existing(parent: Node, name: string): Promise<{ node: Node; attr: LayerAttr; res: Extract<Resolution, { positive: true }> }> {
    const res = await this.resolve(parent, name);
    if (!res.positive) throw new FuseError('ENOENT');
    return { ...this.bind(parent, name, res), res };
  }
}

/** Same size and mtime: what the kernel checks before it keeps a file's pages (AUTO_INVAL_DATA). */
function sameData(a: Attr, b: Attr): boolean {
  return a.size === b.size && sameTime(a.mtime, b.mtime);
}

function sameTime(a: Timespec, b: Timespec): boolean {
  return a.sec === b.sec && a.nsec === b.nsec;
}

function identityOfNode(node: Node): string {
  return node.inUpper ? `upper ${node.upperIdentity}` : node.lowers[0] ? `lower ${node.lowers[0].layer + 1} ${node.lowers[0].identity}` : 'nothing';
}

function identityOfResolution(res: Extract<Resolution, { positive: true }>): string {
  if (res.upper) return `upper ${res.upper.identity}`;
  const top = res.lowers[0]!;
  return `lower ${top.layer + 1} ${top.attr.identity}`;
}
