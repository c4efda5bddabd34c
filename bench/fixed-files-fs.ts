/**
 * The filesystem of the protocol-layer benchmark: a root directory holding fixed files whose
 * READs return one preallocated buffer, so a request costs only the protocol round trip.
 * Timeouts are 0 and files open with FOPEN_DIRECT_IO: every stat and read reaches the daemon.
 * It counts what it serves, so the benchmark can check that they did.
 */
import { constants as K } from 'fs';
import { Fopen, ROOT_ID } from '../src/fuse/abi';
import { FuseError } from '../src/fuse/errors';
import type { FuseHandler } from '../src/fuse/handler';
import type { Attr, AttrOut, EntryOut, OpenOut } from '../src/fuse/replies';
import type { GetattrRequest, LookupRequest, OpenRequest, ReadRequest } from '../src/fuse/requests';

export interface FixedFile {
  name: string;
  size: number;
}

export interface Served {
  lookups: number;
  getattrs: number;
  reads: number;
  readBytes: number;
}

export class FixedFilesFs implements FuseHandler {
  readonly served: Served = { lookups: 0, getattrs: 0, reads: 0, readBytes: 0 };
  private readonly attrs = new Map<number, Attr>();
  private readonly byName = new Map<string, number>();
  private block = Buffer.alloc(0);

  constructor(files: readonly FixedFile[]) {
    const time = { sec: Math.floor(Date.now() / 1000), nsec: 0 };
    const attr = (ino: number, mode: number, size: number): Attr => ({
      ino,
      size,
      blocks: Math.ceil(size / 512),
      atime: time,
      mtime: time,
      ctime: time,
      mode,
      nlink: 1,
      uid: 0,
      gid: 0,
      rdev: 0,
      blksize: 4096,
    });
    this.attrs.set(ROOT_ID, { ...attr(ROOT_ID, K.S_IFDIR | 0o755, 0), nlink: 2 });
    files.forEach((f, i) => {
      this.attrs.set(ROOT_ID + 1 + i, attr(ROOT_ID + 1 + i, K.S_IFREG | 0o644, f.size));
      this.byName.set(f.name, ROOT_ID + 1 + i);
    });
  }

  private attr(nodeid: number): Attr {
    const a = this.attrs.get(nodeid);
    if (!a) throw new FuseError('ENOENT');
    return a;
  }

  async lookup(req: LookupRequest): Promise<EntryOut> {
    this.served.lookups++;
    const nodeid = req.nodeid === ROOT_ID ? this.byName.get(req.name.toString()) : undefined;
    if (nodeid === undefined) throw new FuseError('ENOENT');
    return { nodeid, generation: 1, entryTimeout: 0, attrTimeout: 0, attr: this.attr(nodeid) };
  }

  async getattr(req: GetattrRequest): Promise<AttrOut> {
    this.served.getattrs++;
    return { attrTimeout: 0, attr: this.attr(req.nodeid) };
  }

  async open(req: OpenRequest): Promise<OpenOut> {
    this.attr(req.nodeid);
    return { fh: req.nodeid, openFlags: Fopen.DIRECT_IO };
  }

  async read(req: ReadRequest): Promise<Buffer> {
    const size = Math.max(0, Math.min(req.size, this.attr(req.nodeid).size - req.offset));
    if (size > this.block.length) this.block = Buffer.alloc(size, 0x5a);
    this.served.reads++;
    this.served.readBytes += size;
    return this.block.subarray(0, size);
  }
}
