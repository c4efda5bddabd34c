/**
 * The node table: what each node id the kernel holds stands for. A node is one merged object:
 * its upper part (if any) lives at the node's path in the upper; its lower parts at their own
 * paths in lower layers (a renamed directory's lower parts keep their old paths).
 */
import { randomInt } from 'crypto';
import type { Attr } from '../fuse/replies';
import { childPath, type DescriptorFile } from '../layers/types';
import { S_IFDIR } from '../util/linux';
import type { SavedHandles, SavedNode } from './handle-table';
import { LinkNames } from './link-names';

/** An object in a lower layer. */
export interface LowerPart {
  /** Index into the lower layers, topmost first. */
  layer: number;
  path: string;
  identity: string;
}

/**
 * Non-directories never have children: they share one empty map, which refuses additions, so
 * a node costs no map of its own (a large tree holds far more files than directories).
 */
class NoChildren extends Map<string, Node> {
  override set(): this {
    throw new Error('a non-directory node has no children');
  }
}
const NO_CHILDREN: Map<string, Node> = new NoChildren();
/** What an identity no node shows finds (most changes a watched filesystem reports). */
const NO_NODES: readonly Node[] = Object.freeze([]);

export class Node {
  parent: Node | undefined;
  name: string;
  /** Further names of a hard-linked upper file (the primary one is parent/name). */
  links?: Array<{ parent: Node; name: string }>;
  /** Identity of the upper object at this node's path, when it has one. */
  upperIdentity: string | undefined;
  /**
   * Lower objects: for a directory, the lower directories merged below (topmost first; none
   * when opaque); for a non-directory without an upper part, the one lower object it shows.
   */
  lowers: LowerPart[];
  opaque = false;
  /** Times the kernel was handed this node (LOOKUP, CREATE, …) minus what it forgot. */
  nlookup = 0;
  openCount = 0;
  /**
   * Open handles that may write and whose writes the kernel makes itself (passthrough). A write
   * through a mapping of one moves the upper file's times with no request to the daemon, so
   * while there are any, the kernel is not let keep the node's attributes (see attrTimeoutFor).
   */
  kernelWriters = 0;
  /**
   * The kernel was handed this node's attributes to keep for longer than a tick since they were
   * last dropped (see attrTimeoutFor): a close by a kernel writer must then drop them.
   */
  attrsKeptLong = false;
  /** Removed from the namespace while still open or known to the kernel. */
  unlinked = false;
  /** An O_TMPFILE file not named yet, which a link may name (it is unlinked meanwhile). */
  linkable = false;
  /** What was last reported, for nodes that can no longer be reached by path. */
  lastAttr?: Attr;
  /** The layer's change counter (NFSv4) when lastAttr was shown: moves where size and times may not. */
  lastChange?: string;
  /**
   * The lower file the kernel's cached pages of this node were read from (identity, size,
   * mtime, ctime as the open that let them in found it): an open finding the same keeps them.
   */
  pagesFrom?: string;
  /** The copy-up in progress, so concurrent writers wait for one copy. */
  copyingUp?: Promise<void>;
  /**
   * A descriptor of the node's object, kept while files are open on a node no name reaches
   * any more, so they can still be reopened (/proc/PID/fd/N) and copied up.
   */
  pin?: DescriptorFile;
  /** Children the kernel knows by name (directories only). */
  readonly children: Map<string, Node>;
  /**
   * revalidate=kernel: names whose lower object changed while cached. They answer ESTALE, as
   * kernel overlayfs does, until the kernel drops this directory from its caches.
   */
  staleNames?: Set<string>;

  constructor(
    readonly id: number,
    parent: Node | undefined,
    name: string,
    readonly type: number,
    upperIdentity: string | undefined,
    lowers: LowerPart[],
    /** st_ino shown for this node; stable for the object. */
    readonly ino: number,
  ) {
    this.parent = parent;
    this.name = name;
    this.upperIdentity = upperIdentity;
    this.lowers = lowers;
    this.children = type === S_IFDIR ? new Map() : NO_CHILDREN;
  }

  get isDir(): boolean {
    return this.type === S_IFDIR;
  }

  get inUpper(): boolean {
    return this.upperIdentity !== undefined;
  }

  /** A directory showing lower contents (possibly merged with an upper part). */
  get hasLowerDirs(): boolean {
    return this.isDir && this.lowers.length > 0;
  }

