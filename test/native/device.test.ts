/**
 * devReader, devWrite and notifyWrite against unix sockets: the same fd mechanics as
 * /dev/fuse (non-blocking reads, writev, EOF), without mounting FUSE.
 */
import assert from 'assert/strict';
import * as fs from 'fs';
import { DevReader, native } from '../../src/native';
import { Children, collect, errnoOf, nativeModulePath } from './fixtures';
import { sleep } from '../helpers/proc';

interface Batch {
  requests: Buffer[] | null;
  errno: number;
}

/** Records callbacks; `until` waits (bounded by the test timeout) for a condition on them. */
class Recorder<T> {
  readonly calls: T[] = [];
  private wake: () => void = () => {};

  readonly record = (call: T): void => {
    this.calls.push(call);
    this.wake();
  };

  async until(condition: (calls: T[]) => boolean): Promise<void> {
    while (!condition(this.calls))
      await new Promise<void>((resolve) => {
        this.wake = resolve;
      });
  }
}

function readExactly(fd: number, length: number): Buffer {
  const out = Buffer.alloc(length);
  let got = 0;
  while (got < length) got += fs.readSync(fd, out, got, length - got, null);
  return out;
}

/** A Node child that loads the addon as `native` and runs `body`. */
function nodeChild(children: Children, body: string): ReturnType<Children['start']> {
  const script = `const { native } = require(${JSON.stringify(nativeModulePath)});\n${body}`;
  return children.start(process.execPath, ['-e', script]);
}

