import assert from 'assert/strict';
import { applyToOwnerLocks } from '../../src/locks/owner-locks';
import { HeldLock, HeldLockType, OFFSET_MAX, ValidRequest } from '../../src/locks/types';
import { MAX, R, shapes, U, W } from './helpers';

type Shape = [number, bigint, bigint];

/** 'W0-19 R20-MAX' → shapes; U stands for an unlock request. */
function parse(text: string): Shape[] {
  return text
    .split(' ')
    .filter((word) => word !== '')
    .map((word) => {
      const match = /^([RWU])(\d+)-(\d+|MAX)$/.exec(word);
      assert.ok(match, `bad shape ${word}`);
      const [, type = '', start = '', end = ''] = match;
      return [{ R, W, U }[type] ?? -1, BigInt(start), end === 'MAX' ? OFFSET_MAX : BigInt(end)];
    });
}

function held([type, start, end]: Shape): HeldLock {
  return { family: 'posix', owner: 7n, fh: 1, pid: 70, type: type as HeldLockType, start, end };
}

function request([type, start, end]: Shape, family: 'posix' | 'flock' = 'posix'): ValidRequest {
  return { family, owner: 7n, fh: 2, pid: 71, type: type as ValidRequest['type'], start, end };
}

function apply(before: string, req: string, family: 'posix' | 'flock' = 'posix'): { after: Shape[]; relaxed: boolean } {
  const [shape] = parse(req);
  assert.ok(shape);
  const update = applyToOwnerLocks(parse(before).map(held), request(shape, family));
  return { after: shapes(update.locks), relaxed: update.relaxed };
}

describe('locks: one owner’s POSIX ranges', () => {
  // [name, locks before, request, locks after, whether something became less restrictive]
  const cases: [string, string, string, string, boolean][] = [
    ['first lock', '', 'R0-9', 'R0-9', false],
    ['adjacent same type coalesces', 'R0-9', 'R10-19', 'R0-19', false],
    ['adjacent on the left coalesces', 'W10-19', 'W0-9', 'W0-19', false],
    ['overlapping same type coalesces', 'R0-9', 'R5-14', 'R0-14', false],
    ['a gap keeps locks apart', 'R0-9', 'R11-19', 'R0-9 R11-19', false],
    ['adjacent different type stays apart', 'W0-9', 'R10-19', 'W0-9 R10-19', false],
    ['read inside a write splits it in three', 'W0-19', 'R5-9', 'W0-4 R5-9 W10-19', true],
    ['write inside a read splits it in three', 'R0-19', 'W5-9', 'R0-4 W5-9 R10-19', false],
    ['unlock of the middle splits in two', 'R0-19', 'U5-9', 'R0-4 R10-19', true],
    ['unlock of the head', 'W0-19', 'U0-4', 'W5-19', true],
    ['unlock of the tail', 'W0-19', 'U15-30', 'W0-14', true],
    ['unlock next to a lock changes nothing', 'W10-19', 'U0-9', 'W10-19', false],
    ['unlock of nothing changes nothing', '', 'U0-MAX', '', false],
    ['unlock everything', 'R0-4 W10-19', 'U0-MAX', '', true],
    ['part of a split range coalesces with its neighbour', 'R0-9 W10-19', 'R10-14', 'R0-14 W15-19', true],
    ['filling a gap coalesces both sides', 'R0-4 W5-9 R10-14', 'R5-9', 'R0-14', true],
    ['a covering lock replaces all', 'R0-4 R10-14', 'W0-14', 'W0-14', false],
    ['downgrade of the same range', 'W0-9', 'R0-9', 'R0-9', true],
    ['upgrade of the same range', 'R0-9', 'W0-9', 'W0-9', false],
    ['same lock again', 'R0-9', 'R0-9', 'R0-9', false],
    ['to OFFSET_MAX coalesces with a lock before it', 'W0-9', 'W10-MAX', 'W0-MAX', false],
    ['unlock from an offset to OFFSET_MAX', 'R0-MAX', 'U100-MAX', 'R0-99', true],
    ['unlock of byte 0 of a whole-file lock', 'W0-MAX', 'U0-0', 'W1-MAX', true],
    ['a write over the last byte splits at OFFSET_MAX', 'R0-MAX', `W${MAX}-MAX`, `R0-${MAX - 1n} W${MAX}-MAX`, false],
  ];

  for (const [name, before, req, after, relaxed] of cases) {
    it(name, () => {
      assert.deepEqual(apply(before, req), { after: parse(after), relaxed });
    });
  }

  it('a coalesced lock carries the newest request’s fh and pid', () => {
    const update = applyToOwnerLocks([held([R, 0n, 9n])], request([R, 10n, 19n]));
    assert.equal(update.locks.length, 1);
    assert.equal(update.locks[0]?.fh, 2);
    assert.equal(update.locks[0]?.pid, 71);
  });

  it('the pieces of a split lock keep their own fh', () => {
    const update = applyToOwnerLocks([held([W, 0n, 19n])], request([R, 5n, 9n]));
    assert.deepEqual(
      update.locks.map((lock) => lock.fh),
      [1, 2, 1],
    );
  });
});

describe('locks: one owner’s flock lock', () => {
  it('a conversion replaces the lock, relaxing only on downgrade', () => {
    assert.deepEqual(apply('R0-MAX', 'W0-MAX', 'flock'), { after: parse('W0-MAX'), relaxed: false });
    assert.deepEqual(apply('W0-MAX', 'R0-MAX', 'flock'), { after: parse('R0-MAX'), relaxed: true });
  });

  it('unlock drops the lock', () => {
    assert.deepEqual(apply('R0-MAX', 'U0-MAX', 'flock'), { after: [], relaxed: true });
    assert.deepEqual(apply('', 'U0-MAX', 'flock'), { after: [], relaxed: false });
  });
});
