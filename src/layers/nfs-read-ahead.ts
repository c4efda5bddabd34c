/**
 * Read-ahead for an open NFS file. The kernel asks a FUSE filesystem for file data 128 KiB at a
 * time, two requests at once, so a sequential read would wait for one server round trip per
 * 128 KiB. Once reads follow each other, the next bytes are asked of the server in larger
 * READs, several in flight, and the reads that come are answered from them.
 *
 * Freshness: prefetched bytes serve only reads that arrive within MAX_AGE_MS of their reply,
 * so they are never older than the kernel's own cached attributes would let them be; any other
 * read goes to the server.
 */
import type { ReadResult } from './nfs';
import { MiB } from '../util/linux';

/** One READ: `count` bytes at `offset`. */
export type ReadAt = (offset: number, count: number) => Promise<ReadResult>;

const CHUNK = MiB;
const DEPTH = 4;
/** Reads in a row that continue each other before reading ahead starts. */
const STREAK = 2;
const MAX_AGE_MS = 100;

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

  constructor(
    private readonly readAt: ReadAt,
    private readonly maxRead: number,
  ) {}

  async read(buf: Buffer, offset: number, length: number, position: number): Promise<number> {
    this.follow(position, length);
    let done = await this.fromPrefetched(buf, offset, length, position);
    while (done < length) {
      const { data, eof } = await this.readAt(position + done, Math.min(length - done, this.maxRead));
      data.copy(buf, offset + done);
      done += data.length;
      if (eof || data.length === 0) break;
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
    if (this.streak < STREAK) return;
    this.aheadEnd = Math.max(this.aheadEnd, this.expected);
    const limit = Math.min(this.expected + DEPTH * CHUNK, this.eof ?? Infinity);
    while (this.ahead.length < DEPTH && this.aheadEnd < limit) {
      const count = Math.min(CHUNK, this.maxRead, limit - this.aheadEnd);
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
      if (r === undefined || performance.now() - p.arrived! > MAX_AGE_MS) {
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