describe('native FUSE device I/O (over unix sockets)', function () {
  this.timeout(10000);

  const fds: number[] = [];
  const readers: DevReader[] = [];
  const children = new Children();

  function pair(): [number, number] {
    const [a, b] = native.socketpair();
    fds.push(a, b);
    return [a, b];
  }

  function closeNow(fd: number): void {
    fs.closeSync(fd);
    fds.splice(fds.indexOf(fd), 1);
  }

  afterEach(function () {
    for (const reader of readers.splice(0)) reader.stop();
    children.killAll();
    for (const fd of fds.splice(0)) fs.closeSync(fd);
  });

  describe('devReader', function () {
    function startReader(fd: number, bufSize: number, maxBatch: number, recorder: Recorder<Batch>): DevReader {
      const reader = native.devReader(fd, bufSize, maxBatch, (requests, errno) => recorder.record({ requests, errno }));
      readers.push(reader);
      return reader;
    }

    it('hands reads over in batches of at most maxBatch, each an exact-size copy', async () => {
      const [mine, theirs] = pair();
      const recorder = new Recorder<Batch>();
      startReader(mine, 4, 2, recorder);
      fs.writeSync(theirs, '0123456789');
      await recorder.until((calls) => calls.length >= 2);
      assert.deepEqual(
        recorder.calls.map((c) => c.errno),
        [0, 0],
      );
      assert.deepEqual(
        recorder.calls.map((c) => c.requests?.map((r) => r.toString())),
        [['0123', '4567'], ['89']],
      );
    });

    it('with setSpin, still delivers every read in order, including ones that arrive while it spins', async () => {
      const [mine, theirs] = pair();
      const recorder = new Recorder<Batch>();
      const reader = startReader(mine, 64, 4, recorder);
      reader.setSpin(2000);
      fs.writeSync(theirs, 'a');
      await recorder.until((calls) => calls.length >= 1);
      for (const chunk of ['b', 'c', 'd']) {
        fs.writeSync(theirs, chunk);
        await sleep(1);
      }
      await recorder.until((calls) => calls.flatMap((c) => c.requests ?? []).length >= 4);
      assert.equal(Buffer.concat(recorder.calls.flatMap((c) => c.requests ?? [])).toString(), 'abcd');
      assert.throws(() => reader.setSpin('soon' as unknown as number), TypeError);
    });

    it('with setSpin, loses no read at the end of a run of deliveries (64 per wakeup)', async () => {
      const [mine, theirs] = pair();
      // 200 reads of 4 bytes, all queued before the reader starts: every spin finds the next.
      const sent = Array.from({ length: 200 }, (_, i) => `m${String(i).padStart(3, '0')}`);
      fs.writeSync(theirs, sent.join(''));
      const recorder = new Recorder<Batch>();
      startReader(mine, 4, 4, recorder).setSpin(2000);
      await recorder.until((calls) => calls.flatMap((c) => c.requests ?? []).length >= sent.length);
      assert.deepEqual(
        recorder.calls.flatMap((c) => c.requests ?? []).map((r) => r.toString()),
        sent,
      );
    });

    it('with setSpin and a count of unanswered requests, spins only after a request answered during its delivery', async () => {
      // A spin of 1.5 s holds the loop (a timer set in the delivery fires after it); a request
      // the delivery leaves unanswered lets the loop run at once, for the answer it waits for.
      const spin = 1500;
      const loopDelay = async (answer: boolean): Promise<number> => {
        const [mine, theirs] = pair();
        const unanswered = new Int32Array(new ArrayBuffer(4));
        let delivered = 0;
        let loopRan: Promise<number> | undefined;
        const reader: DevReader = native.devReader(mine, 8, 1, (requests) => {
          if (requests === null || delivered++ > 0) return;
          if (!answer) unanswered[0]++;
          const at = performance.now();
          loopRan = new Promise((resolve) => setTimeout(() => resolve(performance.now() - at), 0));
        });
        try {
          reader.setSpin(spin * 1000, unanswered);
          fs.writeSync(theirs, 'a');
          while (loopRan === undefined) await sleep(5);
          return await loopRan;
        } finally {
          reader.stop();
        }
      };
      assert.ok((await loopDelay(false)) < spin / 3, 'unanswered: back to the loop at once');
      assert.ok((await loopDelay(true)) >= spin * 0.9, 'answered: the spin ran');
      const reader = native.devReader(pair()[0], 8, 1, () => {});
      try {
        assert.throws(() => reader.setSpin(10, new Float64Array(1) as unknown as Int32Array), TypeError);
        assert.throws(() => reader.setSpin(10, new Int32Array(0)), TypeError);
      } finally {
        reader.stop();
      }
    });

    it('reports the peer going away once, with ENODEV, and then stays silent', async () => {
      const [mine, theirs] = pair();
      const recorder = new Recorder<Batch>();
      const reader = startReader(mine, 64, 8, recorder);
      fs.writeSync(theirs, 'last words');
      closeNow(theirs);
      await recorder.until((calls) => calls.some((c) => c.requests === null));
      await sleep(50);
      const last = recorder.calls[recorder.calls.length - 1];
      assert.deepEqual(last, { requests: null, errno: errnoOf('ENODEV') });
      const data = recorder.calls.flatMap((c) => c.requests ?? []);
      assert.equal(Buffer.concat(data).toString(), 'last words');
      reader.stop();
      reader.stop();
    });

    it("reports the read error of a /dev/fuse that was never mounted, not libuv's POLLERR", async () => {
      const fuseFd = native.devOpen();
      fds.push(fuseFd);
      const recorder = new Recorder<Batch>();
      startReader(fuseFd, 1 << 17, 4, recorder);
      await recorder.until((calls) => calls.length >= 1);
      await sleep(50);
      assert.deepEqual(recorder.calls, [{ requests: null, errno: errnoOf('EPERM') }]);
    });

    it('delivers nothing after stop(), even when stopped from inside the callback', async () => {
      const [mine, theirs] = pair();
      const recorder = new Recorder<Batch>();
      const reader: DevReader = native.devReader(mine, 1, 1, (requests, errno) => {
        recorder.record({ requests, errno });
        reader.stop();
      });
      readers.push(reader);
      fs.writeSync(theirs, 'abc');
      await recorder.until((calls) => calls.length >= 1);
      await sleep(50);
      assert.equal(recorder.calls.length, 1);
      assert.equal(recorder.calls[0].requests?.[0].toString(), 'a');
    });

    it('rejects bad arguments synchronously', () => {
      const [mine] = pair();
      assert.throws(() => native.devReader(mine, 0, 1, () => {}), RangeError);
      assert.throws(() => native.devReader(mine, 16, 1, null as unknown as () => void), TypeError);
      assert.throws(() => native.devReader(-1, 16, 1, () => {}), { code: 'EBADF' });
    });

    it('passes an exception thrown by onBatch to process uncaughtException', async () => {
      const child = nodeChild(
        children,
        `
        process.on('uncaughtException', (e) => { console.log('caught ' + e.message); process.exit(0); });
        const [a, b] = native.socketpair();
        native.devReader(a, 16, 4, () => { throw new Error('from onBatch'); });
        require('fs').writeSync(b, 'x');
      `,
      );
      const result = await collect(child);
      assert.equal(result.stdout.trim(), 'caught from onBatch', result.stderr);
      assert.equal(result.code, 0);
    });

    it('keeps the process alive while polling, and lets it exit after stop()', async () => {
      const child = nodeChild(
        children,
        `
        const [a, b] = native.socketpair();
        native.devReader(a, 16, 4, (requests) => console.log('got ' + requests.join('')));
        require('fs').writeSync(b, 'first');
      `,
      );
      const result = collect(child);
      await new Promise<void>((resolve) => {
        child.stdout?.on('data', (s: string) => {
          if (s.includes('got first')) resolve();
        });
      });
      await sleep(300);
      assert.equal(child.exitCode, null, 'a polling reader keeps the process alive');
      child.kill('SIGKILL');
      await result;

      const stopping = nodeChild(
        children,
        `
        const [a, b] = native.socketpair();
        const reader = native.devReader(a, 16, 4, () => { console.log('stopping'); reader.stop(); });
        require('fs').writeSync(b, 'x');
      `,
      );
      const stopped = await collect(stopping);
      assert.equal(stopped.stdout.trim(), 'stopping');
      assert.equal(stopped.code, 0);
    });
    it('keeps a polling devReader alive when its object is otherwise unreachable', async () => {
      const script = `
        const { native } = require(${JSON.stringify(nativeModulePath)});
        const [a, b] = native.socketpair();
        native.devReader(a, 16, 4, (requests) => { console.log('got ' + requests.join('')); process.exit(0); });
        global.gc();
        setTimeout(() => { global.gc(); require('fs').writeSync(b, 'after gc'); }, 50);
      `;
      const result = await collect(children.start(process.execPath, ['--expose-gc', '-e', script]));
      assert.equal(result.stdout, 'got after gc\n', result.stderr);
    });
  });

  describe('in worker threads', function () {
    it('survives workers that end with a reader polling and notifications queued', async () => {
      const workerBody = `
        const { native } = require(${JSON.stringify(nativeModulePath)});
        const { parentPort } = require('worker_threads');
        const fs = require('fs');
        const devNull = fs.openSync('/dev/null', 'w');
        const [a, b] = native.socketpair();
        native.devReader(a, 16, 4, (requests) => parentPort.postMessage('batch ' + requests.join('')));
        fs.writeSync(b, 'hi');
        for (let i = 0; i < 500; i++) native.notifyWrite(devNull, [Buffer.alloc(64)], () => {});
      `;
      const child = nodeChild(
        children,
        `
        const { Worker } = require('worker_threads');
        (async () => {
          for (let i = 0; i < 10; i++) {
            const worker = new Worker(${JSON.stringify(workerBody)}, { eval: true });
            const message = await new Promise((resolve) => worker.once('message', resolve));
            await worker.terminate();
            if (message !== 'batch hi') throw new Error('worker said ' + message);
          }
          console.log('main still fine');
        })();
      `,
      );
      const result = await collect(child);
      assert.equal(result.stdout, 'main still fine\n', result.stderr);
      assert.equal(result.code, 0);
    });
  });

  describe('devWrite', function () {
    it('writes all parts with one writev and returns the byte count', () => {
      const [mine, theirs] = pair();
      assert.equal(native.devWrite(mine, [Buffer.from('ab'), Buffer.alloc(0), Buffer.from('cde')]), 5);
      assert.equal(readExactly(theirs, 5).toString(), 'abcde');
    });

    it('returns -errno instead of throwing', () => {
      const [mine, theirs] = pair();
      assert.equal(native.devWrite(-1, [Buffer.from('x')]), -errnoOf('EBADF'));
      closeNow(theirs);
      assert.equal(native.devWrite(mine, [Buffer.from('x')]), -errnoOf('EPIPE'));
    });

    it('throws a TypeError for parts that are not Buffers', () => {
      const [mine] = pair();
      assert.throws(() => native.devWrite(mine, ['x'] as unknown as Buffer[]), TypeError);
    });
  });

  describe('notifyWrite', function () {
    it('writes in submission order and calls back each with its byte count', async () => {
      const [mine, theirs] = pair();
      const recorder = new Recorder<[number, number]>();
      const expected: string[] = [];
      for (let i = 0; i < 200; i++) {
        const message = `<${i}>`;
        expected.push(message);
        native.notifyWrite(mine, [Buffer.from(message.slice(0, 1)), Buffer.from(message.slice(1))], (result) => recorder.record([i, result]));
      }
      await recorder.until((calls) => calls.length === 200);
      assert.deepEqual(
        recorder.calls.map(([i]) => i),
        expected.map((_, i) => i),
      );
      assert.deepEqual(
        recorder.calls.map(([, result]) => result),
        expected.map((m) => m.length),
      );
      const all = expected.join('');
      assert.equal(readExactly(theirs, all.length).toString(), all);
    });

    it('writes the bytes as they were at the call', async () => {
      const [mine, theirs] = pair();
      const part = Buffer.from('original');
      const recorder = new Recorder<number>();
      native.notifyWrite(mine, [part], recorder.record);
      part.fill(0x21);
      await recorder.until((calls) => calls.length === 1);
      assert.equal(readExactly(theirs, 8).toString(), 'original');
    });

    it('calls back with -errno on failure', async () => {
      const recorder = new Recorder<number>();
      native.notifyWrite(-1, [Buffer.from('x')], recorder.record);
      await recorder.until((calls) => calls.length === 1);
      assert.equal(recorder.calls[0], -errnoOf('EBADF'));
    });

    it('delivers pending callbacks before exit and does not keep an idle process alive', async () => {
      const child = nodeChild(
        children,
        `
        const fd = require('fs').openSync('/dev/null', 'w');
        native.notifyWrite(fd, [Buffer.from('abc')], (r) => console.log('first ' + r));
        native.notifyWrite(fd, [Buffer.from('de')], (r) => console.log('second ' + r));
      `,
      );
      const result = await collect(child);
      assert.equal(result.stdout, 'first 3\nsecond 2\n', result.stderr);
      assert.equal(result.code, 0);
    });

    it('passes an exception thrown by the callback to process uncaughtException', async () => {
      const child = nodeChild(
        children,
        `
        process.on('uncaughtException', (e) => { console.log('caught ' + e.message); });
        const fd = require('fs').openSync('/dev/null', 'w');
        native.notifyWrite(fd, [Buffer.from('abc')], () => { throw new Error('from done'); });
        native.notifyWrite(fd, [Buffer.from('abc')], (r) => console.log('next ' + r));
      `,
      );
      const result = await collect(child);
      assert.equal(result.stdout, 'caught from done\nnext 3\n', result.stderr);
      assert.equal(result.code, 0);
    });
  });
});
