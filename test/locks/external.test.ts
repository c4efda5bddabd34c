import assert from 'assert/strict';
import { ExternalAnswer, ExternalLocks, LockManager, LockRequest } from '../../src/locks';
import { deferred, Deferred, flock, MAX, posix, R, sleep, tick, track, U, W } from './helpers';
import { waitUntil } from '../helpers/wait';

interface Call {
  readonly ino: number;
  readonly request: LockRequest;
  readonly at: number;
}

/** The interface under test's other side: answers as the test scripts it and records calls. */
class ScriptedArbiter implements ExternalLocks {
  readonly calls: Call[] = [];
  readonly waits: boolean[] = [];
  readonly withdrawn: string[] = [];

  constructor(private readonly answer: (request: LockRequest, ino: number) => ExternalAnswer | Promise<ExternalAnswer> = () => true) {}

  apply(ino: number, request: LockRequest, wait: boolean): Promise<ExternalAnswer> {
    this.calls.push({ ino, request, at: Date.now() });
    this.waits.push(wait);
    return Promise.resolve(this.answer(request, ino));
  }

  withdraw(ino: number, request: LockRequest): void {
    this.withdrawn.push(`${ino} ${request.family} ${request.owner}`);
  }

  summary(): string[] {
    return this.calls.map(({ ino, request: { family, owner, type, start, end } }) => {
      const range = end === MAX ? `${start}..MAX` : `${start}..${end}`;
      return `${ino} ${family} ${owner} ${['R', 'W', 'U'][type]} ${range}`;
    });
  }
}

/** Answers each call when the test says so. */
class ManualArbiter implements ExternalLocks {
  readonly pending: { ino: number; request: LockRequest; answer: Deferred<boolean> }[] = [];

  apply(ino: number, request: LockRequest): Promise<boolean> {
    const answer = deferred<boolean>();
    this.pending.push({ ino, request, answer });
    return answer.promise;
  }

  answer(index: number, value: boolean): void {
    const call = this.pending[index];
    assert.ok(call, `no call #${index}`);
    call.answer.resolve(value);
  }
}

