/**
 * ESTALE from a path operation on a lower means a handle the lower held went stale (an NFS
 * server replaced the object): the operation is tried once more, which resolves the path
 * afresh. (Reads on open files are retried by the overlay, which knows what they should find.)
 */
import createDebug from 'debug';
import type { LayerAttr, LayerDirent, LayerFile, LayerStatfs, ReadableLayer } from './types';
import { errorCode } from '../util/errno';

const log = createDebug('ovshift:revalidate');

function isStale(err: unknown): boolean {
  return errorCode(err) === 'ESTALE';
}

/** `op` and `path` name the operation in the log; joined only when it is written (the hot path allocates nothing). */
async function once<T>(op: string, path: string, run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (err) {
    if (!isStale(err)) throw err;
    log('%s %s: ESTALE from the lower; resolving the path again', op, path);
    return run();
  }
}

export class StaleRetryLayer implements ReadableLayer {
  constructor(private readonly inner: ReadableLayer) {}

  get label(): string {
    return this.inner.label;
  }

  stat(path: string): Promise<LayerAttr | null> {
    return once('stat', path, () => this.inner.stat(path));
  }

  readdir(path: string): Promise<LayerDirent[]> {
    return once('readdir', path, () => this.inner.readdir(path));
  }

  readlink(path: string): Promise<Buffer> {
    return once('readlink', path, () => this.inner.readlink(path));
  }

  getxattr(path: string, name: string): Promise<Buffer | null> {
    return once('getxattr', path, () => this.inner.getxattr(path, name));
  }

  listxattr(path: string): Promise<string[]> {
    return once('listxattr', path, () => this.inner.listxattr(path));
  }

  statfs(): Promise<LayerStatfs> {
    return once('statfs', '', () => this.inner.statfs());
  }

  openRead(path: string): Promise<LayerFile> {
    return once('open', path, () => this.inner.openRead(path));
  }

  /** Closes the layer it wraps. */
  close(): void | Promise<void> {
    return this.inner.close();
  }
}
