import assert from 'assert/strict';
import { Interrupted, forEachOrdered, mapBounded, type Interruptible } from '../../src/util/concurrency';

function after<T>(ms: number, value: T): Promise<T> {
  return new Promise((resolve) => setTimeout(() => resolve(value), ms));
}

function failAfter(ms: number, message: string): Promise<never> {
  return new Promise((_resolve, reject) => setTimeout(() => reject(new Error(message)), ms));
}

/** A stand-in for a FUSE request's control. */
class Control implements Interruptible {
  interrupted = false;
  private readonly callbacks: Array<() => void> = [];

  onInterrupt(cb: () => void): void {
    if (this.interrupted) cb();
    else this.callbacks.push(cb);
  }

  interrupt(): void {
    this.interrupted = true;
    for (const cb of this.callbacks) cb();
  }
}

describe('bounded ordered runs', () => {
  it('keeps results in item order whatever order the calls finish in, with at most `limit` pending', async () => {
    const items = Array.from({ length: 50 }, (_, i) => i);
    let pending = 0;
    let most = 0;
    const out = await mapBounded(items, 8, async (n) => {
      most = Math.max(most, ++pending);
      await after((n * 7) % 13, null);
      pending--;
      return n * 2;
    });
    assert.deepEqual(
      out,
      items.map((n) => n * 2),
    );
    assert.equal(most, 8);
  });

  it('runs the calls concurrently: 20 calls of 100 ms take about 100 ms', async () => {
    const start = Date.now();
    await mapBounded(
      Array.from({ length: 20 }, (_, i) => i),
      32,
      (n) => after(100, n),
    );
    assert.ok(Date.now() - start < 1000, `took ${Date.now() - start} ms`);
  });

  it('takes results at hand (no promise) in their place among the others', async () => {
    const out = await mapBounded([1, 2, 3, 4], 2, (n) => (n % 2 === 0 ? n : after(5, n)));
    assert.deepEqual(out, [1, 2, 3, 4]);
    assert.deepEqual(await mapBounded([], 4, (n: number) => n), []);
  });

  it('fails with the first failing item in order, and starts nothing after a known failure', async () => {
    const started: number[] = [];
    await assert.rejects(
      mapBounded([0, 1, 2, 3, 4, 5, 6, 7], 3, (n) => {
        started.push(n);
        if (n === 1) return failAfter(30, 'one');
        if (n === 2) return failAfter(1, 'two');
        return after(5, n);
      }),
      /one/,
    );
    assert.ok(!started.includes(7), `started ${started.join(',')}`);
  });

  it('fails with a call that throws at once', async () => {
    await assert.rejects(
      mapBounded([0, 1], 2, (n) => {
        if (n === 1) throw new Error('thrown');
        return after(1, n);
      }),
      /thrown/,
    );
  });

  it('starts an item only once admitted, and ends when nothing is pending and the next is not admitted', async () => {
    const room = { left: 3 };
    const taken: number[] = [];
    const started: number[] = [];
    await forEachOrdered([5, 6, 7, 8, 9], 1, {
      limit: 10,
      admit: () => room.left > 0 && room.left-- > 0,
      run: (n) => {
        started.push(n);
        return after(1, n);
      },
      take: (n) => void taken.push(n),
    });
    assert.deepEqual(started, [6, 7, 8]);
    assert.deepEqual(taken, [6, 7, 8]);
  });

  it('admits more as results are taken, and stops where take says so', async () => {
    let inHand = 0;
    const taken: number[] = [];
    await forEachOrdered([0, 1, 2, 3, 4, 5, 6], 0, {
      limit: 10,
      admit: () => inHand < 2 && ++inHand > 0,
      run: (n) => after(1, n),
      take: (n) => {
        inHand--;
        taken.push(n);
        return n < 4;
      },
    });
    assert.deepEqual(taken, [0, 1, 2, 3, 4]);
  });

  it('rejects with Interrupted (EINTR) at once when interrupted, and starts nothing more', async () => {
    const ctl = new Control();
    const started: number[] = [];
    const start = Date.now();
    const run = mapBounded(
      Array.from({ length: 100 }, (_, i) => i),
      4,
      (n) => {
        started.push(n);
        return after(10000, n);
      },
      ctl,
    );
    setTimeout(() => ctl.interrupt(), 20);
    await assert.rejects(run, (err: unknown) => err instanceof Interrupted && (err as Interrupted).code === 'EINTR');
    assert.ok(Date.now() - start < 1000);
    assert.deepEqual(started, [0, 1, 2, 3]);
    const already = new Control();
    already.interrupt();
    await assert.rejects(
      mapBounded([1], 1, (n) => n, already),
      Interrupted,
    );
  });
});
