/**
 * Open files: a lower file is read in place until its first change, then every handle of it
 * (read-only ones included) reads and writes the upper copy.
 */
import * as fs from 'fs';
import { Fopen, WRITE_KILL_SUIDGID } from '../fuse/abi';
import { FuseError } from '../fuse/errors';
import { LentBuffer, type OpenOut } from '../fuse/replies';
import { BufferPool } from '../util/buffer-pool';
import { localFileOf, SEEK_DATA, SEEK_HOLE } from '../layers/fd-io';
import { baseName, parentPath, type DescriptorFile, type LayerAttr, type LayerFile, type LentParts } from '../layers/types';
import { errorCode } from '../util/errno';
import type { OverlayCore } from './core';
import { FileHandle } from './handles';
import type { Node } from './nodes';
import { O_ACCMODE, S_ISGID, S_ISUID, S_IXGRP } from '../util/linux';
import { callerGroups } from '../fuse/caller';

const { O_RDONLY, O_RDWR, O_WRONLY, O_CREAT, O_EXCL, O_NOCTTY, O_TRUNC, O_DIRECT } = fs.constants;
/** Flags that were for open(2) itself and must not be replayed on the layer file. */
const OPEN_ONLY_FLAGS = O_CREAT | O_EXCL | O_NOCTTY | O_TRUNC | O_DIRECT;
/**
 * READ data goes into pooled buffers, lent to the reply: a fresh Buffer per READ costs a
 * malloc, page faults on first touch and garbage collection, about three times the read of a
 * small cached file itself. Small reads (most files) have a pool of their own.
 */
const smallReadBuffers = new BufferPool(64 * 1024, 16);
const readBuffers = new BufferPool(1024 * 1024, 8);

export function layerOpenFlags(flags: number): number {
  return flags & ~OPEN_ONLY_FLAGS;
}

/** Opens (or reopens) the upper file for a handle whose node now lives in the upper. */
async function upperFile(core: OverlayCore, h: FileHandle, write: boolean): Promise<DescriptorFile> {
  if (h.upperFile !== undefined && (!write || h.upperWritable)) return h.upperFile;
  const node = h.node;
  const flags = layerOpenFlags(h.flags) & ~O_ACCMODE;
  const access = write || h.writable ? ((h.flags & O_ACCMODE) === O_WRONLY ? O_WRONLY : O_RDWR) : O_RDONLY;
  const upper = core.upper;
  let file: DescriptorFile;
  if (node.unlinked) {
    const pin = node.pin;
    if (pin === undefined) throw new FuseError('ESTALE');
    file = await core.atime.open(flags | access, (f) => upper.reopen(pin, f));
  } else {
    file = await core.atime.open(flags | access | fs.constants.O_NOFOLLOW, (f) => upper.openFile(upper.loc(node.path), f));
  }
  if (h.upperFile !== undefined) h.upperFile.closeSync();
  h.upperFile = file;
  h.upperWritable = access !== O_RDONLY;
  return file;
}

/**
 * Opens the lower object of a node, refusing another object found at its path: ESTALE makes
 * the kernel look the path up again (so the caller gets the new node), or, for a read on an
 * open file, tells the application the object it held is gone.
 */
async function openLower(core: OverlayCore, node: Node): Promise<LayerFile> {
  const part = node.lowers[0];
  if (!part) throw new FuseError('ENOENT');
  // The parent's directory in that layer when the node was found there by its own name (no
  // redirect): the layer may reach it by its identity.
  const parentDir = node.parent?.lowerDirIn(part.layer);
  const dir = parentDir && parentDir.path === parentPath(part.path) ? parentDir : parentPath(part.path);
  // Reads from the start are expected unless the kernel may hold the file's pages from an
  // earlier open, or the file is known empty.
  const readSoon = node.pagesFrom === undefined && node.lastAttr?.size !== 0;
  const file = await core.layers.lowers[part.layer]!.openEntry(dir, baseName(part.path), part.identity, readSoon);
  if (file === null) {
    if (core.opts.revalidate === 'kernel' && node.parent) core.goStale(node.parent, node.name, node, 'changed underneath');
    throw new FuseError('ESTALE', `${part.path} is another object now`);
  }
  return file;
}

