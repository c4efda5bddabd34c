import assert from 'assert/strict';
import debug from 'debug';
import { performance } from 'perf_hooks';
import { LockManager } from '../../src/locks';
import { flock, posix, R, tick, track, U, W } from './helpers';

const log = debug('ovshift:locks:test');
const N = 10_000;

function timed<T>(label: string, work: () => T): T {
  const started = performance.now();
  const result = work();
  log('%s: %d ms', label, Math.round(performance.now() - started));
  return result;
}

async function timedAsync(label: string, work: () => Promise<unknown>): Promise<void> {
  const started = performance.now();
  await work();
  log('%s: %d ms', label, Math.round(performance.now() - started));
}

describe('locks: scale', () => {
  let locks: LockManager;
  beforeEach(() => {
    locks = new LockManager();
  });
  afterEach(() => locks.dispose());

  it(`${N} waiters on one inode leave ${N} requests on other inodes unaffected, then drain in FIFO order`, async () => {
    await locks.set(1, posix(0n, W), false).done;
    const waiters = timed(`queue ${N} writers`, () => Array.from({ length: N }, (_, i) => track(locks.set(1, posix(BigInt(i + 1), W, 0n, 99n), true).done)));
    assert.equal(locks.waiting(1), N);

    const others = timed(`${N} set + test on other inodes`, () =>
      Array.from({ length: N }, (_, i) => {
        const ino = 100 + i;
        const owner = BigInt(N + 1 + i);
        const done = locks.set(ino, posix(owner, R), false).done;
        assert.equal(locks.test(ino, posix(owner + 1n, W))?.owner, owner);
        return done;
      }),
    );
    await Promise.all(others);

    const order: bigint[] = [];
    await timedAsync(`drain ${N} writers one by one`, async () => {
      let holder = 0n;
      for (let i = 0; i < N; i += 1) {
        await locks.set(1, posix(holder, U), false).done;
        const [granted] = locks.held(1);
        assert.ok(granted, `nobody was granted after owner ${holder} unlocked`);
        holder = granted.owner;
        order.push(holder);
      }
    });
    await tick();
    assert.deepEqual(
      order,
      Array.from({ length: N }, (_, i) => BigInt(i + 1)),
    );
    assert.ok(waiters.every((waiter) => waiter.state === 'granted'));
  });

  it(`${N} queued readers are granted together when the writer leaves`, async () => {
    await locks.set(1, flock(0n, W), false).done;
    const readers = Array.from({ length: N }, (_, i) => track(locks.set(1, flock(BigInt(i + 1), R), true).done));
    await timedAsync(`grant ${N} readers at once`, () => locks.set(1, flock(0n, U), false).done);
    await tick();
    assert.ok(readers.every((reader) => reader.state === 'granted'));
    assert.equal(locks.held(1).length, N);
  });

  it(`${N} waiting owners that then lock other inodes stay cheap`, async () => {
    await locks.set(1, posix(0n, W), false).done;
    Array.from({ length: N }, (_, i) => track(locks.set(1, posix(BigInt(i + 1), W), true).done));
    await timedAsync(`${N} waiters' owners lock elsewhere`, () =>
      Promise.all(Array.from({ length: N }, (_, i) => locks.set(100 + i, posix(BigInt(i + 1), W), false).done)),
    );
    assert.equal(locks.waiting(1), N);
  });
});
