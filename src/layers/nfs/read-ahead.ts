/**
 * The one read-ahead engine of the NFS client, for an open file's reads and for streaming a
 * whole file (copy-up). The kernel asks a FUSE filesystem for file data 128 KiB at a time, two
 * requests at once, so a sequential read would wait for one server round trip per 128 KiB.
 * Once reads follow each other, the next bytes are asked of the server in larger READs, several
 * in flight, and the reads that come are answered from them. A stream is such a run from its
 * first read on.
 *
 * Freshness: prefetched bytes serve only reads that arrive within `maxAgeMs` of their reply,
 * so an open file's are never older than the kernel's own cached attributes would let them be;
 * any other read goes to the server. A stream is one pass over the file and keeps what it
 * prefetched until it is consumed.
 *
 * Reads hand out views of the reply buffers, not copies. A reply's buffer goes back to its
 * pool (`recycle`) once it has left the window and every read answered from it was released;
 * one never released (a stream's chunks, an abandoned read) is left to the garbage collector.
 */
import { Nfs3Status, NfsError } from './errors';
import type { ReadResult } from './nfs3';
import type { LentParts } from '../types';
import { MiB } from '../../util/linux';

/** One READ: `count` bytes at `offset`. */
export type ReadAt = (offset: number, count: number) => Promise<ReadResult>;

export interface ReadAheadShape {
  /** Bytes per prefetching READ. */
  chunk: number;
  /** Prefetching READs in flight at most. */
  depth: number;
  /** Reads in a row that continue each other before reading ahead starts. */
  streak: number;
  maxAgeMs: number;
}

/**
 * An open file's reads: a 4 MiB window in READs of 2 MiB, twice the kernel's largest FUSE READ.
 * Each READ costs the daemon a send, a reply and a wakeup of the server: fewer, larger ones
 * read a large file faster (1 GiB: 0.82–0.87 s in 1 MiB READs, 0.68–0.71 s in 2 MiB ones).
 */
export const OPEN_FILE_READ_AHEAD: ReadAheadShape = { chunk: 2 * MiB, depth: 2, streak: 2, maxAgeMs: 100 };

/** Prefetching READs in flight at most where the server's READs are small. */
const MAX_DEPTH = 8;

/** `shape` for a server whose READs carry at most `maxRead` bytes: the same window in more READs. */
export function shapeFor(shape: ReadAheadShape, maxRead: number): ReadAheadShape {
  if (maxRead >= shape.chunk) return shape;
  return { ...shape, chunk: maxRead, depth: Math.min(MAX_DEPTH, Math.ceil((shape.chunk * shape.depth) / maxRead)) };
}

interface Prefetch {
  offset: number;
  count: number;
  result: Promise<ReadResult | undefined>;
  /** When its reply came (performance.now()), once it has. */
  arrived?: number;
  /** Reads using its reply's bytes, not yet released. */
  lent: number;
  /** Out of the window. */
  dropped: boolean;
  recycled: boolean;
}

export class ReadAhead {
  private expected = -1;
  private streak = 0;
  private ahead: Prefetch[] = [];
  /** Where the last prefetched range ends. */
  private aheadEnd = 0;
  /** End of file as a prefetch found it: nothing is prefetched past it. */
  private eof: number | undefined;
  /** Where a stream ends: nothing is prefetched past it either. */
  private until = Infinity;

  constructor(
    private readonly readAt: ReadAt,
    private readonly maxRead: number,
    private readonly shape: ReadAheadShape = OPEN_FILE_READ_AHEAD,
    /** Takes back a reply's data once nothing uses it. */
    private readonly recycle: (data: Buffer) => void = () => {},
  ) {
    for (const key of ['chunk', 'depth'] as const) {
      const value = shape[key];
      if (!Number.isInteger(value) || value < 1) throw new RangeError(`read-ahead ${key} must be a positive integer, got ${value}`);
    }
  }

  /**
   * Reads [offset, end) in order, `shape.chunk` bytes at a time, or fewer if the file ends first;
   * the READs after the one awaited are already in flight. The pieces are views of the replies,
   * never recycled: the consumer may keep them.
   */
  async *stream(offset: number, end: number): AsyncGenerator<Buffer, void, undefined> {
    this.until = end;
    for (let at = offset; at < end;) {
      const length = Math.min(this.shape.chunk, end - at);
      let done = 0;
      for (const part of (await this.readParts(length, at)).parts) {
        done += part.length;
        yield part;
      }
      // readParts() stops short only at end of file.
      if (done < length) return;
      at += done;
    }
  }

  async read(buf: Buffer, offset: number, length: number, position: number, knownEnd?: number): Promise<number> {
    const lent = await this.readParts(length, position, knownEnd);
    let done = 0;
    for (const part of lent.parts) done += part.copy(buf, offset + done);
    lent.release();
    return done;
  }