export async function open(core: OverlayCore, node: Node, flags: number): Promise<FileHandle> {
  if (node.isDir) throw new FuseError('EISDIR');
  const writable = (flags & O_ACCMODE) !== O_RDONLY;
  if (writable && !core.layers.upper) throw new FuseError('EROFS');
  // A handle that can only write gains nothing from the lower: copied up now, it is served
  // from the upper copy, by the kernel itself where passthrough allows, instead of through the
  // daemon for its whole life. One that can read keeps reading the lower until a change.
  const writeOnly = (flags & O_ACCMODE) === O_WRONLY;
  if (writable && (flags & O_TRUNC || writeOnly)) await core.copyUp!.ensure(node, { truncate: (flags & O_TRUNC) !== 0 });
  const h = core.files.allocate((id) => new FileHandle(id, node, flags));
  try {
    if (node.inUpper) {
      const file = await upperFile(core, h, false);
      if (flags & O_TRUNC) file.truncateSync(0);
    } else if (node.unlinked && node.pin !== undefined) {
      // Reopened through /proc/PID/fd of a file no name reaches any more.
      h.lower = node.pin.reopenSync(O_RDONLY);
    } else {
      // Also a lower file unlinked through the mount that has no pin (no local descriptor, as
      // on an nfs:// lower): its layer still has it, and reaches it by its identity.
      h.lower = await openLower(core, node);
      h.keepPages = unchangedSincePagesRead(node, h.lower.openedAttr);
    }
    await chooseMode(core, h);
  } catch (err) {
    core.files.delete(h);
    await h.close();
    throw err;
  }
  node.openCount++;
  return h;
}

/** Whether the kernel serves the handle's reads and writes itself (passthrough). */
export async function chooseMode(core: OverlayCore, h: FileHandle): Promise<void> {
  if (core.passthrough) h.mode = await core.passthrough.begin(h.node);
  if (h.mode?.backingId !== undefined && h.writable) {
    h.kernelWrites = true;
    h.node.kernelWriters++;
  }
}

/**
 * The open reply: passthrough, or the cache policy (pages of objects only this daemon
 * changes may be kept).
 */
export function openReply(core: OverlayCore, h: FileHandle): OpenOut {
  if (h.mode?.backingId !== undefined) return { fh: h.id, openFlags: Fopen.PASSTHROUGH, backingId: h.mode.backingId };
  const keep = (h.node.upperOnly && core.atime.pagesMayBeKept) || h.keepPages;
  return { fh: h.id, openFlags: keep ? Fopen.KEEP_CACHE : 0 };
}

/**
 * Whether the lower file an open found is the one the kernel's cached pages of the node were
 * read from: same object, size, mtime, ctime (a content change moves the ctime, which no one
 * can set back) and change counter where the layer keeps one (NFSv4). Otherwise the open lets the kernel drop them, and what it finds is recorded.
 */
function unchangedSincePagesRead(node: Node, attr: LayerAttr | undefined): boolean {
  const from = attr && `${attr.identity}:${attr.size}:${attr.mtime.sec}.${attr.mtime.nsec}:${attr.ctime.sec}.${attr.ctime.nsec}:${attr.change ?? ''}`;
  if (from !== undefined && from === node.pagesFrom) return true;
  node.pagesFrom = from;
  return false;
}

export async function read(core: OverlayCore, h: FileHandle, offset: number, size: number): Promise<Buffer | LentBuffer> {
  // A layer that holds the bytes in buffers of its own hands them over as they are.
  if (!h.node.inUpper && h.lower?.readParts) {
    // A lower file's size in the kernel is the one this daemon last reported (see readInto).
    const knownEnd = h.node.lastAttr?.size;
    const lent = await onLower(core, h, (file) => (file.readParts ? file.readParts(size, offset, knownEnd) : readCopy(file, size, offset, knownEnd)));
    return new LentBuffer(lent.parts, () => lent.release());
  }
  const pool = size <= smallReadBuffers.size ? smallReadBuffers : size <= readBuffers.size ? readBuffers : undefined;
  if (pool === undefined) {
    const buf = Buffer.allocUnsafe(size);
    const n = await readInto(core, h, buf, size, offset);
    return n === size ? buf : buf.subarray(0, n);
  }
  const buf = pool.take();
  try {
    const n = await readInto(core, h, buf, size, offset);
    return new LentBuffer(buf.subarray(0, n), () => pool.give(buf));
  } catch (err) {
    pool.give(buf);
    throw err;
  }
}

async function readCopy(file: LayerFile, size: number, offset: number, knownEnd: number | undefined): Promise<LentParts> {
  const buf = Buffer.allocUnsafe(size);
  return { parts: [buf.subarray(0, await file.read(buf, 0, size, offset, knownEnd))], release: () => {} };
}

async function readInto(core: OverlayCore, h: FileHandle, buf: Buffer, size: number, offset: number): Promise<number> {
  if (h.node.inUpper) {
    const file = await upperFile(core, h, false);
    const n = await file.read(buf, 0, size, offset);
    await core.atime.accessed(file);
    return n;
  }
  // A lower file's size in the kernel is the one this daemon last reported (nothing else
  // changes it), so a read reaching it is complete; never for an upper file, which the
  // kernel's own writes may have made longer.
  if (h.lower) return onLower(core, h, (file) => file.read(buf, 0, size, offset, h.node.inUpper ? undefined : h.node.lastAttr?.size));
  throw new FuseError('EBADF');
}

