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
 */
import { Nfs3Status, NfsError } from './errors';
import type { ReadResult } from './nfs3';
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

/** An open file's reads. */
export const OPEN_FILE_READ_AHEAD: ReadAheadShape = { chunk: MiB, depth: 4, streak: 2, maxAgeMs: 100 };

interface Prefetch {
  offset: number;
  count: number;
  result: Promise<ReadResult | undefined>;
  /** When its reply came (performance.now()), once it has. */
  arrived?: number;
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
  ) {
    for (const key of ['chunk', 'depth'] as const) {
      const value = shape[key];
      if (!Number.isInteger(value) || value < 1) throw new RangeError(`read-ahead ${key} must be a positive integer, got ${value}`);
    }
  }

  /**
   * Reads [offset, end) in order, `shape.chunk` bytes at a time, or fewer if the file ends first;
   * the READs after the one awaited are already in flight.
   */
  async *stream(offset: number, end: number): AsyncGenerator<Buffer, void, undefined> {
    this.until = end;
    for (let at = offset; at < end;) {
      const length = Math.min(this.shape.chunk, end - at);
      const buf = Buffer.allocUnsafe(length);
      const done = await this.read(buf, 0, length, at);
      if (done > 0) yield buf.subarray(0, done);
      // read() stops short only at end of file.
      if (done < length) return;
      at += done;
    }
  }

  async read(buf: Buffer, offset: number, length: number, position: number): Promise<number> {
    this.follow(position, length);
    let done = await this.fromPrefetched(buf, offset, length, position);
    while (done < length) {
      const { data, eof } = await this.readAt(position + done, Math.min(length - done, this.maxRead));
      if (data.length === 0 && !eof) throw new NfsError(Nfs3Status.IO, 'read', `(no data and no end of file at offset ${position + done})`);
      data.copy(buf, offset + done);
      done += data.length;
      if (eof) break;
    }
    if (this.eof !== undefined && position + done > this.eof) this.eof = undefined;
    return done;
  }

  /** Notes where this read is and, in a sequential run, keeps the READs ahead of it going. */
  private follow(position: number, length: number): void {
    if (position === this.expected) this.streak++;
    else {
      this.streak = 0;
      this.ahead = [];
      this.aheadEnd = 0;
    }
    this.expected = position + length;
    this.ahead = this.ahead.filter((p) => p.offset + p.count > position);
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
    const p: Prefetch = { offset, count, result: Promise.resolve(undefined) };
    p.result = this.readAt(offset, count).then(
      (r) => {
        p.arrived = performance.now();
        if (r.eof) this.eof = Math.min(this.eof ?? Infinity, offset + r.data.length);
        return r;
      },
      // A failed prefetch is not an answer: the read asks the server itself and gets the error.
      () => undefined,
    );
    return p;
  }

  /** Copies what fresh prefetched replies hold from `position` on; returns the bytes copied. */
  private async fromPrefetched(buf: Buffer, offset: number, length: number, position: number): Promise<number> {
    let done = 0;
    while (done < length) {
      const at = position + done;
      const p = this.ahead.find((q) => q.offset <= at && at < q.offset + q.count);
      if (p === undefined) break;
      const r = await p.result;
      if (r === undefined || performance.now() - p.arrived! > this.shape.maxAgeMs) {
        this.ahead = this.ahead.filter((q) => q !== p);
        break;
      }
      const from = at - p.offset;
      if (from >= r.data.length) break;
      done += r.data.copy(buf, offset + done, from, Math.min(r.data.length, from + length - done));
    }
    return done;
  }
}
