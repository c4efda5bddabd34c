import assert from 'assert/strict';
import { LockManager } from '../../src/locks';
import { flock, posix, R, shapes, tick, track, U, W } from './helpers';

describe('locks: FLUSH and RELEASE', () => {
  let locks: LockManager;
  beforeEach(() => {
    locks = new LockManager();
  });
  afterEach(() => locks.dispose());

  describe('releaseOwner (FLUSH)', () => {
    it('drops every POSIX lock of that owner on that inode only', async () => {
      await locks.set(1, posix(1n, R, 0n, 9n), false).done;
      await locks.set(1, posix(1n, W, 20n, 29n), false).done;
      await locks.set(1, posix(2n, R, 0n, 9n), false).done;
      await locks.set(1, flock(1n, W), false).done;
      await locks.set(2, posix(1n, W), false).done;
      await locks.releaseOwner(1, 1n);
      assert.deepEqual(
        locks.held(1).map((lock) => [lock.family, lock.owner]),
        [
          ['posix', 2n],
          ['flock', 1n],
        ],
      );
      assert.equal(locks.held(2).length, 1);
    });

    it('wakes waiters blocked by the dropped locks', async () => {
      await locks.set(1, posix(1n, W), false).done;
      const waiter = track(locks.set(1, posix(2n, W), true).done);
      await locks.releaseOwner(1, 1n);
      await tick();
      assert.equal(waiter.state, 'granted');
    });

    it('leaves the owner’s own waiters queued', async () => {
      await locks.set(1, posix(2n, W, 0n, 9n), false).done;
      await locks.set(1, posix(1n, R, 50n, 59n), false).done;
      const waiter = track(locks.set(1, posix(1n, W, 0n, 9n), true).done);
      await locks.releaseOwner(1, 1n);
      await tick();
      assert.equal(waiter.state, 'pending');
      assert.equal(locks.waiting(1), 1);
      await locks.set(1, posix(2n, U), false).done;
      await tick();
      assert.equal(waiter.state, 'granted');
    });

    it('resolves for an inode without locks', async () => {
      await locks.releaseOwner(99, 1n);
    });
  });

  describe('releaseFh (RELEASE)', () => {
    it('drops the locks of both families acquired through that fh', async () => {
      await locks.set(1, posix(1n, W, 0n, 9n, { fh: 10 }), false).done;
      await locks.set(1, posix(1n, W, 20n, 29n, { fh: 11 }), false).done;
      await locks.set(1, posix(2n, R, 40n, 49n, { fh: 10 }), false).done;
      await locks.set(1, flock(3n, R, { fh: 10 }), false).done;
      await locks.set(1, flock(4n, R, { fh: 12 }), false).done;
      await locks.releaseFh(1, 10);
      assert.deepEqual(
        locks.held(1).map((lock) => [lock.family, lock.owner, lock.fh]),
        [
          ['posix', 1n, 11],
          ['flock', 4n, 12],
        ],
      );
    });

    it('rejects waiters queued through that fh with EBADF and keeps the others', async () => {
      await locks.set(1, posix(1n, W), false).done;
      await locks.set(1, flock(5n, W, { fh: 22 }), false).done;
      const gone = track(locks.set(1, posix(2n, W, 0n, 9n, { fh: 20 }), true).done);
      const stays = track(locks.set(1, posix(3n, W, 0n, 9n, { fh: 21 }), true).done);
      const flockGone = track(locks.set(1, flock(4n, W, { fh: 20 }), true).done);
      await locks.releaseFh(1, 20);
      await tick();
      assert.equal(locks.waiting(1), 1);
      assert.deepEqual([gone.state, stays.state, flockGone.state], ['EBADF', 'pending', 'EBADF']);
    });

    it('a coalesced lock belongs to the fh of the request that last extended it', async () => {
      await locks.set(1, posix(1n, R, 0n, 9n, { fh: 30 }), false).done;
      await locks.set(1, posix(1n, R, 10n, 19n, { fh: 31 }), false).done;
      await locks.releaseFh(1, 30);
      assert.deepEqual(shapes(locks.held(1)), [[R, 0n, 19n]]);
      await locks.releaseFh(1, 31);
      assert.deepEqual(locks.held(1), []);
    });

    it('wakes waiters blocked by the dropped locks', async () => {
      await locks.set(1, flock(1n, W, { fh: 40 }), false).done;
      const waiter = track(locks.set(1, flock(2n, W, { fh: 41 }), true).done);
      await locks.releaseFh(1, 40);
      await tick();
      assert.equal(waiter.state, 'granted');
    });
  });
});
