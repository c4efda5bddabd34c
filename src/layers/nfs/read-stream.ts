// Pipelined sequential reading: keeps several READs in flight and yields their data in order.

import { Nfs3Status, NfsError } from './errors';
import type { ReadResult } from './nfs3';

export type ReadChunk = (offset: bigint, count: number) => Promise<ReadResult>;

interface InFlight {
  offset: bigint;
  count: number;
  result: Promise<ReadResult>;
}

function start(read: ReadChunk, offset: bigint, count: number): InFlight {
  const result = read(offset, count);
  // Reads still in flight when the consumer stops early are dropped; their failures must not
  // surface as unhandled rejections. The rejection is still seen by whoever awaits `result`.
  result.catch(() => undefined);
  return { offset, count, result };
}

/**
 * Yields the bytes of [offset, end) in order, or fewer if the file ends first. Chunks are views
 * of the reply buffers. A short read that is not at end of file is completed by re-reading the
 * missing part before any later chunk is yielded.
 */
export async function* pipelinedRead(read: ReadChunk, offset: bigint, end: bigint, chunkSize: number, depth: number): AsyncGenerator<Buffer, void, undefined> {
  if (!Number.isInteger(chunkSize) || chunkSize < 1) throw new RangeError(`chunk size must be a positive integer, got ${chunkSize}`);
  if (!Number.isInteger(depth) || depth < 1) throw new RangeError(`pipeline depth must be a positive integer, got ${depth}`);
  const queue: InFlight[] = [];
  let next = offset;
  const fill = (): void => {
    while (queue.length < depth && next < end) {
      const count = Number(end - next < BigInt(chunkSize) ? end - next : BigInt(chunkSize));
      queue.push(start(read, next, count));
      next += BigInt(count);
    }
  };

  fill();
  while (queue.length > 0) {
    const head = queue[0];
    const { data, eof } = await head.result;
    queue.shift();
    if (data.length > 0) yield data;
    if (data.length < head.count) {
      if (eof) return;
      if (data.length === 0) {
        throw new NfsError(Nfs3Status.IO, 'read', `(no data and no end of file at offset ${head.offset})`);
      }
      queue.unshift(start(read, head.offset + BigInt(data.length), head.count - data.length));
    }
    fill();
  }
}
