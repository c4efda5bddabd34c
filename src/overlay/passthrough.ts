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
  /** Set when the kernel refused a backing file for a reason that holds for every file. */
  private disabled = false;

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
    s.backing ??= this.register(node);
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
      if (!b) return;
      const res = this.kernel.close(b.id);
      if (res < 0) log('closing backing file %d of %s: %s', b.id, node.path, errnoName(res));
      b.file.closeSync();
    });
    this.forgetIfIdle(node, s);
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
    // A write through the kernel would leave set-user-ID and set-group-ID in place, where a
    // write by another user must clear them (the daemon does so on WRITE).
    const mode = file.modeSync();
    if (mode & S_ISUID || (mode & S_ISGID && mode & K.S_IXGRP)) {
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

function once(fn: () => void): () => void {
  let called = false;
  return () => {
    if (called) return;
    called = true;
    fn();
  };
}
