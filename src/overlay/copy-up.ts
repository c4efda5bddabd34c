/**
 * Copy-up: giving a lower object an upper copy before its first change. The copy is built in
 * the work directory (data, owner, mode, xattrs, times) and renamed into place, so a copy cut
 * short (even by SIGKILL) never shows; parents are copied first.
 */
import createDebug from 'debug';
import * as fs from 'fs';
import { pathOf, type DescriptorFile, type LayerAttr, type LayerFile, type LayerPath, type Loc, type ReadableLayer } from '../layers/types';
import type { UpperDir } from '../layers/upper-dir';
import { localFileOf, SEEK_DATA, SEEK_HOLE } from '../layers/fd-io';
import { errnoError, errorCode } from '../util/errno';
import type { OverlayXattrs } from './format';
import { Node, NodeTable } from './nodes';
import type { Layers } from './resolve';
import { MiB, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG } from '../util/linux';

const log = createDebug('ovshift:copyup');

const CHUNK = MiB;
const ACL_XATTRS = new Set(['system.posix_acl_access', 'system.posix_acl_default']);

export interface CopyUpOptions {
  /** The file is about to be truncated to zero: skip its data. */
  truncate?: boolean;
}

function isUnsupported(err: unknown): boolean {
  const code = errorCode(err);
  return code === 'EOPNOTSUPP' || code === 'ENOTSUP';
}

/** Where copy-up reads a file's bytes: a layer file, or a pinned descriptor. */
type ByteSource = LayerFile;

/** A source's bytes in order, a buffer at a time (each chunk is written before the next read). */
async function* readChunks(src: ByteSource): AsyncGenerator<Buffer, void, undefined> {
  const buf = Buffer.allocUnsafe(CHUNK);
  for (let pos = 0; ;) {
    const n = await src.read(buf, 0, CHUNK, pos);
    if (n === 0) return;
    yield buf.subarray(0, n);
    pos += n;
  }
}

/**
 * The data extents of the first `size` bytes of `src`, [start, end), found with SEEK_DATA and
 * SEEK_HOLE; a filesystem that cannot tell has one, the whole file (the kernel's default).
 */
async function* dataExtents(src: DescriptorFile, size: number): AsyncGenerator<[bigint, bigint], void, undefined> {
  const end = BigInt(size);
  for (let pos = 0n; pos < end;) {
    let data: bigint;
    let hole: bigint;
    try {
      data = await src.seek(pos, SEEK_DATA);
      hole = data < end ? await src.seek(data, SEEK_HOLE) : end;
    } catch (err) {
      // ENXIO: only a hole from `pos` on (or the file shrank).
      if (errorCode(err) === 'ENXIO') return;
      throw err;
    }
    if (data >= end) return;
    const stop = hole < end ? hole : end;
    yield [data, stop];
    pos = stop;
  }
}

export class CopyUp {
  constructor(
    private readonly layers: Layers,
    private readonly upper: UpperDir,
    private readonly xattrs: OverlayXattrs,
    private readonly nodes: NodeTable,
    /** Detaches a node whose lower object left its path (it is pinned through its open files). */
    private readonly gone: (node: Node) => void,
    /** An open lower file of the node, for orphans of layers without descriptors (NFS). */
    private readonly openLowerFile: (node: Node) => LayerFile | undefined,
  ) {}

  /** Makes sure `node` has an upper part; concurrent callers share one copy. */
  ensure(node: Node, opts: CopyUpOptions = {}): Promise<void> {
    if (node.inUpper) return Promise.resolve();
    if (node.copyingUp) return node.copyingUp;
    const copying = this.copy(node, opts).finally(() => {
      node.copyingUp = undefined;
    });
    node.copyingUp = copying;
    return copying;
  }

  private async copy(node: Node, opts: CopyUpOptions): Promise<void> {
    if (node.unlinked) return this.copyOrphan(node, opts);
    if (node.parent) await this.ensure(node.parent);
    const source = node.lowers[0];
    if (!source) throw errnoError(-2, 'copy-up', node.path);
    const layer = this.layers.lowers[source.layer]!;
    const attr = await layer.stat(source);
    if (attr === null || attr.identity !== source.identity) {
      // The lower object went away or was replaced since it was looked up. Open files of it
      // go on with a copy of their own; without one, there is nothing left to copy.
      if (node.openCount === 0 || !node.parent) throw errnoError(-116, 'copy-up', node.path);
      this.gone(node);
      return this.copyOrphan(node, opts);
    }
    const temp = this.upper.temp();
    const path = node.path;
    log('copy-up %s (%s %s) via %s', path, layer.label, source.path, temp.path.toString());
    const parentPath = node.parent!.path;
    const parentBefore = await this.upper.stat(parentPath);
    try {
      await this.build(temp, layer, source, attr, node, opts);
      await this.upper.rename(temp, this.upper.loc(path));
      // A copy-up is not a change of the directory: keep its times as they were.
      if (parentBefore) await this.upper.utimens(this.upper.loc(parentPath), parentBefore.atime, parentBefore.mtime);
    } catch (err) {
      await this.upper.removeTemp(temp).catch(() => undefined);
      log('copy-up of %s failed: %s', path, (err as Error).message);
      throw err;
    }
    const copied = await this.upper.stat(path);
    if (copied === null) throw errnoError(-2, 'copy-up', path);
    this.nodes.setUpper(node, copied.identity);
  }

