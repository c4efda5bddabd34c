/**
 * State shared by the overlay's operations: layers, node table, handles, copy-up, and the
 * helpers that turn a node into attributes, entries and paths.
 */
import createDebug from 'debug';
import { FuseError } from '../fuse/errors';
import type { Attr, EntryOut } from '../fuse/replies';
import type { UpperDir } from '../layers/upper-dir';
import type { LayerAttr } from '../layers/types';
import { attrFromArray } from '../layers/dir-layer';
import { native, STATX_FIELDS } from '../native';
import { nodeAttr } from './attrs';
import { CopyUp } from './copy-up';
import { DirHandle, type FileHandle, HandleTable } from './handles';
import { InodeNumbers } from './inodes';
import { Node, NodeTable, S_IFMT } from './nodes';
import type { OverlayOptions } from './options';
import { absenceCacheable, resolveChild, toLowerParts, type Layers, type Resolution } from './resolve';

const log = createDebug('ovshift:overlay');

export const NAME_MAX = 255;

export class OverlayCore {
  readonly nodes: NodeTable;
  readonly inodes = new InodeNumbers();
  readonly files = new HandleTable<FileHandle>();
  readonly dirs = new HandleTable<DirHandle>();
  readonly copyUp?: CopyUp;

  constructor(readonly layers: Layers, readonly opts: OverlayOptions, root: { upper?: LayerAttr; lowers: LayerAttr[] }) {
    if (root.upper) this.inodes.register(root.upper.dev);
    for (const l of root.lowers) this.inodes.register(l.dev);
    const top = root.upper ?? root.lowers[0]!;
    this.nodes = new NodeTable(
      root.upper?.identity,
      root.lowers.map((a, i) => ({ layer: i, path: '', identity: a.identity })),
      this.inodes.map(top.dev, top.ino),
    );
    if (layers.upper) this.copyUp = new CopyUp(layers, layers.upper, opts.xattrs, this.nodes);
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

  static checkName(name: Buffer): string {
    if (name.length > NAME_MAX) throw new FuseError('ENAMETOOLONG');
    return name.toString('latin1');
  }

  /** Kernel cache timeout for a node's entry and attributes. */
  timeoutFor(node: Node): number {
    return node.upperOnly ? this.opts.upperTimeout : 0;
  }

  /** The attributes of the layer object backing a node, or null when it is gone from there. */
  async layerAttr(node: Node): Promise<LayerAttr | null> {
    if (node.inUpper) {
      const a = await this.upper.stat(node.path);
      return a && a.identity === node.upperIdentity ? a : null;
    }
    const part = node.lowers[0];
    if (!part) return null;
    const a = await this.layers.lowers[part.layer]!.stat(part.path);
    return a && a.identity === part.identity ? a : null;
  }

  /** Attributes through an open file of the node (for nodes no path reaches any more). */
  openFileAttr(node: Node): LayerAttr | null {
    for (const h of this.files.of(node)) {
      const a = fdAttr(h.anyFd);
      if (a) return a;
    }
    return null;
  }

  /** The attributes shown for a node through one of its open files. */
  handleAttr(h: FileHandle): Attr | null {
    const a = fdAttr(h.anyFd);
    if (!a) return null;
    const attr = nodeAttr(h.node, a);
    h.node.lastAttr = attr;
    return attr;
  }

  /** Current attributes of a node, remembered for when it can no longer be reached. */
  async attrOf(node: Node): Promise<Attr> {
    let a: LayerAttr | null = null;
    if (!node.unlinked) a = await this.layerAttr(node);
    if (a === null) a = this.openFileAttr(node);
    if (a === null) {
      if (node.lastAttr) return { ...node.lastAttr, nlink: 0 };
      // The object changed under its name: ESTALE makes the kernel look the path up again.
      throw new FuseError('ESTALE');
    }
    const attr = nodeAttr(node, a);
    node.lastAttr = attr;
    return attr;
  }

  entry(node: Node, attr: Attr): EntryOut {
    node.nlookup++;
    const timeout = this.timeoutFor(node);
    return { nodeid: node.id, generation: 1, entryTimeout: timeout, attrTimeout: timeout, attr };
  }

  /** The entry reply for a name that is not there. */
  negative(cacheable: boolean): EntryOut {
    return {
      nodeid: 0, generation: 0, entryTimeout: cacheable ? this.opts.upperTimeout : 0, attrTimeout: 0,
      attr: {
        ino: 0, size: 0, blocks: 0, atime: ZERO, mtime: ZERO, ctime: ZERO, mode: 0, nlink: 0, uid: 0, gid: 0, rdev: 0, blksize: 0,
      },
    };
  }

  resolve(parent: Node, name: string): Promise<Resolution> {
    return resolveChild(this.layers, this.opts.xattrs, parent, name);
  }

  /**
   * Binds a positive resolution to a node: the node already bound to the name when it is the
   * same object, the node of the same upper file under another name (a hard link), or a new one.
   */
  bind(parent: Node, name: string, res: Extract<Resolution, { positive: true }>): { node: Node; attr: LayerAttr } {
    const attr = res.upper ?? res.lowers[0]!.attr;
    const type = attr.mode & S_IFMT;
    const existing = parent.children.get(name);
    if (existing && this.sameObject(existing, type, res)) {
      if (existing.isDir) {
        existing.lowers = toLowerParts(res.lowers);
        existing.opaque = res.opaque;
      }
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
      log('%s now names another object; node %d detached', parent.childPath(name), existing.id);
      this.nodes.unbindName(existing, parent, name);
    }
    const ino = res.origin ?? this.inodes.map(attr.dev, attr.ino);
    const node = this.nodes.create(parent, name, type, res.upper?.identity, toLowerParts(res.lowers), ino);
    node.opaque = res.opaque;
    return { node, attr };
  }

  private sameObject(node: Node, type: number, res: Extract<Resolution, { positive: true }>): boolean {
    if (node.type !== type || node.unlinked) return false;
    if (res.upper) return node.upperIdentity === res.upper.identity;
    const top = res.lowers[0]!;
    return !node.inUpper && node.lowers[0]?.layer === top.layer && node.lowers[0]?.identity === top.attr.identity;
  }

  /** Looks a name up and returns its entry (counting the kernel's reference) or a negative one. */
  async lookupEntry(parent: Node, name: string): Promise<EntryOut> {
    const res = await this.resolve(parent, name);
    if (!res.positive) {
      const gone = parent.children.get(name);
      if (gone) this.nodes.unbindName(gone, parent, name);
      return this.negative(absenceCacheable(res.reason));
    }
    const { node, attr } = this.bind(parent, name, res);
    const shown = nodeAttr(node, attr);
    node.lastAttr = shown;
    return this.entry(node, shown);
  }

  /** A positive resolution or ENOENT. */
  async existing(parent: Node, name: string): Promise<{ node: Node; attr: LayerAttr; res: Extract<Resolution, { positive: true }> }> {
    const res = await this.resolve(parent, name);
    if (!res.positive) throw new FuseError('ENOENT');
    return { ...this.bind(parent, name, res), res };
  }
}

const ZERO = { sec: 0, nsec: 0 };

function fdAttr(fd: number | undefined): LayerAttr | null {
  if (fd === undefined) return null;
  const out = new Float64Array(STATX_FIELDS);
  return native.fstatxSync(fd, out) === 0 ? attrFromArray(out) : null;
}