  /**
   * The bytes of [position, position + length), fewer only at end of file, as views of the
   * replies that hold them. `knownEnd`: the size the reader knows the file by; a fresh reply
   * that ends the file there needs no READ after it to tell the end.
   */
  async readParts(length: number, position: number, knownEnd?: number): Promise<LentParts> {
    this.follow(position, length);
    const used: Prefetch[] = [];
    const own: Buffer[] = [];
    let released = false;
    const release = (): void => {
      if (released) return;
      released = true;
      for (const p of used) {
        p.lent--;
        this.settle(p);
      }
      for (const data of own) this.recycle(data);
    };
    const { parts, atEnd } = await this.fromPrefetched(length, position, used, knownEnd);
    let done = 0;
    for (const part of parts) done += part.length;
    try {
      while (done < length && !atEnd) {
        const { data, eof } = await this.readAt(position + done, Math.min(length - done, this.maxRead));
        if (data.length === 0 && !eof) throw new NfsError(Nfs3Status.IO, 'read', `(no data and no end of file at offset ${position + done})`);
        if (data.length > 0) {
          parts.push(data);
          own.push(data);
        }
        done += data.length;
        if (eof) break;
      }
    } catch (err) {
      release();
      throw err;
    }
    if (this.eof !== undefined && position + done > this.eof) this.eof = undefined;
    return { parts, release };
  }

  /**
   * A READ sent before anyone read (NFSv4: the first READ in the COMPOUND that opened the file;
   * NFSv3: the one sent beside the open's LOOKUP), answered or still on its way: a read from
   * `offset` soon after its reply is answered from it, as from a prefetch. A failed one (or
   * `undefined`) primes nothing: the read asks the server itself.
   */
  prime(offset: number, count: number, r: ReadResult | Promise<ReadResult | undefined>): void {
    this.dropAll(this.ahead);
    this.ahead = [this.track(offset, count, Promise.resolve(r))];
    this.aheadEnd = offset + count;
    this.expected = offset;
    this.streak = 0;
    this.eof = undefined;
  }

  /** Drops what was read ahead (the file changed, or is closed); reads go to the server again. */
  forget(): void {
    this.dropAll(this.ahead);
    this.ahead = [];
  }

  /** Notes where this read is and, in a sequential run, keeps the READs ahead of it going. */
  private follow(position: number, length: number): void {
    if (position === this.expected) this.streak++;
    else {
      this.streak = 0;
      this.dropAll(this.ahead);
      this.ahead = [];
      this.aheadEnd = 0;
    }
    this.expected = position + length;
    const passed = this.ahead.filter((p) => p.offset + p.count <= position);
    if (passed.length > 0) {
      this.ahead = this.ahead.filter((p) => p.offset + p.count > position);
      this.dropAll(passed);
    }
    if (this.streak < this.shape.streak) return;
    this.aheadEnd = Math.max(this.aheadEnd, this.expected);
    const limit = Math.min(this.expected + this.shape.depth * this.shape.chunk, this.eof ?? Infinity, this.until);
    while (this.ahead.length < this.shape.depth && this.aheadEnd < limit) {
      const count = Math.min(this.shape.chunk, this.maxRead, limit - this.aheadEnd);
      this.ahead.push(this.prefetch(this.aheadEnd, count));
      this.aheadEnd += count;
    }
  }

  private prefetch(offset: number, count: number): Prefetch {
    return this.track(offset, count, this.readAt(offset, count));
  }

  private track(offset: number, count: number, reply: Promise<ReadResult | undefined>): Prefetch {
    const p: Prefetch = { offset, count, result: Promise.resolve(undefined), lent: 0, dropped: false, recycled: false };
    p.result = reply.then(
      (r) => {
        if (r === undefined) return undefined;
        p.arrived = performance.now();
        if (r.eof) this.eof = Math.min(this.eof ?? Infinity, offset + r.data.length);
        return r;
      },
      // A failed prefetch is not an answer: the read asks the server itself and gets the error.
      () => undefined,
    );
    return p;
  }

  private dropAll(prefetches: Prefetch[]): void {
    for (const p of prefetches) {
      p.dropped = true;
      this.settle(p);
    }
  }

  /** Recycles the reply of a prefetch out of the window once no read uses it (and it has come). */
  private settle(p: Prefetch): void {
    if (!p.dropped || p.lent > 0 || p.recycled) return;
    void p.result.then((r) => {
      if (r === undefined || p.lent > 0 || p.recycled) return;
      p.recycled = true;
      this.recycle(r.data);
    });
  }

  /**
   * Views of what fresh prefetched replies hold from `position` on, in order, at most `length`
   * bytes; each prefetch used goes in `used`. `atEnd`: the last one used ended the file there,
   * where the reader knows it ends too (nothing more to ask the server).
   */
  private async fromPrefetched(length: number, position: number, used: Prefetch[], knownEnd: number | undefined): Promise<{ parts: Buffer[]; atEnd: boolean }> {
    const parts: Buffer[] = [];
    let atEnd = false;
    let done = 0;
    while (done < length) {
      const at = position + done;
      const p = this.ahead.find((q) => q.offset <= at && at < q.offset + q.count);
      if (p === undefined) break;
      // Held before waiting, so that the window moving on meanwhile does not recycle it.
      p.lent++;
      const r = await p.result;
      const from = at - p.offset;
      if (r === undefined || performance.now() - p.arrived! > this.shape.maxAgeMs || from >= r.data.length) {
        p.lent--;
        if (r === undefined || from < r.data.length) {
          this.ahead = this.ahead.filter((q) => q !== p);
          this.dropAll([p]);
        } else this.settle(p);
        break;
      }
      used.push(p);
      const part = r.data.subarray(from, Math.min(r.data.length, from + length - done));
      parts.push(part);
      done += part.length;
      if (r.eof && from + part.length === r.data.length && p.offset + r.data.length === knownEnd) {
        atEnd = true;
        break;
      }
    }
    return { parts, atEnd };
  }
}
