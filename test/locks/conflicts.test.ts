import assert from 'assert/strict';
import { constants } from 'os';
import { LockError, LockManager, LockRequest } from '../../src/locks';
import { flock, MAX, posix, R, shapes, tick, track, U, W } from './helpers';

describe('locks: conflicts and immediate answers', () => {
  let locks: LockManager;
  beforeEach(() => {
    locks = new LockManager();
  });
  afterEach(() => locks.dispose());

  async function attempt(ino: number, request: LockRequest): Promise<string> {
    const result = track(locks.set(ino, request, false).done);
    await tick();
    return result.state;
  }

  function outcome(ino: number, ...args: Parameters<typeof posix>): Promise<string> {
    return attempt(ino, posix(...args));
  }

  it('read locks of different owners are compatible', async () => {
    assert.equal(await outcome(1, 1n, R, 0n, 99n), 'granted');
    assert.equal(await outcome(1, 2n, R, 50n, 149n), 'granted');
    assert.equal(locks.held(1).length, 2);
  });

  it('a write conflicts with another owner’s overlapping read, and the other way round', async () => {
    assert.equal(await outcome(1, 1n, R, 0n, 9n), 'granted');
    assert.equal(await outcome(1, 2n, W, 9n, 20n), 'EAGAIN');
    assert.equal(await outcome(2, 1n, W, 0n, 9n), 'granted');
    assert.equal(await outcome(2, 2n, R, 5n, 5n), 'EAGAIN');
  });

  it('EAGAIN comes as a LockError with a negative errno', async () => {
    await locks.set(1, posix(1n, W), false).done;
    await assert.rejects(locks.set(1, posix(2n, R), false).done, (error: unknown) => {
      assert.ok(error instanceof LockError);
      assert.equal(error.code, 'EAGAIN');
      assert.equal(error.errno, -constants.errno.EAGAIN);
      return true;
    });
  });

  it('ranges that only touch do not conflict', async () => {
    assert.equal(await outcome(1, 1n, W, 0n, 9n), 'granted');
    assert.equal(await outcome(1, 2n, W, 10n, 19n), 'granted');
  });

  it('a lock to OFFSET_MAX conflicts with anything beyond its start', async () => {
    assert.equal(await outcome(1, 1n, W, 1000n, MAX), 'granted');
    assert.equal(await outcome(1, 2n, R, MAX, MAX), 'EAGAIN');
    assert.equal(await outcome(1, 2n, R, 1n << 62n, (1n << 62n) + 1n), 'EAGAIN');
    assert.equal(await outcome(1, 2n, W, 0n, 999n), 'granted');
  });

  it('an owner never conflicts with itself: its new lock replaces the old range', async () => {
    assert.equal(await outcome(1, 1n, R, 0n, 99n), 'granted');
    assert.equal(await outcome(1, 1n, W, 50n, 149n), 'granted');
    assert.deepEqual(shapes(locks.held(1)), [
      [R, 0n, 49n],
      [W, 50n, 149n],
    ]);
  });

  it('locks on different inodes never conflict', async () => {
    assert.equal(await outcome(1, 1n, W), 'granted');
    assert.equal(await outcome(2, 2n, W), 'granted');
  });

  it('POSIX and flock locks never conflict, even with the same owner value', async () => {
    assert.equal(await attempt(1, posix(5n, W)), 'granted');
    assert.equal(await attempt(1, flock(6n, W)), 'granted', 'a flock lock ignores POSIX locks');
    assert.equal(await attempt(2, flock(5n, W)), 'granted');
    assert.equal(await attempt(2, posix(6n, W)), 'granted', 'a POSIX lock ignores flock locks');
    assert.equal(await attempt(3, posix(7n, W)), 'granted');
    assert.equal(await attempt(3, flock(7n, W)), 'granted');
    assert.equal(await attempt(1, posix(8n, R)), 'EAGAIN');
    assert.equal(await attempt(1, flock(8n, R)), 'EAGAIN');
    assert.deepEqual(
      locks.held(3).map((lock) => [lock.family, lock.owner]),
      [
        ['posix', 7n],
        ['flock', 7n],
      ],
    );
  });

  it('an unlock succeeds and frees the range for others', async () => {
    await locks.set(1, posix(1n, W, 0n, 99n), false).done;
    await locks.set(1, posix(1n, U, 10n, 19n), false).done;
    assert.equal(await outcome(1, 2n, W, 10n, 19n), 'granted');
    assert.equal(await outcome(1, 3n, W, 20n, 20n), 'EAGAIN');
  });

  it('an unlock of nothing succeeds', async () => {
    await locks.set(1, posix(1n, U), false).done;
    assert.deepEqual(locks.held(1), []);
  });

  describe('validation', () => {
    const bad: [string, ReturnType<typeof posix>][] = [
      ['start after end', posix(1n, R, 10n, 9n)],
      ['negative start', posix(1n, R, -1n, 9n)],
      ['end past OFFSET_MAX', posix(1n, R, 0n, MAX + 1n)],
      ['unknown type', posix(1n, 3)],
      ['negative type', posix(1n, -1)],
    ];
    for (const [name, request] of bad) {
      it(`rejects ${name} with EINVAL`, async () => {
        await assert.rejects(locks.set(1, request, false).done, { code: 'EINVAL' });
        assert.deepEqual(locks.held(1), []);
        assert.throws(() => locks.test(1, request), { code: 'EINVAL' });
      });
    }

    it('rejects an F_UNLCK probe with EINVAL', () => {
      assert.throws(() => locks.test(1, posix(1n, U)), { code: 'EINVAL' });
    });
  });

  describe('flock', () => {
    function flockOutcome(ino: number, owner: bigint, type: number): Promise<string> {
      return attempt(ino, flock(owner, type));
    }

    it('shared locks coexist, an exclusive one does not', async () => {
      assert.equal(await flockOutcome(1, 1n, R), 'granted');
      assert.equal(await flockOutcome(1, 2n, R), 'granted');
      assert.equal(await flockOutcome(1, 3n, W), 'EAGAIN');
    });

    it('covers the whole file whatever range came with it', async () => {
      await locks.set(1, { ...flock(1n, W), start: 5n, end: 6n }, false).done;
      assert.deepEqual(shapes(locks.held(1)), [[W, 0n, MAX]]);
    });

    it('upgrade and downgrade replace the owner’s single lock', async () => {
      assert.equal(await flockOutcome(1, 1n, R), 'granted');
      assert.equal(await flockOutcome(1, 1n, W), 'granted');
      assert.deepEqual(shapes(locks.held(1)), [[W, 0n, MAX]]);
      assert.equal(await flockOutcome(1, 2n, R), 'EAGAIN');
      assert.equal(await flockOutcome(1, 1n, R), 'granted');
      assert.equal(await flockOutcome(1, 2n, R), 'granted');
      assert.deepEqual(shapes(locks.held(1)), [
        [R, 0n, MAX],
        [R, 0n, MAX],
      ]);
    });

    it('a failed conversion has already dropped the old lock, as on Linux', async () => {
      assert.equal(await flockOutcome(1, 1n, R), 'granted');
      assert.equal(await flockOutcome(1, 2n, R), 'granted');
      assert.equal(await flockOutcome(1, 1n, W), 'EAGAIN');
      assert.deepEqual(
        locks.held(1).map((lock) => lock.owner),
        [2n],
      );
    });

    it('asking again for the lock already held is a no-op success', async () => {
      const granted: bigint[] = [];
      locks.dispose();
      locks = new LockManager({ onGranted: (_ino, request) => granted.push(request.owner) });
      assert.equal(await flockOutcome(1, 1n, W), 'granted');
      assert.equal(await flockOutcome(1, 1n, W), 'granted');
      assert.deepEqual(granted, [1n]);
      assert.equal(locks.held(1).length, 1);
    });

    it('unlock drops it', async () => {
      await locks.set(1, flock(1n, W), false).done;
      await locks.set(1, flock(1n, U), false).done;
      assert.deepEqual(locks.held(1), []);
    });
  });
});

