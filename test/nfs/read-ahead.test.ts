import assert from 'assert/strict';
import { randomBytes } from 'crypto';
import type { ReadResult } from '../../src/layers/nfs/nfs3';
import { OPEN_FILE_READ_AHEAD, ReadAhead, shapeFor } from '../../src/layers/nfs/read-ahead';
import { ReplyBuffers } from '../../src/layers/nfs/reply-buffers';
import type { LentParts } from '../../src/layers/types';

const KiB = 1024;
const MiB = 1024 * KiB;

/** A file served by READs answered a tick later, each in a buffer of a pool that overwrites what comes back. */
function server(file: Buffer): {
  readAt: (offset: number, count: number) => Promise<ReadResult>;
  recycle: (data: Buffer) => void;
  reads: number;
  recycled: number;
} {
  const pool = new ReplyBuffers(MiB, 1, 64);
  const s = {
    reads: 0,
    recycled: 0,
    readAt: async (offset: number, count: number): Promise<ReadResult> => {
      s.reads++;
      await new Promise((resolve) => setImmediate(resolve));
      const data = pool.take(Math.max(0, Math.min(count, file.length - offset)));
      file.copy(data, 0, offset, offset + data.length);
      return { data, eof: offset + data.length >= file.length };
    },
    recycle: (data: Buffer) => {
      s.recycled++;
      // What reuse would do to bytes still lent out.
      Buffer.from(data.buffer, data.byteOffset, data.length).fill(0xee);
      pool.give(data);
    },
  };
  return s;
}

const joined = (lent: LentParts): Buffer => Buffer.concat(lent.parts);

describe('NFS read-ahead', function () {
  this.timeout(10_000);

  it('lends the bytes of prefetched replies and reuses a reply only once every read from it is released', async () => {
    const file = randomBytes(6 * MiB + 123);
    const s = server(file);
    const ahead = new ReadAhead(s.readAt, MiB, { chunk: MiB, depth: 3, streak: 1, maxAgeMs: Infinity }, s.recycle);
    // Reads of 384 KiB, each released only after the next two arrived: replies are shared
    // between reads and between releases.
    const held: Array<{ at: number; lent: LentParts }> = [];
    for (let at = 0; at < file.length; at += 384 * KiB) {
      held.push({ at, lent: await ahead.readParts(384 * KiB, at) });
      while (held.length > 2) {
        const { at: from, lent } = held.shift()!;
        assert.deepEqual(joined(lent), file.subarray(from, from + 384 * KiB), `bytes at ${from}`);
        lent.release();
        lent.release();
      }
    }
    for (const { at, lent } of held) {
      assert.deepEqual(joined(lent), file.subarray(at, at + 384 * KiB));
      lent.release();
    }
    ahead.forget();
    await new Promise((resolve) => setImmediate(resolve));
    assert.ok(s.recycled > 0, 'replies were reused');
    assert.ok(s.recycled <= s.reads);
  });

  it("keeps an open file's window where the server's READs are smaller, in at most 8 of them", () => {
    const window = OPEN_FILE_READ_AHEAD.chunk * OPEN_FILE_READ_AHEAD.depth;
    assert.equal(shapeFor(OPEN_FILE_READ_AHEAD, 64 * MiB), OPEN_FILE_READ_AHEAD);
    const knfsd = shapeFor(OPEN_FILE_READ_AHEAD, MiB);
    assert.equal(knfsd.chunk * knfsd.depth, window);
    const tiny = shapeFor(OPEN_FILE_READ_AHEAD, 32 * KiB);
    assert.deepEqual([tiny.chunk, tiny.depth], [32 * KiB, 8]);
  });

  it('copies into a buffer with read(), starting anywhere, and stops at end of file', async () => {
    const file = randomBytes(3 * MiB + 5);
    const s = server(file);
    const ahead = new ReadAhead(s.readAt, MiB, { chunk: MiB, depth: 2, streak: 0, maxAgeMs: Infinity }, s.recycle);
    const buf = Buffer.alloc(700 * KiB);
    let at = 5;
    for (;;) {
      const n = await ahead.read(buf, 0, buf.length, at);
      assert.deepEqual(buf.subarray(0, n), file.subarray(at, at + n));
      at += n;
      if (n < buf.length) break;
    }
    assert.equal(at, file.length);
  });

  it('answers the first read from a primed reply (an OPEN’s READ); at the end the reader knows, asks nothing more', async () => {
    const file = randomBytes(5000);
    const s = server(file);
    const ahead = new ReadAhead(s.readAt, MiB, OPEN_FILE_READ_AHEAD, s.recycle);
    ahead.prime(0, 128 * KiB, await s.readAt(0, 128 * KiB));
    s.reads = 0;
    const lent = await ahead.readParts(8 * KiB, 0, file.length);
    assert.deepEqual(joined(lent), file);
    lent.release();
    assert.equal(s.reads, 0, 'no READ: the primed reply ends the file where the reader knows it ends');
    // A reader that knows a longer file (it grew since) asks the server for the rest.
    const longer = await ahead.readParts(8 * KiB, 4000, 6000);
    assert.deepEqual(joined(longer), file.subarray(4000));
    longer.release();
    assert.equal(s.reads, 1);
  });

  it('goes to the server once a primed reply is older than the window allows', async () => {
    const file = randomBytes(5000);
    const s = server(file);
    const ahead = new ReadAhead(s.readAt, MiB, { ...OPEN_FILE_READ_AHEAD, maxAgeMs: 10 }, s.recycle);
    ahead.prime(0, 128 * KiB, await s.readAt(0, 128 * KiB));
    await new Promise((r) => setTimeout(r, 30));
    s.reads = 0;
    const lent = await ahead.readParts(8 * KiB, 0, file.length);
    assert.deepEqual(joined(lent), file);
    lent.release();
    assert.equal(s.reads, 1);
  });
});
