/**
 * ESTALE from a path operation on a lower means a handle the lower held went stale (an NFS
 * server replaced the object): the operation is tried once more, which resolves the path
 * afresh. (Reads on open files are retried by the overlay, which knows what they should find.)
 */
import createDebug from 'debug';
import {
  childPath,
  pathOf,
  type LayerAttr,
  type LayerChange,
  type LayerDirent,
  type LayerFile,
  type LayerPath,
  type LayerStatfs,
  type LayerWatch,
  type ReadableLayer,
} from './types';
import { errorCode } from '../util/errno';

const log = createDebug('ovshift:revalidate');

function isStale(err: unknown): boolean {
  return errorCode(err) === 'ESTALE';
}

/** `op` and `path` name the operation in the log; joined only when it is written (the hot path allocates nothing). */
function once<T>(op: string, path: string, run: () => Promise<T>): Promise<T> {
  // Not an async function: it runs on every lower call, where a plain Promise chain costs less
  // than a suspended frame. A layer that throws instead of rejecting is caught all the same.
  let first: Promise<T>;
  try {
    first = run();
  } catch (err) {
    first = Promise.reject(err);
  }
  return first.catch((err: unknown) => {
    if (!isStale(err)) throw err;
    log('%s %s: ESTALE from the lower; resolving the path again', op, path);
    return run();
  });
}

export class StaleRetryLayer implements ReadableLayer {
  constructor(private readonly inner: ReadableLayer) {}

  get label(): string {
    return this.inner.label;
  }

  stat(at: LayerPath): Promise<LayerAttr | null> {
    return once('stat', pathOf(at), () => this.inner.stat(at));
  }

  lookup(dir: LayerPath, name: string): Promise<LayerAttr | null> {
    return once('stat', childPath(pathOf(dir), name), () => this.inner.lookup(dir, name));
  }

  readdir(at: LayerPath): Promise<LayerDirent[]> {
    return once('readdir', pathOf(at), () => this.inner.readdir(at));
  }

  readlink(at: LayerPath): Promise<Buffer> {
    return once('readlink', pathOf(at), () => this.inner.readlink(at));
  }

  getxattr(at: LayerPath, name: string): Promise<Buffer | null> {
    return once('getxattr', pathOf(at), () => this.inner.getxattr(at, name));
  }

  listxattr(at: LayerPath): Promise<string[]> {
    return once('listxattr', pathOf(at), () => this.inner.listxattr(at));
  }

  statfs(): Promise<LayerStatfs> {
    return once('statfs', '', () => this.inner.statfs());
  }

  openRead(at: LayerPath): Promise<LayerFile> {
    return once('open', pathOf(at), () => this.inner.openRead(at));
  }

  openEntry(dir: LayerPath, name: string, identity: string, readSoon?: boolean): Promise<LayerFile | null> {
    return once('open', childPath(pathOf(dir), name), () => this.inner.openEntry(dir, name, identity, readSoon));
  }

  storableXattrs(name: string, value: Buffer, isDir: boolean): { name: string; value: Buffer }[] | string | undefined {
    return this.inner.storableXattrs?.(name, value, isDir);
  }

  watch(onChanges: (changes: LayerChange[]) => void): LayerWatch | string {
    return this.inner.watch?.(onChanges) ?? 'its changes are not reported';
  }

  /** Closes the layer it wraps. */
  close(): void | Promise<void> {
    return this.inner.close();
  }
}