  /** Nothing here depends on a lower layer: every change to it goes through this daemon. */
  get upperOnly(): boolean {
    return this.inUpper && (!this.isDir || this.lowers.length === 0 || this.opaque);
  }

  /** The overlay path (and the upper path), relative to the mount root. */
  get path(): string {
    if (!this.parent) return '';
    const names = [this.name];
    for (let n = this.parent; n.parent; n = n.parent) names.push(n.name);
    return names.reverse().join('/');
  }

  childPath(name: string): string {
    return childPath(this.path, name);
  }

  /** Where this directory's child `name` is looked up in lower layer `layer`, if anywhere. */
  lowerDirIn(layer: number): LowerPart | undefined {
    return this.lowers.find((l) => l.layer === layer);
  }
}

/**
 * Where a forgotten node was, as its parent's id and its name (the parent's path is the one it
 * has now, or had when forgotten in turn: a directory renamed takes the paths below it along),
 * and the identity of the object it showed.
 */
export interface ForgottenNode {
  parent: number;
  name: string;
  identity: string;
}

/** Directory levels followed up through forgotten nodes at most (see pathOf). */
const MAX_DEPTH = 4096;

/** Forgotten nodes remembered for file handles: some 150 bytes each. */
const FORGOTTEN_KEPT = 65536;

export class NodeTable {
  private readonly byId = new Map<number, Node>();
  /** Non-directory upper objects by identity: hard links share one node. */
  private readonly byUpperIdentity = new Map<string, Node>();
  /**
   * Nodes by the identity of each lower object they show, kept while the lowers are watched
   * (a change reported by identity finds its nodes here). One node, or several (a directory
   * merged from two layers on one filesystem, hard links).
   */
  private byLowerIdentity?: Map<string, Node | Node[]>;
  private nextId = 2;
  /** Nodes the kernel forgot, most recent last, FORGOTTEN_KEPT at most (see recall). */
  private readonly forgotten = new Map<number, ForgottenNode>();
  /** The same by the identity of the object shown. */
  private readonly forgottenShowing = new Map<string, number>();
  readonly root: Node;
  /**
   * The generation every node id of this mount goes with (in the kernel's file handles): ids
   * start again at 2 in each mount, so a handle made in another names an object of this one by
   * id alone; by generation, it is stale.
   */
  generation = randomInt(1, 2 ** 32);
  /** The names seen of hard-linked upper files, outliving their nodes. */
  readonly linkNames = new LinkNames();
  /** Told when a node loses its last name or is dropped (what is kept for it can go). */
  onGone?: (node: Node) => void;

  constructor(rootUpperIdentity: string | undefined, rootLowers: LowerPart[], rootIno: number) {
    this.root = new Node(1, undefined, '', S_IFDIR, rootUpperIdentity, rootLowers, rootIno);
    this.root.nlookup = 1;
    this.byId.set(1, this.root);
  }

  get size(): number {
    return this.byId.size;
  }

  get(id: number): Node | undefined {
    return this.byId.get(id);
  }

  /** A node for an upper non-directory already known under another name (a hard link). */
  findUpper(identity: string): Node | undefined {
    return this.byUpperIdentity.get(identity);
  }

  /** Every node, the root first. */
  all(): IterableIterator<Node> {
    return this.byId.values();
  }

  create(parent: Node, name: string, type: number, upperIdentity: string | undefined, lowers: LowerPart[], ino: number): Node {
    // The object the kernel forgot takes its id back: file handles of it keep working.
    const shown = upperIdentity ?? lowers[0]?.identity;
    const id = (shown === undefined ? undefined : this.forgottenShowing.get(shown)) ?? this.nextId++;
    this.forget1(id);
    const node = new Node(id, parent, name, type, upperIdentity, lowers, ino);
    this.byId.set(node.id, node);
    this.indexLowers(node);
    if (upperIdentity !== undefined && type !== S_IFDIR) this.byUpperIdentity.set(upperIdentity, node);
    this.bind(parent, name, node);
    return node;
  }