describe('locks: external arbiter', () => {
  let locks: LockManager | undefined;
  afterEach(() => locks?.dispose());

  function manager(external: ExternalLocks, retry?: { initialMs?: number; maxMs?: number }): LockManager {
    locks = new LockManager({ external, ...(retry && { externalRetry: retry }) });
    return locks;
  }

  it('is consulted only after the local check passed', async () => {
    const arbiter = new ScriptedArbiter();
    const m = manager(arbiter);
    await m.set(1, posix(1n, W), false).done;
    await assert.rejects(m.set(1, posix(2n, W), false).done, { code: 'EAGAIN' });
    track(m.set(1, posix(3n, W), true).done);
    await tick();
    assert.deepEqual(arbiter.summary(), ['1 posix 1 W 0..MAX']);
  });

  it('a refusal fails a non-blocking request with EAGAIN and holds nothing', async () => {
    const m = manager(new ScriptedArbiter(() => false));
    await assert.rejects(m.set(1, posix(1n, W), false).done, { code: 'EAGAIN' });
    assert.deepEqual(m.held(1), []);
    assert.equal(m.waiting(), 0);
  });

  it('a refused blocking request waits and is retried with doubling delays until granted', async () => {
    let refusals = 3;
    const arbiter = new ScriptedArbiter(() => refusals-- <= 0);
    const m = manager(arbiter, { initialMs: 20, maxMs: 1000 });
    const request = m.set(1, posix(1n, W), true);
    await tick();
    assert.equal(m.waiting(1), 1);
    await request.done;
    assert.equal(arbiter.calls.length, 4);
    const gaps = arbiter.calls.slice(1).map((call, i) => call.at - (arbiter.calls[i]?.at ?? 0));
    // Timers never fire early; allow a millisecond of clock granularity.
    gaps.forEach((gap, i) => assert.ok(gap >= 20 * 2 ** i - 1, `gap ${i} was ${gap} ms: ${gaps.join(', ')}`));
    assert.equal(m.held(1).length, 1);
    assert.equal(m.waiting(), 0);
  });

  it('tells the arbiter whether a request waits; retryNow asks about a refused waiter at once', async () => {
    let refuse = true;
    const arbiter = new ScriptedArbiter(() => !refuse);
    const m = manager(arbiter, { initialMs: 60_000 });
    await assert.rejects(m.set(1, posix(1n, W), false).done, { code: 'EAGAIN' });
    const waiter = track(m.set(1, posix(2n, W), true).done);
    await tick();
    assert.deepEqual(arbiter.waits, [false, true]);
    refuse = false;
    m.retryNow(2); // another inode: nothing happens
    await tick();
    assert.equal(waiter.state, 'pending');
    m.retryNow(1);
    await waitUntil(() => waiter.state !== 'pending', { what: 'the waiter to be asked about again', intervalMs: 5 });
    assert.equal(waiter.state, 'granted');
    assert.deepEqual(arbiter.withdrawn, [], 'a granted waiter is not withdrawn');
  });

  it('a waiter the arbiter queued is not polled: it is asked about again when the arbiter calls retryNow', async () => {
    let answer: ExternalAnswer = 'queued';
    const arbiter = new ScriptedArbiter(() => answer);
    const m = manager(arbiter, { initialMs: 5, maxMs: 10 });
    const waiter = track(m.set(1, posix(1n, W), true).done);
    await sleep(200);
    assert.equal(arbiter.calls.length, 1, 'no retries every 5-10 ms while queued');
    assert.equal(waiter.state, 'pending');
    answer = true;
    m.retryNow(1);
    await waitUntil(() => waiter.state !== 'pending', { what: 'the waiter to be asked about again', intervalMs: 5 });
    assert.equal(waiter.state, 'granted');
    assert.equal(arbiter.calls.length, 2);
  });

  it('withdraws a refused waiter from the arbiter when it is interrupted, its file released or the manager disposed', async () => {
    const arbiter = new ScriptedArbiter(() => false);
    const m = manager(arbiter, { initialMs: 60_000 });
    const interrupted = m.set(1, posix(1n, W), true);
    track(m.set(1, flock(2n, W, { fh: 7 }), true).done);
    track(m.set(2, posix(3n, W), true).done);
    await tick();
    interrupted.cancel();
    await assert.rejects(interrupted.done, { code: 'EINTR' });
    await m.releaseFh(1, 7);
    assert.deepEqual(arbiter.withdrawn, ['1 posix 1', '1 flock 2']);
    m.dispose();
    assert.deepEqual(arbiter.withdrawn, ['1 posix 1', '1 flock 2', '2 posix 3']);
  });

  it('retries a refused request at once when local locks on the inode are released', async () => {
    let ownerTwoRefused = false;
    const arbiter = new ScriptedArbiter((request) => {
      if (request.owner !== 2n || ownerTwoRefused) return true;
      ownerTwoRefused = true;
      return false;
    });
    const m = manager(arbiter, { initialMs: 60_000 });
    await m.set(1, posix(1n, R, 100n, 199n), false).done;
    const refused = track(m.set(1, posix(2n, W, 0n, 9n), true).done);
    await tick();
    assert.equal(refused.state, 'pending');
    await m.set(1, posix(1n, U), false).done;
    await tick();
    assert.equal(refused.state, 'granted');
  });

  it('a refused waiter keeps its place: later conflicting waiters do not overtake it', async () => {
    let refusals = 2;
    const arbiter = new ScriptedArbiter((request) => request.owner !== 2n || refusals-- <= 0);
    const m = manager(arbiter, { initialMs: 10 });
    await m.set(1, posix(1n, R), false).done;
    const writer = track(m.set(1, posix(2n, W), true).done);
    const reader = track(m.set(1, posix(3n, R), true).done);
    await m.set(1, posix(1n, U), false).done;
    await sleep(5);
    assert.deepEqual([writer.state, reader.state], ['pending', 'pending']);
    await waitUntil(() => writer.state !== 'pending', { what: 'the writer to be decided', intervalMs: 5 });
    assert.equal(writer.state, 'granted');
    assert.equal(reader.state, 'pending');
    assert.ok(!arbiter.summary().some((call) => call.startsWith('1 posix 3 R')), 'the reader was not tried yet');
  });

  it('grants waiters one at a time in FIFO order', async () => {
    const arbiter = new ScriptedArbiter();
    const m = manager(arbiter);
    await m.set(1, posix(1n, W), false).done;
    const second = track(m.set(1, posix(2n, W), true).done);
    const third = track(m.set(1, posix(3n, W), true).done);
    await m.set(1, posix(1n, U), false).done;
    await tick();
    assert.deepEqual([second.state, third.state], ['granted', 'pending']);
    await m.set(1, posix(2n, U), false).done;
    await tick();
    assert.equal(third.state, 'granted');
    assert.deepEqual(arbiter.summary(), ['1 posix 1 W 0..MAX', '1 posix 1 U 0..MAX', '1 posix 2 W 0..MAX', '1 posix 2 U 0..MAX', '1 posix 3 W 0..MAX']);
  });

  it('is told about every release: unlock, FLUSH, RELEASE and the first half of a flock conversion', async () => {
    const arbiter = new ScriptedArbiter();
    const m = manager(arbiter);
    await m.set(1, posix(1n, W, 0n, 99n, { fh: 1 }), false).done;
    await m.set(1, posix(1n, U, 10n, 19n), false).done;
    await m.set(1, posix(1n, U, 500n, 599n), false).done; // held nothing there: nothing to tell
    await m.releaseOwner(1, 1n);
    await m.set(1, flock(2n, R, { fh: 2 }), false).done;
    await m.set(1, flock(2n, W, { fh: 2 }), false).done;
    await m.releaseFh(1, 2);
    assert.deepEqual(arbiter.summary(), [
      '1 posix 1 W 0..99',
      '1 posix 1 U 10..19',
      '1 posix 1 U 0..9',
      '1 posix 1 U 20..99',
      '1 flock 2 R 0..MAX',
      '1 flock 2 U 0..MAX',
      '1 flock 2 W 0..MAX',
      '1 flock 2 U 0..MAX',
    ]);
  });

  it('a rejected apply fails that request with its error and holds nothing', async () => {
    const failure = new Error('lower file lock failed');
    let fail = true;
    const m = manager(new ScriptedArbiter(() => (fail ? Promise.reject(failure) : true)));
    await assert.rejects(m.set(1, posix(1n, W), true).done, (error: unknown) => error === failure);
    assert.deepEqual(m.held(1), []);
    assert.equal(m.waiting(), 0);
    fail = false;
    await m.set(1, posix(1n, W), false).done;
    assert.equal(m.held(1).length, 1);
  });

  it('a failed release still releases locally and reports the error', async () => {
    const failure = new Error('lower unlock failed');
    const m = manager(new ScriptedArbiter((request) => (request.type === U ? Promise.reject(failure) : true)));
    await m.set(1, posix(1n, W), false).done;
    await assert.rejects(m.releaseOwner(1, 1n), (error: unknown) => error === failure);
    assert.deepEqual(m.held(1), []);
  });

  it('serializes requests on an inode while apply is in flight, never across inodes', async () => {
    const arbiter = new ManualArbiter();
    const m = manager(arbiter);
    const first = track(m.set(1, posix(1n, W, 0n, 9n), false).done);
    const second = track(m.set(1, posix(2n, W, 100n, 109n), false).done);
    const flush = m.releaseOwner(1, 1n);
    const otherInode = track(m.set(2, posix(3n, W), false).done);
    await tick();
    assert.deepEqual(
      arbiter.pending.map((call) => call.ino),
      [1, 2],
      'inode 1 asks once; inode 2 is not held up',
    );
    assert.equal(m.test(1, posix(9n, W)), null, 'GETLK still answers at once');
    arbiter.answer(1, true);
    await tick();
    assert.deepEqual([first.state, second.state, otherInode.state], ['pending', 'pending', 'granted']);
    arbiter.answer(0, true);
    await tick();
    assert.equal(first.state, 'granted');
    assert.equal(arbiter.pending.length, 3, 'now the second request is asked about');
    assert.equal(arbiter.pending[2]?.request.owner, 2n);
    arbiter.answer(2, true);
    await tick();
    assert.equal(second.state, 'granted');
    assert.equal(arbiter.pending[3]?.request.type, U, 'then the FLUSH releases owner 1');
    arbiter.answer(3, true);
    await flush;
    assert.deepEqual(
      m.held(1).map((lock) => lock.owner),
      [2n],
    );
  });

  it('calls onGranted once the arbiter agreed, before the request settles', async () => {
    const events: string[] = [];
    const arbiter = new ManualArbiter();
    locks = new LockManager({ external: arbiter, onGranted: (ino, request) => events.push(`granted ${ino} ${request.owner}`) });
    const done = locks.set(7, posix(1n, R), false).done.then(() => events.push('settled'));
    await tick();
    assert.deepEqual(events, []);
    arbiter.answer(0, true);
    await done;
    assert.deepEqual(events, ['granted 7 1', 'settled']);
  });

  describe('cancel', () => {
    it('of a refused waiter rejects with EINTR and stops its retries', async () => {
      const arbiter = new ScriptedArbiter(() => false);
      const m = manager(arbiter, { initialMs: 10 });
      const request = m.set(1, posix(1n, W), true);
      const outcome = track(request.done);
      await tick();
      request.cancel();
      await sleep(50);
      assert.equal(outcome.state, 'EINTR');
      assert.equal(arbiter.calls.length, 1);
      assert.equal(m.waiting(), 0);
    });

    it('while the arbiter is asked: a grant still completes', async () => {
      const arbiter = new ManualArbiter();
      const m = manager(arbiter);
      const request = m.set(1, posix(1n, W), true);
      const outcome = track(request.done);
      await tick();
      request.cancel();
      arbiter.answer(0, true);
      await tick();
      assert.equal(outcome.state, 'granted');
      assert.equal(m.held(1).length, 1);
    });

    it('while the arbiter is asked: a refusal becomes EINTR instead of a retry', async () => {
      const arbiter = new ManualArbiter();
      const m = manager(arbiter, { initialMs: 10 });
      const request = m.set(1, posix(1n, W), true);
      const outcome = track(request.done);
      await tick();
      request.cancel();
      arbiter.answer(0, false);
      await sleep(30);
      assert.equal(outcome.state, 'EINTR');
      assert.equal(arbiter.pending.length, 1);
      assert.equal(m.waiting(), 0);
    });

    it('of a request queued behind an in-flight apply rejects it at once', async () => {
      const arbiter = new ManualArbiter();
      const m = manager(arbiter);
      track(m.set(1, posix(1n, W, 0n, 9n), false).done);
      const queued = m.set(1, posix(2n, W, 10n, 19n), false);
      const outcome = track(queued.done);
      queued.cancel();
      await tick();
      assert.equal(outcome.state, 'EINTR');
      arbiter.answer(0, true);
      await tick();
      assert.equal(arbiter.pending.length, 1, 'the cancelled request never reaches the arbiter');
    });
  });

  it('dispose rejects waiting and queued requests with EINTR', async () => {
    const arbiter = new ManualArbiter();
    const m = manager(arbiter);
    const confirming = track(m.set(1, posix(1n, W), false).done);
    const queued = track(m.set(1, posix(2n, W), false).done);
    m.dispose();
    await tick();
    assert.deepEqual([confirming.state, queued.state], ['EINTR', 'EINTR']);
    arbiter.answer(0, true);
    await tick();
    assert.throws(() => m.held(1) && m.set(1, posix(3n, W), false), /disposed/);
  });
});
