/**
 * Parsing of fuse-overlayfs's `uidmapping=` / `gidmapping=` values:
 * `LAYER:VIEW:COUNT[:LAYER:VIEW:COUNT…]`, where a layer file owned by LAYER+i appears as VIEW+i
 * for 0 <= i < COUNT (verified against fuse-overlayfs 1.10: `0:100000:65536` shows a root-owned
 * file as 100000). One leading colon is allowed: containers-storage writes a ':' before every
 * range, the first included (`uidmapping=:0:100000:65536`).
 */
import { ID } from '../util/bounds';

/** One contiguous range: layer ids layer..layer+count-1 appear as view..view+count-1. */
export interface IdRange {
  readonly layer: number;
  readonly view: number;
  readonly count: number;
}

export type MappingOption = 'uidmapping' | 'gidmapping';

/**
 * The highest id a range may cover. (uid_t)-1 is not an id: chown(2) reads it as "leave
 * unchanged" and the kernel's uid_map refuses ranges that reach it, so we do too.
 */
export const MAX_MAPPABLE_ID = ID.max;

const DECIMAL = /^[0-9]+$/;

interface WrittenRange extends IdRange {
  /** The range exactly as the user wrote it, for error messages. */
  readonly text: string;
}

/**
 * Parses a mapping option's value. Throws an Error naming the offending range as written when
 * a field is not a decimal number, a range is incomplete, a count is 0, a range reaches past
 * MAX_MAPPABLE_ID, or two ranges overlap on the layer side or the view side.
 */
export function parseIdRanges(option: MappingOption, spec: string): IdRange[] {
  const chain = spec.startsWith(':') ? spec.slice(1) : spec;
  if (chain === '') {
    throw new Error(`${option}: empty mapping, expected LAYER:VIEW:COUNT[:LAYER:VIEW:COUNT…]`);
  }
  const fields = chain.split(':');
  const ranges: WrittenRange[] = [];
  for (let i = 0; i < fields.length; i += 3) {
    const written = fields.slice(i, i + 3);
    ranges.push(parseRange(option, written));
  }
  rejectOverlaps(option, ranges);
  return ranges.map(({ layer, view, count }) => ({ layer, view, count }));
}

function parseRange(option: MappingOption, written: string[]): WrittenRange {
  const text = written.join(':');
  if (text === '') {
    throw new Error(`${option}: empty range after the last ':', expected LAYER:VIEW:COUNT`);
  }
  if (written.length < 3) {
    throw new Error(`${option}: range ${text} is incomplete, expected LAYER:VIEW:COUNT`);
  }
  const bad = written.find((field) => !DECIMAL.test(field));
  if (bad !== undefined) {
    throw new Error(`${option}: range ${text} has "${bad}" where a decimal number belongs`);
  }
  const [layer, view, count] = written.map(Number);
  if (count === 0) {
    throw new Error(`${option}: range ${text} has count 0`);
  }
  for (const [side, first] of [
    ['layer', layer],
    ['view', view],
  ] as const) {
    if (first + count - 1 > MAX_MAPPABLE_ID) {
      throw new Error(`${option}: range ${text} goes past ${MAX_MAPPABLE_ID} on the ${side} side`);
    }
  }
  return { layer, view, count, text };
}

function rejectOverlaps(option: MappingOption, ranges: readonly WrittenRange[]): void {
  for (let later = 1; later < ranges.length; later++) {
    for (let earlier = 0; earlier < later; earlier++) {
      const a = ranges[earlier];
      const b = ranges[later];
      const side = overlaps(a.view, b.view, a.count, b.count) ? 'view' : overlaps(a.layer, b.layer, a.count, b.count) ? 'layer' : undefined;
      if (side !== undefined) {
        throw new Error(`${option}: range ${a.text} overlaps ${b.text} on the ${side} side`);
      }
    }
  }
}

function overlaps(firstA: number, firstB: number, countA: number, countB: number): boolean {
  return firstA < firstB + countB && firstB < firstA + countA;
}
