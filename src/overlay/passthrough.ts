/**
 * FUSE passthrough for files whose data lives in the upper: the kernel reads and writes the
 * upper file itself, with no round trip through the daemon.
 *
 * Only upper files: a lower file may be copied up while open, and every handle must then see
 * the copy, which a backing file fixed at open cannot do. An upper file never moves again.
 *
 * Invariants the kernel imposes: one backing file per inode, and no passthrough open next to a
 * caching one. So a node's open handles are either all passthrough, sharing one registered
 * backing file, or all served by the daemon; the choice is made synchronously when an open
 * starts, so concurrent opens of a node never disagree.
 *
 * A backing file outlives its last open for a while (the most recent IDLE_BACKINGS of them):
 * a file opened again and again (a build's outputs, a log) then costs no open(), no
 * registration and no close() in the daemon. One whose node loses its last name or is
 * forgotten is closed at once, so a removed file's space is never held.
 */
import { constants as K } from 'fs';
import createDebug from 'debug';
import type { BackingFiles } from '../fuse/handler';
import type { DescriptorFile } from '../layers/types';
import type { UpperDir } from '../layers/upper-dir';
import { errnoName } from '../util/errno';
import type { Node } from './nodes';
import { S_ISGID, S_ISUID } from '../util/linux';

const log = createDebug('ovshift:passthrough');

/** Backing files kept registered after their last open closed. */
const IDLE_BACKINGS = 256;

interface Backing {
  id: number;
  file: DescriptorFile;
}

interface NodeOpens {
  passthrough: number;
  cached: number;
  /** Registered with the kernel by the first passthrough open; undefined if that failed. */
  backing?: Promise<Backing | undefined>;
}

/** How one open is served: `backingId` set means the kernel does its reads and writes. */
export interface OpenMode {
  readonly backingId?: number;
  /** Call once when the handle is released (or its open failed). */
  done(): void;
}

export class Passthrough {
  private readonly opens = new Map<Node, NodeOpens>();
  /** Backing files no open uses, least recently used first. */
  private readonly idle = new Map<Node, Backing>();
  /** Set when the kernel refused a backing file for a reason that holds for every file. */
  private disabled = false;
  /** Set once the mount is gone: its backing ids mean nothing any more (the device may be reused). */
  private closed = false;

  constructor(
    private readonly kernel: BackingFiles,
    private readonly upper: UpperDir,
  ) {}

  /** Files whose open handles the kernel serves itself now. */
  get activeFiles(): number {
    let n = 0;
    for (const s of this.opens.values()) if (s.passthrough > 0) n++;
    return n;
  }

  /** Decides how a new open of `node` is served; the node must be settled (copied up or not). */
  async begin(node: Node): Promise<OpenMode> {
    let state = this.opens.get(node);
    if (!state) this.opens.set(node, (state = { passthrough: 0, cached: 0 }));
    const s = state;
    const wantsPassthrough = s.passthrough > 0 || (s.cached === 0 && !this.disabled && node.inUpper && !node.unlinked);
    if (!wantsPassthrough) return this.cached(node, s);
    s.passthrough++;
    s.backing ??= this.reuse(node) ?? this.register(node);
    const backing = await s.backing;
    if (backing) return { backingId: backing.id, done: once(() => this.endPassthrough(node, s)) };
    // Registration failed: this open, and any that waited on it, are served by the daemon.
    s.passthrough--;
    if (s.passthrough === 0) s.backing = undefined;
    return this.cached(node, s);
  }

  private cached(node: Node, s: NodeOpens): OpenMode {
    s.cached++;
    return {
      done: once(() => {
        s.cached--;
        this.forgetIfIdle(node, s);
      }),
    };
  }

  private endPassthrough(node: Node, s: NodeOpens): void {
    s.passthrough--;
    if (s.passthrough > 0) return;
    const backing = s.backing;
    s.backing = undefined;
    void backing?.then((b) => {
      if (b) this.park(node, b);
    });
    this.forgetIfIdle(node, s);
  }