  /** Makes `name` in `parent` refer to `node` (the node that was there is unbound). */
  bind(parent: Node, name: string, node: Node): void {
    const previous = parent.children.get(name);
    if (previous && previous !== node) this.unbindName(previous, parent, name);
    parent.children.set(name, node);
    if (node.parent === parent && node.name === name) return;
    if (node.parent && node.parent.children.get(node.name) === node && !node.isDir && node.inUpper) {
      // A second name of the same upper file.
      (node.links ??= []).push({ parent, name });
      this.linkNames.note(node.upperIdentity!, node.path);
      this.linkNames.note(node.upperIdentity!, parent.childPath(name));
      return;
    }
    node.parent = parent;
    node.name = name;
  }

  /** Starts (or stops) keeping nodes findable by their lower objects' identities. */
  keepLowerIndex(on: boolean): void {
    if (!on) {
      this.byLowerIdentity = undefined;
      return;
    }
    if (this.byLowerIdentity) return;
    this.byLowerIdentity = new Map();
    for (const node of this.byId.values()) this.indexLowers(node);
  }

  /** The nodes showing the lower object `identity` (while the index is kept). */
  withLower(identity: string): readonly Node[] {
    const found = this.byLowerIdentity?.get(identity);
    return found === undefined ? NO_NODES : Array.isArray(found) ? found : [found];
  }

  /** A directory's lower parts, as a new lookup found them. */
  setLowers(node: Node, lowers: LowerPart[]): void {
    if (this.byLowerIdentity && !sameIdentities(node.lowers, lowers)) {
      this.unindexLowers(node);
      node.lowers = lowers;
      this.indexLowers(node);
    } else {
      node.lowers = lowers;
    }
  }

  private indexLowers(node: Node): void {
    const index = this.byLowerIdentity;
    if (!index) return;
    for (const { identity } of node.lowers) {
      const found = index.get(identity);
      if (found === undefined) index.set(identity, node);
      else if (Array.isArray(found)) {
        if (!found.includes(node)) found.push(node);
      } else if (found !== node) index.set(identity, [found, node]);
    }
  }

  private unindexLowers(node: Node): void {
    const index = this.byLowerIdentity;
    if (!index) return;
    for (const { identity } of node.lowers) {
      const found = index.get(identity);
      if (found === node) index.delete(identity);
      else if (Array.isArray(found)) {
        const rest = found.filter((n) => n !== node);
        if (rest.length === 0) index.delete(identity);
        else index.set(identity, rest.length === 1 ? rest[0]! : rest);
      }
    }
  }

  /** Records that the upper object of `node` now has `identity` (after a copy-up or create). */
  setUpper(node: Node, identity: string): void {
    if (node.upperIdentity !== undefined) this.byUpperIdentity.delete(node.upperIdentity);
    node.upperIdentity = identity;
    if (!node.isDir) this.byUpperIdentity.set(identity, node);
  }

  /**
   * `name` in `parent` no longer refers to `node`. When it was the node's last name, the node
   * is unlinked: it lives on for open files and the kernel's references, reachable by id only.
   */
  unbindName(node: Node, parent: Node, name: string): void {
    if (parent.children.get(name) === node) parent.children.delete(name);
    if (!node.isDir && node.upperIdentity !== undefined) this.linkNames.removed(node.upperIdentity, parent.childPath(name));
    if (node.parent === parent && node.name === name) {
      const next = node.links?.shift();
      if (next) {
        node.parent = next.parent;
        node.name = next.name;
      } else {
        node.unlinked = true;
        this.onGone?.(node);
        if (node.upperIdentity !== undefined && this.byUpperIdentity.get(node.upperIdentity) === node) {
          this.byUpperIdentity.delete(node.upperIdentity);
          this.linkNames.gone(node.upperIdentity);
        }
      }
    } else if (node.links) {
      node.links = node.links.filter((l) => !(l.parent === parent && l.name === name));
    }
  }

  /** Moves a node to a new name (rename), keeping its id. */
  move(node: Node, fromParent: Node, fromName: string, toParent: Node, toName: string): void {
    if (fromParent.children.get(fromName) === node) fromParent.children.delete(fromName);
    const displaced = toParent.children.get(toName);
    if (displaced && displaced !== node) this.unbindName(displaced, toParent, toName);
    toParent.children.set(toName, node);
    if (!node.isDir && node.upperIdentity !== undefined) this.linkNames.moved(node.upperIdentity, fromParent.childPath(fromName), toParent.childPath(toName));
    if (node.parent === fromParent && node.name === fromName) {
      node.parent = toParent;
      node.name = toName;
    } else if (node.links) {
      for (const l of node.links) if (l.parent === fromParent && l.name === fromName) Object.assign(l, { parent: toParent, name: toName });
    }
  }

