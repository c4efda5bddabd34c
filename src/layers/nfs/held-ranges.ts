// The byte ranges one lock owner holds on one file, as POSIX lock semantics leave them after
// each lock and unlock: what a client must take again when the server has forgotten its locks.

export interface HeldRange {
  start: bigint;
  /** Inclusive; RANGE_END: to the end of the file and beyond. */
  end: bigint;
  exclusive: boolean;
}

export const RANGE_END = (1n << 64n) - 1n;

/** NLM's (offset, length) as an inclusive range; length 0 runs to the end. */
export function rangeOf(offset: bigint, length: bigint): { start: bigint; end: bigint } {
  return { start: offset, end: length === 0n || offset + length - 1n >= RANGE_END ? RANGE_END : offset + length - 1n };
}

/** NLM's length for an inclusive range. */
export function lengthOf(r: { start: bigint; end: bigint }): bigint {
  return r.end === RANGE_END ? 0n : r.end - r.start + 1n;
}

/** The ranges with [start, end] no longer held. */
export function withoutRange(ranges: readonly HeldRange[], start: bigint, end: bigint): HeldRange[] {
  const out: HeldRange[] = [];
  for (const r of ranges) {
    if (r.end < start || r.start > end) {
      out.push(r);
      continue;
    }
    if (r.start < start) out.push({ ...r, end: start - 1n });
    if (r.end > end) out.push({ ...r, start: end + 1n });
  }
  return out;
}

/** The ranges with [start, end] held as asked (a new lock replaces what it overlaps). */
export function withRange(ranges: readonly HeldRange[], start: bigint, end: bigint, exclusive: boolean): HeldRange[] {
  return [...withoutRange(ranges, start, end), { start, end, exclusive }].sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
}