  /** Keeps a backing file no open uses any more, for the node's next open. */
  private park(node: Node, b: Backing): void {
    if (this.closed) {
      b.file.closeSync();
      return;
    }
    if (!node.inUpper || node.unlinked) {
      this.unregister(node, b);
      return;
    }
    // A backing file registered meanwhile by a new open (while this one was being let go).
    const displaced = this.idle.get(node);
    if (displaced && displaced !== b) this.unregister(node, displaced);
    this.idle.delete(node);
    this.idle.set(node, b);
    for (const [oldest, ob] of this.idle) {
      if (this.idle.size <= IDLE_BACKINGS) break;
      this.idle.delete(oldest);
      this.unregister(oldest, ob);
    }
  }

  /** The node's idle backing file, if it may still back it (its mode may have changed since). */
  private reuse(node: Node): Promise<Backing> | undefined {
    const b = this.idle.get(node);
    if (!b) return undefined;
    this.idle.delete(node);
    if (!mayBack(b.file.statNow()?.mode)) {
      this.unregister(node, b);
      return undefined;
    }
    return Promise.resolve(b);
  }

  /** The node lost its last name or was forgotten: its idle backing file goes now. */
  forget(node: Node): void {
    const b = this.idle.get(node);
    if (!b) return;
    this.idle.delete(node);
    this.unregister(node, b);
  }

  /**
   * The mount is gone: closes every idle backing file, and from now on each one its last open
   * lets go (not unregistered: the connection that knew the ids is gone).
   */
  close(): void {
    this.closed = true;
    for (const b of this.idle.values()) b.file.closeSync();
    this.idle.clear();
  }

  private unregister(node: Node, b: Backing): void {
    const res = this.kernel.close(b.id);
    if (res < 0) log('closing backing file %d of %s: %s', b.id, node.path, errnoName(res));
    b.file.closeSync();
  }

  private forgetIfIdle(node: Node, s: NodeOpens): void {
    if (s.passthrough === 0 && s.cached === 0 && this.opens.get(node) === s) this.opens.delete(node);
  }

  private async register(node: Node): Promise<Backing | undefined> {
    let file: DescriptorFile;
    try {
      // Read-write whatever this open asked for: later opens of the node share the file.
      file = await this.upper.openFile(this.upper.loc(node.path), K.O_RDWR | K.O_NOFOLLOW);
    } catch (err) {
      log('%s stays with the daemon: %s', node.path, (err as Error).message);
      return undefined;
    }
    // The path may lead elsewhere by now (a rename while the open ran, on a remote upper).
    const attr = file.statNow();
    if (!attr || attr.identity !== node.upperIdentity) {
      file.closeSync();
      log('%s stays with the daemon: its path leads to another file now', node.path);
      return undefined;
    }
    if (!mayBack(attr.mode)) {
      file.closeSync();
      log('%s stays with the daemon: set-user-ID or set-group-ID', node.path);
      return undefined;
    }
    const id = this.kernel.open(file.fd);
    if (id >= 0) {
      log('%s: backing file %d', node.path, id);
      return { id, file };
    }
    file.closeSync();
    // EPERM: not root of the initial user namespace. EOPNOTSUPP/ELOOP: the upper cannot back
    // a FUSE file (e.g. it is itself stacked too deep). Neither changes from file to file.
    const name = errnoName(id);
    if (name === 'EPERM' || name === 'EOPNOTSUPP' || name === 'ELOOP' || name === 'ENOTTY') {
      this.disabled = true;
      log('passthrough off for this mount: the kernel answered %s', name);
    } else {
      log('%s stays with the daemon: backing open answered %s', node.path, name);
    }
    return undefined;
  }
}

/**
 * A write through the kernel would leave set-user-ID and set-group-ID in place, where a write
 * by another user must clear them (the daemon does so on WRITE; set-group-ID without group
 * execute too, for a writer outside the file's group): such files stay with it.
 */
function mayBack(mode: number | undefined): boolean {
  return mode !== undefined && !(mode & (S_ISUID | S_ISGID));
}

function once(fn: () => void): () => void {
  let called = false;
  return () => {
    if (called) return;
    called = true;
    fn();
  };
}
