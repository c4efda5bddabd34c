import assert from 'assert/strict';
import { LockManager } from '../../src/locks';
import { flock, posix, tick, track, U, W } from './helpers';

describe('locks: deadlock detection', () => {
  let locks: LockManager;
  beforeEach(() => {
    locks = new LockManager();
  });
  afterEach(() => locks.dispose());

  it('rejects the request closing a two-owner cycle across two inodes with EDEADLK', async () => {
    await locks.set(1, posix(1n, W), false).done; // A holds X
    await locks.set(2, posix(2n, W), false).done; // B holds Y
    const aWaits = track(locks.set(2, posix(1n, W), true).done); // A waits for Y
    const bWaits = track(locks.set(1, posix(2n, W), true).done); // B would wait for X
    await tick();
    assert.equal(bWaits.state, 'EDEADLK');
    assert.equal(aWaits.state, 'pending');
    assert.equal(locks.waiting(), 1);
    await locks.set(2, posix(2n, U), false).done;
    await tick();
    assert.equal(aWaits.state, 'granted');
  });

  it('finds a three-owner cycle', async () => {
    await locks.set(1, posix(1n, W), false).done;
    await locks.set(2, posix(2n, W), false).done;
    await locks.set(3, posix(3n, W), false).done;
    const first = track(locks.set(2, posix(1n, W), true).done); // 1 waits for 2
    const second = track(locks.set(3, posix(2n, W), true).done); // 2 waits for 3
    const third = track(locks.set(1, posix(3n, W), true).done); // 3 would wait for 1
    await tick();
    assert.deepEqual([first.state, second.state, third.state], ['pending', 'pending', 'EDEADLK']);
  });

  it('finds a cycle through another waiting request of the same owner', async () => {
    await locks.set(1, posix(1n, W, 0n, 9n), false).done;
    await locks.set(1, posix(2n, W, 10n, 19n), false).done;
    const other = track(locks.set(1, posix(1n, W, 10n, 19n), true).done);
    const closing = track(locks.set(1, posix(2n, W, 0n, 9n), true).done);
    await tick();
    assert.deepEqual([other.state, closing.state], ['pending', 'EDEADLK']);
  });

  it('does not report a chain that does not come back', async () => {
    for (const owner of [1n, 2n, 3n, 4n]) await locks.set(Number(owner), posix(owner, W), false).done;
    // 2 waits for 1, 3 waits for 2; then 4 (which holds a lock) waits for 3: a chain, no cycle.
    const waits = [track(locks.set(1, posix(2n, W), true).done), track(locks.set(2, posix(3n, W), true).done), track(locks.set(3, posix(4n, W), true).done)];
    await tick();
    assert.deepEqual(
      waits.map((wait) => wait.state),
      ['pending', 'pending', 'pending'],
    );
    const closing = track(locks.set(4, posix(1n, W), true).done);
    await tick();
    assert.equal(closing.state, 'EDEADLK', 'the same chain closed by its head is a cycle');
  });

  it('a non-blocking request gets EAGAIN, never EDEADLK', async () => {
    await locks.set(1, posix(1n, W), false).done;
    await locks.set(2, posix(2n, W), false).done;
    track(locks.set(2, posix(1n, W), true).done);
    await assert.rejects(locks.set(1, posix(2n, W), false).done, { code: 'EAGAIN' });
  });

  it('a cycle that went away is no longer reported', async () => {
    await locks.set(1, posix(1n, W), false).done;
    await locks.set(2, posix(2n, W), false).done;
    const pending = locks.set(2, posix(1n, W), true);
    track(pending.done);
    pending.cancel();
    const bWaits = track(locks.set(1, posix(2n, W), true).done);
    await tick();
    assert.equal(bWaits.state, 'pending');
  });

  it('flock has no deadlock detection, as on Linux', async () => {
    await locks.set(1, flock(1n, W), false).done;
    await locks.set(2, flock(2n, W), false).done;
    const first = track(locks.set(2, flock(1n, W), true).done);
    const second = track(locks.set(1, flock(2n, W), true).done);
    await tick();
    assert.deepEqual([first.state, second.state], ['pending', 'pending']);
  });
});