  private async build(temp: Loc, layer: ReadableLayer, from: LayerPath, attr: LayerAttr, node: Node, opts: CopyUpOptions): Promise<void> {
    const type = attr.mode & S_IFMT;
    const mode = attr.mode & 0o7777;
    switch (type) {
      case S_IFDIR:
        await this.upper.mkdir(temp, 0o700);
        break;
      case S_IFREG:
        await this.copyFile(temp, layer, from, attr, opts.truncate === true);
        break;
      case S_IFLNK:
        await this.upper.symlink(await layer.readlink(from), temp);
        break;
      default:
        await this.upper.mknod(temp, type | 0o600, attr.rdevMajor, attr.rdevMinor);
    }
    const equivalents = await this.copyXattrs(temp, layer, from, type === S_IFDIR);
    await this.upper.chown(temp, attr.uid, attr.gid);
    // After chown, which clears set-id bits.
    if (type !== S_IFLNK) await this.upper.chmod(temp, mode);
    // After chmod, which would rewrite an access ACL's entries to the mode's bits.
    await this.setEquivalents(temp, pathOf(from), equivalents);
    // The copy keeps showing the inode number of the object it came from.
    await this.upper.setxattr(temp, this.xattrs.origin, Buffer.from(String(node.ino))).catch((err) => {
      if (!isUnsupported(err)) throw err;
    });
    // Last: everything above changes the times.
    await this.upper.utimens(temp, attr.atime, attr.mtime);
  }

  private async copyFile(temp: Loc, layer: ReadableLayer, from: LayerPath, attr: LayerAttr, truncate: boolean): Promise<void> {
    const out = await this.upper.openFile(temp, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL, 0o600);
    try {
      if (truncate || attr.size === 0) return;
      const src = await layer.openRead(from);
      try {
        await this.copyData(src, out, attr.size);
      } finally {
        await src.close();
      }
    } finally {
      out.closeSync();
    }
  }

  /**
   * Copy-up of a file that no name reaches any more (unlinked, or gone from the lower) but is
   * still open: the copy is made from its pinned descriptor into the work directory and
   * unlinked there at once, so it lives exactly as long as the files open on it.
   */
  private async copyOrphan(node: Node, opts: CopyUpOptions): Promise<void> {
    // A directory no name reaches (removed, or renamed away on the lower) has no place in the
    // upper: making something in it answers ENOENT, as in a removed directory of a local filesystem.
    if (node.isDir) throw errnoError(-2, 'copy-up', node.name);
    const pinned = node.pin;
    const src: ByteSource | undefined = pinned ?? this.openLowerFile(node);
    if (src === undefined) throw errnoError(-116, 'copy-up', node.name);
    const st = pinned !== undefined ? pinned.statSync() : await src.stat();
    const temp = this.upper.temp();
    const out = await this.upper.openFile(temp, fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_EXCL, 0o600);
    try {
      if (!opts.truncate && st.size > 0) await this.copyData(src, out, st.size);
      out.chownSync(st.uid, st.gid);
      out.chmodSync(st.mode & 0o7777);
      await this.upper.unlink(temp);
    } catch (err) {
      out.closeSync();
      await this.upper.removeTemp(temp).catch(() => undefined);
      throw err;
    }
    log('copy-up of unlinked node %d into an orphan copy', node.id);
    if (pinned !== undefined) pinned.closeSync();
    node.pin = out;
    const copied = out.statSync();
    node.upperIdentity = `orphan:${copied.dev}:${copied.ino}`;
  }

