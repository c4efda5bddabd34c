import assert from 'assert/strict';
import { LockManager } from '../../src/locks';
import { flock, posix, R, shapes, tick, track, U, W } from './helpers';

describe('locks: blocking requests', () => {
  let locks: LockManager;
  let grants: string[];
  beforeEach(() => {
    grants = [];
    locks = new LockManager({ onGranted: (ino, request) => grants.push(`${ino}:${request.owner}`) });
  });
  afterEach(() => locks.dispose());

  it('a conflicting blocking request waits and is granted after the unlock', async () => {
    await locks.set(1, posix(1n, W), false).done;
    const waiter = track(locks.set(1, posix(2n, W), true).done);
    await tick();
    assert.equal(waiter.state, 'pending');
    assert.equal(locks.waiting(1), 1);
    assert.equal(locks.waiting(), 1);
    await locks.set(1, posix(1n, U), false).done;
    await tick();
    assert.equal(waiter.state, 'granted');
    assert.deepEqual(
      locks.held(1).map((lock) => lock.owner),
      [2n],
    );
    assert.equal(locks.waiting(), 0);
  });

  it('a non-conflicting blocking request is granted at once', async () => {
    await locks.set(1, posix(1n, W, 0n, 9n), false).done;
    const request = track(locks.set(1, posix(2n, W, 10n, 19n), true).done);
    await tick();
    assert.equal(request.state, 'granted');
  });

  it('grants three waiting writers in FIFO order', async () => {
    await locks.set(1, posix(1n, W), false).done;
    const waiters = [2n, 3n, 4n].map((owner) => track(locks.set(1, posix(owner, W), true).done));
    grants.length = 0;
    for (const holder of [1n, 2n, 3n]) {
      await locks.set(1, posix(holder, U), false).done;
      await tick();
    }
    assert.deepEqual(grants, ['1:2', '1:3', '1:4']);
    assert.deepEqual(
      waiters.map((waiter) => waiter.state),
      ['granted', 'granted', 'granted'],
    );
  });

  it('grants consecutive readers together but stops at a writer, and later readers wait behind it', async () => {
    await locks.set(1, posix(1n, W), false).done;
    const [r2, r3, w4, r5] = [posix(2n, R), posix(3n, R), posix(4n, W), posix(5n, R)].map((request) => track(locks.set(1, request, true).done));
    grants.length = 0;
    await locks.set(1, posix(1n, U), false).done;
    await tick();
    assert.deepEqual(grants, ['1:2', '1:3']);
    assert.deepEqual([r2?.state, r3?.state, w4?.state, r5?.state], ['granted', 'granted', 'pending', 'pending']);
    await locks.set(1, posix(2n, U), false).done;
    await locks.set(1, posix(3n, U), false).done;
    await tick();
    assert.deepEqual(grants, ['1:2', '1:3', '1:4']);
    await locks.set(1, posix(4n, U), false).done;
    await tick();
    assert.deepEqual(grants, ['1:2', '1:3', '1:4', '1:5']);
  });

  it('when locks are released, a waiter is skipped if it conflicts with an earlier one still waiting', async () => {
    await locks.set(1, posix(1n, W), false).done;
    const queued = [posix(2n, R, 0n, 99n), posix(3n, W, 0n, 49n), posix(4n, R, 0n, 9n), posix(5n, R, 200n, 299n)].map((request) =>
      track(locks.set(1, request, true).done),
    );
    grants.length = 0;
    await locks.set(1, posix(1n, U), false).done;
    await tick();
    assert.deepEqual(grants, ['1:2', '1:5'], 'owner 4 stays behind the waiting writer it overlaps');
    assert.deepEqual(
      queued.map((request) => request.state),
      ['granted', 'pending', 'pending', 'granted'],
    );
    await locks.set(1, posix(2n, U), false).done;
    await tick();
    assert.deepEqual(grants, ['1:2', '1:5', '1:3']);
    await locks.set(1, posix(3n, U), false).done;
    await tick();
    assert.deepEqual(grants, ['1:2', '1:5', '1:3', '1:4']);
  });

  it('a queued writer is not starved by readers arriving after it', async () => {
    await locks.set(1, posix(1n, R), false).done;
    const writer = track(locks.set(1, posix(2n, W), true).done);
    const readers = [3n, 4n, 5n].map((owner) => track(locks.set(1, posix(owner, R), true).done));
    await tick();
    assert.deepEqual(
      readers.map((reader) => reader.state),
      ['pending', 'pending', 'pending'],
      'later readers queue behind the writer although the held lock is a read lock',
    );
    grants.length = 0;
    await locks.set(1, posix(1n, U), false).done;
    await tick();
    assert.equal(writer.state, 'granted');
    assert.deepEqual(grants, ['1:2']);
    await locks.set(1, posix(2n, U), false).done;
    await tick();
    assert.deepEqual(grants, ['1:2', '1:3', '1:4', '1:5']);
  });

  it('a non-blocking read is still granted past a queued writer, as on Linux', async () => {
    await locks.set(1, posix(1n, R), false).done;
    const writer = track(locks.set(1, posix(2n, W), true).done);
    await locks.set(1, posix(3n, R), false).done;
    assert.equal(writer.state, 'pending');
    assert.deepEqual(
      locks.held(1).map((lock) => lock.owner),
      [1n, 3n],
    );
  });

  it('a reader waits only behind writers that overlap it', async () => {
    await locks.set(1, posix(1n, R), false).done;
    const writer = track(locks.set(1, posix(2n, W, 0n, 99n), true).done);
    const elsewhere = track(locks.set(1, posix(3n, R, 100n, 199n), true).done);
    await tick();
    assert.equal(writer.state, 'pending');
    assert.equal(elsewhere.state, 'granted');
  });

  it('an owner holding a read lock can upgrade while a writer waits for it', async () => {
    await locks.set(1, posix(1n, R), false).done;
    const writer = track(locks.set(1, posix(2n, W), true).done);
    const upgrade = track(locks.set(1, posix(1n, W), true).done);
    await tick();
    assert.equal(upgrade.state, 'granted');
    assert.equal(writer.state, 'pending');
    await locks.set(1, posix(1n, U), false).done;
    await tick();
    assert.equal(writer.state, 'granted');
  });

  it('a waiter whose owner acquires a lock elsewhere stops yielding to earlier waiters', async () => {
    await locks.set(1, posix(1n, R), false).done;
    const writer = track(locks.set(1, posix(2n, W), true).done);
    const reader = track(locks.set(1, posix(3n, R), true).done);
    await tick();
    assert.equal(reader.state, 'pending');
    // Someone may now wait for owner 3's lock on inode 2, so it must not keep waiting behind owner 2.
    await locks.set(2, posix(3n, W), false).done;
    await tick();
    assert.equal(reader.state, 'granted');
    assert.equal(writer.state, 'pending');
  });

  it('an owner holding locks elsewhere does not wait behind waiters, so no cycle forms through them', async () => {
    await locks.set(1, posix(1n, R), false).done; // A reads X
    const writer = track(locks.set(1, posix(2n, W), true).done); // B waits for A
    await locks.set(2, posix(3n, W), false).done; // C holds Y
    const reader = track(locks.set(1, posix(3n, R), true).done); // C reads X past B
    const aWaits = track(locks.set(2, posix(1n, W), true).done); // A waits for C
    await tick();
    assert.deepEqual([writer.state, reader.state, aWaits.state], ['pending', 'granted', 'pending']);
    await locks.releaseOwner(2, 3n);
    await locks.releaseOwner(1, 3n);
    await tick();
    assert.equal(aWaits.state, 'granted');
    await locks.releaseOwner(1, 1n);
    await tick();
    assert.equal(writer.state, 'granted');
  });

  it('a throwing onGranted hook does not disturb the grant', async () => {
    locks.dispose();
    locks = new LockManager({
      onGranted: () => {
        throw new Error('hook failed');
      },
    });
    await locks.set(1, posix(1n, W), false).done;
    assert.equal(locks.held(1).length, 1);
  });

  it('a downgrade lets waiting readers in', async () => {
    await locks.set(1, posix(1n, W), false).done;
    const reader = track(locks.set(1, posix(2n, R), true).done);
    await locks.set(1, posix(1n, R), false).done;
    await tick();
    assert.equal(reader.state, 'granted');
  });

  it('a partial unlock grants only waiters on the freed range', async () => {
    await locks.set(1, posix(1n, W, 0n, 99n), false).done;
    const inside = track(locks.set(1, posix(2n, W, 10n, 19n), true).done);
    const outside = track(locks.set(1, posix(3n, W, 50n, 59n), true).done);
    await locks.set(1, posix(1n, U, 0n, 29n), false).done;
    await tick();
    assert.equal(inside.state, 'granted');
    assert.equal(outside.state, 'pending');
  });

  it('a waiter’s grant that downgrades its owner’s own lock lets others in', async () => {
    await locks.set(1, posix(1n, W, 0n, 9n), false).done;
    await locks.set(1, posix(2n, W, 10n, 19n), false).done;
    // Owner 1 waits to turn 0..19 into a read lock; owner 3 waits for a read of 0..4.
    const downgrade = track(locks.set(1, posix(1n, R, 0n, 19n), true).done);
    const reader = track(locks.set(1, posix(3n, R, 0n, 4n), true).done);
    await tick();
    assert.deepEqual([downgrade.state, reader.state], ['pending', 'pending']);
    await locks.set(1, posix(2n, U), false).done;
    await tick();
    assert.deepEqual([downgrade.state, reader.state], ['granted', 'granted']);
  });

  describe('cancel (FUSE_INTERRUPT)', () => {
    it('rejects the waiter with EINTR and dequeues it', async () => {
      await locks.set(1, posix(1n, W), false).done;
      const pending = locks.set(1, posix(2n, W), true);
      const waiter = track(pending.done);
      pending.cancel();
      await tick();
      assert.equal(waiter.state, 'EINTR');
      assert.equal(locks.waiting(1), 0);
      await locks.set(1, posix(1n, U), false).done;
      assert.deepEqual(locks.held(1), []);
    });

    it('lets the next waiter that yielded to it be granted', async () => {
      await locks.set(1, posix(1n, R), false).done;
      const writer = locks.set(1, posix(2n, W), true);
      const writerOutcome = track(writer.done);
      const reader = track(locks.set(1, posix(3n, R), true).done);
      await tick();
      assert.equal(reader.state, 'pending');
      writer.cancel();
      await tick();
      assert.equal(writerOutcome.state, 'EINTR');
      assert.equal(reader.state, 'granted');
    });

    it('does nothing once the request was granted', async () => {
      const pending = locks.set(1, posix(1n, W), true);
      await pending.done;
      pending.cancel();
      assert.equal(locks.held(1).length, 1);
    });
  });

  describe('flock', () => {
    it('waiters are granted in FIFO order, shared ones together', async () => {
      await locks.set(1, flock(1n, W), false).done;
      for (const [owner, type] of [
        [2n, R],
        [3n, R],
        [4n, W],
        [5n, R],
      ] as const) {
        track(locks.set(1, flock(owner, type), true).done);
      }
      grants.length = 0;
      await locks.set(1, flock(1n, U), false).done;
      await tick();
      assert.deepEqual(grants, ['1:2', '1:3']);
      await locks.set(1, flock(2n, U), false).done;
      await locks.set(1, flock(3n, U), false).done;
      await tick();
      assert.deepEqual(grants, ['1:2', '1:3', '1:4']);
    });

    it('a conversion drops the old lock first, so a waiter may get in before it', async () => {
      await locks.set(1, flock(1n, R), false).done;
      const writer = track(locks.set(1, flock(2n, W), true).done);
      const upgrade = track(locks.set(1, flock(1n, W), true).done);
      await tick();
      assert.equal(writer.state, 'granted');
      assert.equal(upgrade.state, 'pending');
      await locks.set(1, flock(2n, U), false).done;
      await tick();
      assert.equal(upgrade.state, 'granted');
      assert.deepEqual(shapes(locks.held(1)), [[W, 0n, 0x7fffffffffffffffn]]);
    });
  });
});
