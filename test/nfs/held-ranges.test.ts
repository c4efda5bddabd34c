import assert from 'assert/strict';
import { lengthOf, RANGE_END, rangeOf, withoutRange, withRange, type HeldRange } from '../../src/layers/nfs/held-ranges';

function show(ranges: HeldRange[]): string[] {
  return ranges.map((r) => `${r.start}-${r.end === RANGE_END ? 'end' : r.end} ${r.exclusive ? 'W' : 'R'}`);
}

describe('NLM: the ranges an owner holds, as POSIX locking leaves them', () => {
  it("converts NLM's (offset, length) and back; length 0 runs to the end", () => {
    assert.deepEqual(rangeOf(10n, 5n), { start: 10n, end: 14n });
    assert.deepEqual(rangeOf(10n, 0n), { start: 10n, end: RANGE_END });
    assert.deepEqual(rangeOf(RANGE_END - 1n, 10n), { start: RANGE_END - 1n, end: RANGE_END }, 'past the largest offset: to the end');
    assert.equal(lengthOf({ start: 10n, end: 14n }), 5n);
    assert.equal(lengthOf({ start: 10n, end: RANGE_END }), 0n);
  });

  it('a lock replaces what it overlaps and keeps the rest; ranges stay sorted', () => {
    let held = withRange([], 0n, RANGE_END, false);
    held = withRange(held, 100n, 199n, true);
    assert.deepEqual(show(held), ['0-99 R', '100-199 W', '200-end R']);
    held = withRange(held, 50n, 149n, false);
    assert.deepEqual(show(held), ['0-49 R', '50-149 R', '150-199 W', '200-end R']);
  });

  it('an unlock splits a range it falls inside and removes what it covers', () => {
    let held = withRange([], 0n, 999n, true);
    held = withoutRange(held, 100n, 199n);
    assert.deepEqual(show(held), ['0-99 W', '200-999 W']);
    held = withoutRange(held, 0n, RANGE_END);
    assert.deepEqual(held, []);
  });
});