  /**
   * The source's bytes copied by the kernel, its holes kept as holes (the copy is given the
   * source's size first, as kernel overlayfs's copy-up does): FICLONE where the upper can share
   * blocks, else each data extent by copy_file_range, or by sendfile where that refuses to go
   * between filesystems (EXDEV: a lower on a disk, the upper a tmpfs). False when the kernel can
   * do neither here.
   */
  private async copyInKernel(src: DescriptorFile, dst: DescriptorFile, size: number): Promise<boolean> {
    try {
      await dst.cloneFrom(src);
      return true;
    } catch (err) {
      if (!['EXDEV', 'EOPNOTSUPP', 'EINVAL', 'ENOTTY', 'ENOSYS', 'EBADF'].includes(errorCode(err) ?? '')) throw err;
    }
    await dst.truncate(BigInt(size));
    let byRange = true;
    let sent = false;
    for await (const [start, end] of dataExtents(src, size)) {
      for (let pos = start; pos < end;) {
        const length = Number(end - pos > 1n << 30n ? 1n << 30n : end - pos);
        let n: number;
        try {
          n = byRange ? await dst.copyRangeFrom(src, pos, pos, length) : await dst.sendFrom(src, pos, pos, length);
        } catch (err) {
          const code = errorCode(err) ?? '';
          if (byRange && ['EXDEV', 'EOPNOTSUPP', 'EINVAL', 'ENOSYS'].includes(code)) {
            byRange = false;
            continue;
          }
          if (!byRange && !sent && ['EINVAL', 'EOPNOTSUPP', 'ENOSYS'].includes(code)) return false;
          throw err;
        }
        if (n === 0) {
          // The file shrank while copying.
          await dst.truncate(pos);
          return true;
        }
        sent ||= !byRange;
        pos += BigInt(n);
      }
    }
    return true;
  }

  /**
   * Copies `size` bytes of `src` into `dst`: streamed where the layer reads ahead (NFS), else
   * in the kernel where it can, else a buffer at a time.
   */
  private async copyData(src: ByteSource, dst: DescriptorFile, size: number): Promise<void> {
    if (src.chunks) return this.writeChunks(src.chunks(size), dst);
    const local = localFileOf(src);
    if (local !== undefined && (await this.copyInKernel(local, dst, size))) return;
    await this.writeChunks(readChunks(src), dst);
  }

  private async writeChunks(chunks: AsyncIterable<Buffer>, dst: DescriptorFile): Promise<void> {
    let pos = 0;
    for await (const chunk of chunks) {
      pos += await dst.write(chunk, 0, chunk.length, pos);
    }
  }

  /**
   * Copies xattrs the upper can store. Those it cannot (EOPNOTSUPP: an NFSv4 ACL, any xattr
   * on a ramfs upper) are skipped, except POSIX ACLs: losing one would change who may access
   * the file, so that fails the copy-up as kernel overlayfs does. For a skipped one the layer
   * may have an equivalent the upper can store (an NFSv4 ACL: POSIX ACLs granting exactly the
   * same), returned to be set once the mode is; a skipped ACL with none is said on stderr
   * (seed 002: the copy-up goes on, with the mode bits).
   */
  private async copyXattrs(temp: Loc, layer: ReadableLayer, from: LayerPath, isDir: boolean): Promise<{ name: string; value: Buffer }[]> {
    const equivalents: { name: string; value: Buffer }[] = [];
    for (const name of await layer.listxattr(from)) {
      if (this.xattrs.isPrivate(name)) continue;
      const value = await layer.getxattr(from, name);
      if (value === null) continue;
      try {
        await this.upper.setxattr(temp, name, value);
      } catch (err) {
        if (!isUnsupported(err) || ACL_XATTRS.has(name)) throw err;
        const instead = layer.storableXattrs?.(name, value, isDir);
        if (Array.isArray(instead)) {
          log('%s of %s: stored as %s', name, pathOf(from), instead.map((x) => x.name).join(' and '));
          equivalents.push(...instead);
        } else if (instead !== undefined) {
          process.stderr.write(
            `ovshift: copy-up of "${pathOf(from)}": its ${name} is dropped, not expressible as a POSIX ACL: ${instead}; the copy has the mode bits\n`,
          );
        } else {
          log('skipping xattr %s of %s: the upper cannot store it (%s)', name, pathOf(from), errorCode(err));
        }
      }
    }
    return equivalents;
  }

  /** The equivalents of xattrs the upper refused; refused too, they are said on stderr and the copy goes on. */
  private async setEquivalents(temp: Loc, path: string, equivalents: readonly { name: string; value: Buffer }[]): Promise<void> {
    for (const { name, value } of equivalents) {
      try {
        await this.upper.setxattr(temp, name, value);
      } catch (err) {
        if (!isUnsupported(err)) throw err;
        process.stderr.write(
          `ovshift: copy-up of "${path}": the upper cannot store ${name} (${errorCode(err)}), the equivalent of its ACL; the copy has the mode bits\n`,
        );
      }
    }
  }
}
