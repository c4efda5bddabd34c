/**
 * Buffers for large RPC replies (READ data), reused once their user gives them back. A fresh
 * megabyte per READ costs page faults on first touch, a cold cache for the copy from the
 * socket, and garbage collections (V8 counts it as external memory): together more than the
 * copy itself. One pool for the process: what it keeps is bounded however many mounts it serves.
 */
import { MiB } from '../../util/linux';

export class ReplyBuffers {
  private readonly free: Buffer[] = [];
  /** Every buffer this pool made: only those come back to it. */
  private readonly made = new WeakSet<ArrayBufferLike>();

  constructor(
    /** Bytes of each pooled buffer: the largest reply taken from the pool. */
    readonly size: number,
    /** Replies shorter than this are allocated as usual. */
    private readonly minimum: number,
    /** Free buffers kept at most. */
    private readonly keep: number,
  ) {}

  /** A buffer of `length` bytes, pooled when the length is in the pool's range. */
  take(length: number): Buffer {
    if (length < this.minimum || length > this.size) return Buffer.allocUnsafe(length);
    let buf = this.free.pop();
    if (buf === undefined) {
      buf = Buffer.allocUnsafeSlow(this.size);
      this.made.add(buf.buffer);
    }
    return buf.subarray(0, length);
  }

  /**
   * Gives back the pooled buffer `view` is part of, if it is one; no view of it may be used
   * afterwards. Views of other buffers are left to the garbage collector.
   */
  give(view: Buffer): void {
    const memory = view.buffer;
    if (!this.made.has(memory) || this.free.length >= this.keep) return;
    if (this.free.some((b) => b.buffer === memory)) throw new Error('reply buffer given back twice');
    this.free.push(Buffer.from(memory, 0, this.size));
  }
}

/** READ replies of up to 2 MiB of data (the largest READ the client sends) and their headers. */
export const replyBuffers = new ReplyBuffers(2 * MiB + 4096, 64 * 1024, 6);
