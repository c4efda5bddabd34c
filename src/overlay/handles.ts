/** Open files and directories, by the fh handed to the kernel. */
import * as fs from 'fs';
import { localFileOf } from '../layers/fd-io';
import type { DescriptorFile, LayerFile } from '../layers/types';
import type { Node } from './nodes';
import type { Listed } from './resolve';
import type { OpenMode } from './passthrough';
import { O_ACCMODE } from '../util/linux';

/** The access-mode bits of open flags (Node's fs.constants lacks the mask). */

export interface ListedEntry {
  name: string;
  type: number;
  ino: number;
  /** What the topmost lower listing it came from said of it, if it said (and it came from a lower). */
  listed?: Listed;
}

export class FileHandle {
  /** The lower file read while the node has no upper part. */
  lower?: LayerFile;
  /** The upper file, opened at open or on first use after a copy-up. */
  upperFile?: DescriptorFile;
  upperWritable = false;
  /** How the kernel serves this handle (passthrough or through the daemon), once open. */
  mode?: OpenMode;
  /** The kernel may keep the node's cached pages: the lower file is unchanged since they were read. */
  keepPages = false;
  /** Counted in the node's kernelWriters. */
  kernelWrites = false;

  constructor(
    readonly id: number,
    readonly node: Node,
    readonly flags: number,
  ) {}

  get writable(): boolean {
    return (this.flags & O_ACCMODE) !== fs.constants.O_RDONLY;
  }

  /** Some descriptor of this handle's file, for fstat or a reopen. */
  get anyFile(): DescriptorFile | undefined {
    return this.upperFile ?? localFileOf(this.lower);
  }

  /**
   * Closes the handle's files (the upper's on the event loop where it is a local filesystem,
   * where close() returns at once; on a network one it may wait for the server: thread pool).
   */
  async close(): Promise<void> {
    if (this.upperFile !== undefined) {
      const file = this.upperFile;
      this.upperFile = undefined;
      // Errors are dropped, as close(2)'s are by most callers: the descriptor is gone either way.
      await file.close().catch(() => undefined);
    }
    if (this.lower) {
      const lower = this.lower;
      this.lower = undefined;
      await lower.close().catch(() => undefined);
    }
  }
}

/**
 * Closes every descriptor of the open files at once, when the mount is gone: RELEASEs the
 * kernel had not sent yet never come, and the layers must not stay busy until the process
 * exits. (Files of NFS lowers hold no descriptor.)
 */
export function closeAllFiles(files: HandleTable<FileHandle>): void {
  for (const h of files.all()) {
    // Lets go of its passthrough backing file (closed, once the mount is gone).
    h.mode?.done();
    const held = [h.upperFile, localFileOf(h.lower), h.node.pin];
    h.upperFile = undefined;
    h.lower = undefined;
    h.node.pin = undefined;
    for (const f of held) f?.closeQuietly();
    files.delete(h);
  }
}

export class DirHandle {
  /** The listing served, built at the first READDIR and again at each rewind to 0. */
  entries?: ListedEntry[];

  constructor(
    readonly id: number,
    readonly node: Node,
  ) {}
}

export class HandleTable<H extends { id: number; node: Node }> {
  private readonly byId = new Map<number, H>();
  private readonly byNode = new Map<Node, Set<H>>();
  private nextId = 1;

  allocate(make: (id: number) => H): H {
    const h = make(this.nextId++);
    this.byId.set(h.id, h);
    let set = this.byNode.get(h.node);
    if (!set) this.byNode.set(h.node, (set = new Set()));
    set.add(h);
    return h;
  }

  get(id: number): H | undefined {
    return this.byId.get(id);
  }

  of(node: Node): ReadonlySet<H> {
    return this.byNode.get(node) ?? EMPTY;
  }

  delete(h: H): void {
    this.byId.delete(h.id);
    const set = this.byNode.get(h.node);
    set?.delete(h);
    if (set?.size === 0) this.byNode.delete(h.node);
  }

  get size(): number {
    return this.byId.size;
  }

  all(): H[] {
    return [...this.byId.values()];
  }
}

const EMPTY: ReadonlySet<never> = new Set();