/** A read that met ESTALE is retried once on the same object reopened by its path. */
function onLower<T>(core: OverlayCore, h: FileHandle, op: (file: LayerFile) => Promise<T>): Promise<T> {
  // Not an async function: the retry is rare, the read on every call. A layer that throws
  // instead of rejecting is caught all the same.
  let first: Promise<T>;
  try {
    first = op(h.lower!);
  } catch (err) {
    first = Promise.reject(err);
  }
  return first.catch(async (err: unknown) => {
    if (errorCode(err) !== 'ESTALE' || h.node.unlinked) throw err;
    // The object is gone if its path now names nothing: the handle is stale, not the path.
    const again = await openLower(core, h.node).catch((e: unknown) => {
      throw errorCode(e) === 'ENOENT' ? new FuseError('ESTALE', `${h.node.path} is gone`) : e;
    });
    await h.lower!.close().catch(() => undefined);
    h.lower = again;
    return op(again);
  });
}

export async function write(core: OverlayCore, h: FileHandle, offset: number, data: Buffer, writeFlags: number, caller: Caller): Promise<number> {
  await core.copyUp!.ensure(h.node);
  const file = await upperFile(core, h, true);
  if (writeFlags & WRITE_KILL_SUIDGID) await killSuidGid(core, caller, file);
  return file.write(data, 0, data.length, offset);
}

/**
 * The mode once a write, truncate or fallocate by `caller` (which the kernel found may not keep
 * them) has cleared the set-user-ID bit and the set-group-ID bit, as Linux does: set-group-ID
 * too where the file is group-executable, or where the caller is neither in the file's group
 * (`gid`, a layer id) nor holding CAP_FSETID (without group-execute the bit is only a
 * mandatory-locking mark). Undefined if unchanged.
 */
export function withoutSuidGid(core: OverlayCore, caller: Caller, mode: number, gid: number): number | undefined {
  let next = mode & ~S_ISUID;
  if (mode & S_ISGID && (mode & S_IXGRP || !inGroupOrCapable(core, caller, gid))) next &= ~S_ISGID;
  return next === mode ? undefined : next & 0o7777;
}

/** The ids a request carries: the calling thread, its fsuid and fsgid. */
export interface Caller {
  pid: number;
  uid: number;
  gid: number;
}

function inGroupOrCapable(core: OverlayCore, caller: Caller, gid: number): boolean {
  const creds = callerGroups(caller.pid);
  // A caller gone, or the kernel's own: keep nothing it could not prove.
  if (!creds) return false;
  if (creds.fsetid) return true;
  return [caller.gid, ...creds.groups].some((g) => core.layerOwner(caller.uid, g).gid === gid);
}

export async function killSuidGid(core: OverlayCore, caller: Caller, file: DescriptorFile): Promise<void> {
  const attr = file.statNow();
  if (!attr) return;
  const next = withoutSuidGid(core, caller, attr.mode, attr.gid);
  if (next !== undefined) file.chmodSync(next);
}

export async function release(core: OverlayCore, h: FileHandle): Promise<void> {
  core.files.delete(h);
  h.mode?.done();
  if (h.kernelWrites) h.node.kernelWriters--;
  await h.close();
  const node = h.node;
  node.openCount--;
  if (node.openCount === 0 && node.pin !== undefined) {
    node.pin.closeSync();
    node.pin = undefined;
  }
  core.nodes.released(node);
}

export async function fsync(h: FileHandle, datasync: boolean): Promise<void> {
  await h.upperFile?.flush(datasync);
}

export async function fallocate(core: OverlayCore, h: FileHandle, mode: number, offset: bigint, length: bigint): Promise<void> {
  await core.copyUp!.ensure(h.node);
  await (await upperFile(core, h, true)).allocate(mode, offset, length);
}

export async function lseek(core: OverlayCore, h: FileHandle, offset: bigint, whence: number): Promise<bigint> {
  const file = h.node.inUpper ? await upperFile(core, h, false) : localFileOf(h.lower);
  if (file !== undefined) return file.seek(offset, whence);
  if (!h.lower) throw new FuseError('EBADF');
  // A layer file with no descriptor (NFS) has no holes to report: all of it is data, as the
  // kernel's generic SEEK_DATA/SEEK_HOLE says of filesystems that cannot tell.
  const size = BigInt((await h.lower.stat()).size);
  if (offset < 0n || offset >= size) throw new FuseError('ENXIO');
  if (whence === SEEK_DATA) return offset;
  if (whence === SEEK_HOLE) return size;
  throw new FuseError('EINVAL');
}

export async function copyFileRange(core: OverlayCore, from: FileHandle, offIn: bigint, to: FileHandle, offOut: bigint, length: bigint): Promise<bigint> {
  await core.copyUp!.ensure(to.node);
  const out = await upperFile(core, to, true);
  const src = from.node.inUpper ? await upperFile(core, from, false) : localFileOf(from.lower);
  if (src === undefined) throw new FuseError('EXDEV');
  const len = Number(length > 1n << 30n ? 1n << 30n : length);
  return BigInt(await out.copyRangeFrom(src, offIn, offOut, len));
}