describe('locks: GETLK', () => {
  let locks: LockManager;
  beforeEach(() => {
    locks = new LockManager();
  });
  afterEach(() => locks.dispose());

  it('reports the conflicting lock’s owner, type, range and pid', async () => {
    await locks.set(1, posix(1n, W, 100n, 199n, { pid: 4242 }), false).done;
    const conflict = locks.test(1, posix(2n, R, 150n, 150n));
    assert.ok(conflict);
    const { type, start, end, pid, owner } = conflict;
    assert.deepEqual({ type, start, end, pid, owner }, { type: W, start: 100n, end: 199n, pid: 4242, owner: 1n });
  });

  it('answers null (unlocked) when nothing conflicts', async () => {
    assert.equal(locks.test(1, posix(2n, W)), null);
    await locks.set(1, posix(1n, R, 0n, 9n), false).done;
    assert.equal(locks.test(1, posix(2n, R)), null);
    assert.equal(locks.test(1, posix(2n, W, 10n, MAX)), null);
    assert.notEqual(locks.test(1, posix(2n, W, 9n, 9n)), null);
  });

  it('never reports the probing owner’s own locks', async () => {
    await locks.set(1, posix(1n, W), false).done;
    assert.equal(locks.test(1, posix(1n, W)), null);
  });

  it('reports the conflicting lock that starts lowest', async () => {
    await locks.set(1, posix(1n, R, 500n, 599n), false).done;
    await locks.set(1, posix(2n, R, 100n, 199n), false).done;
    await locks.set(1, posix(3n, W, 300n, 399n), false).done;
    assert.equal(locks.test(1, posix(4n, W))?.owner, 2n);
    assert.equal(locks.test(1, posix(4n, R))?.owner, 3n);
  });

  it('reports one of the owner’s split ranges, not a merged view', async () => {
    await locks.set(1, posix(1n, W, 0n, 99n), false).done;
    await locks.set(1, posix(1n, U, 40n, 59n), false).done;
    const conflict = locks.test(1, posix(2n, R, 50n, 80n));
    assert.ok(conflict);
    assert.deepEqual(shapes([conflict]), [[W, 60n, 99n]]);
  });

  it('answers flock probes from flock locks only', async () => {
    await locks.set(1, posix(1n, W), false).done;
    assert.equal(locks.test(1, flock(2n, W)), null);
    await locks.set(1, flock(3n, R), false).done;
    assert.equal(locks.test(1, flock(2n, W))?.owner, 3n);
  });

  it('does not report what is merely waiting', async () => {
    await locks.set(1, posix(1n, R), false).done;
    const waiter = track(locks.set(1, posix(2n, W), true).done);
    assert.equal(locks.test(1, posix(3n, R)), null);
    assert.equal(waiter.state, 'pending');
  });
});
