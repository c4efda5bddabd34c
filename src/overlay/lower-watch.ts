/**
 * Lower changes pushed instead of polled: while every lower layer reports its changes (see
 * ReadableLayer.watch), the kernel may keep entries and attributes that depend on the lowers
 * as long as those that depend on the upper alone, and each reported change invalidates
 * exactly the kernel entries and inodes it touches. Changes that were lost invalidate
 * everything (FUSE_NOTIFY_INC_EPOCH for the entries, negative ones included, and every inode).
 *
 * Invariant: a reply may let the kernel keep something long only if no change was reported
 * between the start of the layer reads it was built from and the reply (`since`). A change
 * reported in that window was applied before the kernel held the entry, so its invalidation
 * found nothing to drop; such replies get the short lower timeout instead.
 */
import createDebug from 'debug';
import type { LayerChange, LayerWatch, ReadableLayer } from '../layers/types';
import { OPAQUE_MARKER, WHITEOUT_PREFIX } from './format';
import type { Node, NodeTable } from './nodes';

const log = createDebug('ovshift:watch');

/** What the kernel is told; never awaited in a request's path. */
export interface Invalidations {
  invalInode(nodeid: number): Promise<void>;
  /** Drops the kernel's cached attributes of a node (its pages stay). */
  invalAttrs(nodeid: number): Promise<void>;
  invalEntry(parent: number, name: string): Promise<void>;
  /** Every dentry of the mount is to be looked up again. */
  incEpoch(): Promise<void>;
}

export class LowerWatch {
  /** Counts the batches of changes applied; a reply compares it with the count at its start. */
  private epoch = 0;
  private active = true;

  private constructor(
    private readonly nodes: NodeTable,
    private readonly kernel: Invalidations,
    private readonly subscriptions: LayerWatch[],
  ) {}

  /** Watches every lower layer, or none: then says why (the first layer that cannot be watched). */
  static start(lowers: readonly ReadableLayer[], nodes: NodeTable, kernel: Invalidations): LowerWatch | string {
    const subscriptions: LayerWatch[] = [];
    const onChanges = (changes: LayerChange[]): void => watch.apply(changes);
    const watch = new LowerWatch(nodes, kernel, subscriptions);
    for (const layer of lowers) {
      const res = layer.watch ? layer.watch(onChanges) : 'its changes are not reported';
      if (typeof res === 'string') {
        for (const s of subscriptions) s.close();
        return `${layer.label}: ${res}`;
      }
      subscriptions.push(res);
    }
    nodes.keepLowerIndex(true);
    return watch;
  }

  /** A mark to take before reading the layers for a reply (see `unchangedSince`). */
  get mark(): number {
    return this.epoch;
  }

  /** Whether what was read since `mark` was taken can be kept by the kernel until a change is reported. */
  unchangedSince(mark: number | undefined): boolean {
    return this.active && mark === this.epoch;
  }

  get watching(): boolean {
    return this.active;
  }

  /** Stops watching (the mount ends, or the watcher failed); idempotent. */
  close(): void {
    if (!this.active) return;
    this.active = false;
    for (const s of this.subscriptions) s.close();
    this.nodes.keepLowerIndex(false);
  }

  private apply(changes: LayerChange[]): void {
    this.epoch++;
    const inodes = new Set<Node>();
    const entries = new Map<number, Set<string>>();
    const entry = (dir: Node, name: string): void => {
      let names = entries.get(dir.id);
      if (!names) entries.set(dir.id, (names = new Set()));
      names.add(name);
    };
    for (const change of changes) {
      switch (change.kind) {
        case 'entry':
          for (const dir of this.nodes.withLower(change.dir)) {
            if (!dir.isDir) continue;
            inodes.add(dir);
            this.entryChanged(dir, change.name, entry, inodes);
          }
          break;
        case 'object':
          for (const node of this.nodes.withLower(change.identity)) {
            inodes.add(node);
            // Attributes a layer object shows may decide what its name shows (overlay xattrs).
            if (change.meta && node.parent) entry(node.parent, node.name);
          }
          break;
        case 'lost':
          this.invalidateAll();
          return;
        case 'unwatched':
          log('the lowers are no longer watched: lookups ask them again every time');
          this.close();
          this.invalidateAll();
          return;
      }
    }
    // A directory's listing may be cached by the kernel (FOPEN_CACHE_DIR), filled by a READDIR
    // whose reply is parsed under the directory's lock. An entry invalidation takes that lock:
    // sent first, it waits for such a READDIR to finish, and the inode invalidation after it
    // then drops what it cached. (The notifier writes in order.)
    for (const node of inodes) if (node.isDir && !entries.has(node.id)) entry(node, OPAQUE_MARKER);
    for (const [dir, names] of entries) for (const name of names) void this.kernel.invalEntry(dir, name);
    for (const node of inodes) void this.kernel.invalInode(node.id);
    // Only changes that touched the mount are logged: a log file on a watched filesystem must
    // not report its own growth.
    if (log.enabled && inodes.size > 0)
      log(
        '%d changes: %d entries, %d inodes invalidated',
        changes.length,
        [...entries.values()].reduce((n, s) => n + s.size, 0),
        inodes.size,
      );
  }

  /** A name in one of `dir`'s lower directories changed: its entry goes, and what it may hide. */
  private entryChanged(dir: Node, name: string, entry: (dir: Node, name: string) => void, inodes: Set<Node>): void {
    entry(dir, name);
    const child = dir.children.get(name);
    if (child) inodes.add(child);
    if (name === OPAQUE_MARKER) {
      // The whole directory's merge changed: its own entry goes, and with it all below.
      if (dir.parent) entry(dir.parent, dir.name);
    } else if (name.startsWith(WHITEOUT_PREFIX)) {
      entry(dir, name.slice(WHITEOUT_PREFIX.length));
    }
  }

  private invalidateAll(): void {
    log('invalidating every entry and inode of the mount');
    void this.kernel.incEpoch();
    // Each directory's barrier first (see apply).
    for (const node of this.nodes.all()) if (node.isDir) void this.kernel.invalEntry(node.id, OPAQUE_MARKER);
    for (const node of this.nodes.all()) void this.kernel.invalInode(node.id);
  }
}