  /** The kernel dropped `count` references; a node nobody holds any more is removed. */
  forget(id: number, count: number): void {
    const node = this.byId.get(id);
    if (!node || node === this.root) return;
    node.nlookup -= count;
    if (node.nlookup > 0 || node.openCount > 0) return;
    this.drop(node);
  }

  /** Called when the last open file of a node closes. */
  released(node: Node): void {
    if (node.nlookup <= 0 && node.openCount <= 0 && node !== this.root) this.drop(node);
  }

  /**
   * Where a node the kernel forgot was, and what it showed: a file handle (name_to_handle_at,
   * an NFS export of the mount) names it by id after the kernel dropped it (see export.ts).
   */
  recall(id: number): ForgottenNode | undefined {
    return this.forgotten.get(id);
  }

  /** The overlay path of node `id`, live or forgotten; undefined when it has none (unlinked, or not remembered). */
  pathOf(id: number): string | undefined {
    const names: string[] = [];
    for (let at = id, depth = 0; at !== this.root.id; depth++) {
      const live = this.byId.get(at);
      if (live) {
        if (live.unlinked) return undefined;
        names.push(live.path);
        break;
      }
      const f = this.forgotten.get(at);
      if (!f || depth > MAX_DEPTH) return undefined;
      names.push(f.name);
      at = f.parent;
    }
    return names.reverse().join('/');
  }

  /** Every id the kernel may hold a file handle of: live nodes' and forgotten ones' (see handle-table.ts). */
  handles(): SavedHandles {
    const nodes: SavedNode[] = [];
    for (const [id, f] of this.forgotten) nodes.push([id, f.parent, f.name, f.identity]);
    for (const node of this.byId.values()) {
      const identity = node.upperIdentity ?? node.lowers[0]?.identity;
      if (node.parent && !node.unlinked && identity !== undefined) nodes.push([node.id, node.parent.id, node.name, identity]);
    }
    return { generation: this.generation, nextId: this.nextId, nodes };
  }

  /** Takes the ids of an earlier mount's handles (`saved`) as forgotten nodes; before any lookup. */
  restoreHandles(saved: SavedHandles): void {
    if (this.byId.size > 1 || this.nextId !== 2) throw new Error('handles are restored into a fresh node table only');
    this.generation = saved.generation;
    this.nextId = saved.nextId;
    for (const [id, parent, name, identity] of saved.nodes) {
      this.forget1(id);
      this.forgotten.set(id, { parent, name, identity });
      this.forgottenShowing.set(identity, id);
    }
  }

  private forget1(id: number): void {
    const f = this.forgotten.get(id);
    if (!f) return;
    this.forgotten.delete(id);
    if (this.forgottenShowing.get(f.identity) === id) this.forgottenShowing.delete(f.identity);
  }

  private drop(node: Node): void {
    this.byId.delete(node.id);
    if (!node.unlinked) {
      const identity = node.upperIdentity ?? node.lowers[0]?.identity;
      if (identity !== undefined && node.parent) {
        this.forgotten.set(node.id, { parent: node.parent.id, name: node.name, identity });
        this.forgottenShowing.set(identity, node.id);
      }
      for (const id of this.forgotten.keys()) {
        if (this.forgotten.size <= FORGOTTEN_KEPT) break;
        this.forget1(id);
      }
    }
    this.onGone?.(node);
    this.unindexLowers(node);
    if (node.parent && node.parent.children.get(node.name) === node) node.parent.children.delete(node.name);
    for (const l of node.links ?? []) if (l.parent.children.get(l.name) === node) l.parent.children.delete(l.name);
    if (node.upperIdentity !== undefined && this.byUpperIdentity.get(node.upperIdentity) === node) {
      this.byUpperIdentity.delete(node.upperIdentity);
    }
    // Its children's parent pointer keeps this node reachable for their paths; nothing else.
  }
}

function sameIdentities(a: readonly LowerPart[], b: readonly LowerPart[]): boolean {
  return a.length === b.length && a.every((p, i) => p.identity === b[i]!.identity);
}
