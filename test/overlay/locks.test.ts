import assert from 'assert/strict';
import * as fs from 'fs';
import { join } from 'path';
import { Locker, settled } from '../helpers/locker';
import { Scratch, type Daemon } from '../helpers/ovshift';
import { python } from '../helpers/proc';

describe('locks through the mount', function () {
  this.timeout(60000);
  let s: Scratch;
  let d: Daemon | undefined;
  let lockers: Locker[] = [];
  let f: string;

  function locker(wrap: string[] = []): Locker {
    const l = new Locker(wrap);
    lockers.push(l);
    return l;
  }

  beforeEach(async () => {
    s = new Scratch();
    fs.writeFileSync(join(s.lower, 'data'), 'x'.repeat(100));
    fs.writeFileSync(join(s.lower, 'other'), 'y');
    d = await s.mount();
    f = join(s.mnt, 'data');
  });

  afterEach(async () => {
    for (const l of lockers) await l.stop();
    lockers = [];
    await d?.stop();
    d = undefined;
    s.remove();
  });

  it('grants, refuses and splits byte ranges as Linux does, and reports conflicts in GETLK', async () => {
    const a = locker();
    const b = locker();
    const fa = await a.open(f);
    const fb = await b.open(f);
    assert.equal(await a.send(`lock ${fa} w 0 10`), 'ok');
    assert.equal(await b.send(`lock ${fb} w 5 10`), 'EAGAIN');
    assert.equal(await b.send(`lock ${fb} w 10 10`), 'ok', 'adjacent ranges do not conflict');
    assert.equal(await a.send(`lock ${fa} r 30 10`), 'ok');
    assert.equal(await b.send(`lock ${fb} r 35 10`), 'ok', 'readers share');
    assert.equal(await b.send(`lock ${fb} w 36 1`), 'EAGAIN');
    const pidA = (await a.send('pid')).slice(3);
    assert.equal(await b.send(`getlk ${fb} w 0 100`), `w 0 10 ${pidA}`);
    assert.equal(await a.send(`unlock ${fa} 3 4`), 'ok', 'unlocking the middle splits the lock');
    assert.equal(await b.send(`lock ${fb} w 3 4`), 'ok');
    assert.equal(await b.send(`lock ${fb} w 2 1`), 'EAGAIN');
    assert.equal(await b.send(`getlk ${fb} w 7 3`), `w 7 3 ${pidA}`);
  });

  it("releases all of a process's locks when it closes any descriptor of the file", async () => {
    const a = locker();
    const b = locker();
    const fa1 = await a.open(f);
    const fa2 = await a.open(f, 'ro');
    const fb = await b.open(f);
    assert.equal(await a.send(`lock ${fa1} w 0 10`), 'ok');
    assert.equal(await a.send(`lock ${fa1} w 50 10`), 'ok');
    assert.equal(await b.send(`lock ${fb} w 0 0`), 'EAGAIN');
    assert.equal(await a.send(`close ${fa2}`), 'ok');
    assert.equal(await b.send(`lock ${fb} w 0 0`), 'ok');
  });

  it('keeps POSIX, OFD and flock apart as Linux does', async () => {
    const a = locker();
    const b = locker();
    const fa1 = await a.open(f);
    const fa2 = await a.open(f);
    const fb = await b.open(f);
    // POSIX locks of one process never conflict across its descriptors; OFD locks do.
    assert.equal(await a.send(`lock ${fa1} w 0 10`), 'ok');
    assert.equal(await a.send(`lock ${fa2} w 0 10`), 'ok');
    assert.equal(await a.send(`unlock ${fa1} 0 0`), 'ok');
    assert.equal(await a.send(`lock ${fa1} w 0 10 ofd`), 'ok');
    assert.equal(await a.send(`lock ${fa2} w 0 10 ofd`), 'EAGAIN');
    // flock is another family altogether.
    assert.equal(await b.send(`flock ${fb} ex`), 'ok');
    assert.equal(await a.send(`flock ${fa2} sh`), 'EAGAIN');
    assert.equal(await b.send(`lock ${fb} w 20 10`), 'ok', 'a POSIX lock beside the flock');
    assert.equal(await b.send(`close ${fb}`), 'ok');
    assert.equal(await a.send(`flock ${fa2} sh`), 'ok', 'flock released on the last close');
  });

  it('queues a blocking lock without holding up 2000 other operations', async () => {
    const a = locker();
    const b = locker();
    const fa = await a.open(f);
    const fb = await b.open(f);
    assert.equal(await a.send(`lock ${fa} w 0 0`), 'ok');
    const waiting = b.send(`lock ${fb} w 0 0 wait`);
    assert.equal(await settled(waiting, 200), false, 'the waiter waits');
    const r = await python(
      `
import os, sys, threading, fcntl, struct
m = sys.argv[1]
errors = []
def work(i):
    try:
        os.stat(m + '/data'); open(m + '/other').read()
        fd = os.open(m + '/other', os.O_RDWR)
        fcntl.fcntl(fd, fcntl.F_SETLK, struct.pack('hhqqi4x', fcntl.F_WRLCK, 0, i, 1, 0))
        os.close(fd)
    except Exception as e: errors.append(repr(e))
threads = [threading.Thread(target=work, args=(i,)) for i in range(2000)]
[t.start() for t in threads]; [t.join() for t in threads]
print(len(errors), sorted(set(errors))[:3])
`,
      [s.mnt],
    );
    assert.equal(r.stdout.trim(), '0 []', r.stderr);
    assert.equal(await settled(waiting), false, 'and still waits');
    assert.equal(await a.send(`unlock ${fa} 0 0`), 'ok');
    assert.equal(await waiting, 'ok');
  });

  it('answers EINTR to a waiter interrupted by a signal with a handler', async () => {
    const a = locker();
    const b = locker();
    const fa = await a.open(f);
    const fb = await b.open(f);
    assert.equal(await a.send(`lock ${fa} w 0 0`), 'ok');
    const waiting = b.send(`lock ${fb} w 0 0 wait`);
    assert.equal(await settled(waiting, 200), false);
    b.signal('SIGUSR1');
    assert.equal(await waiting, 'EINTR');
    assert.equal(await a.send(`unlock ${fa} 0 0`), 'ok');
    assert.equal(await b.send(`lock ${fb} w 0 0`), 'ok', 'the interrupted request left nothing queued');
  });

  it('grants waiters in FIFO order after an unlock', async () => {
    const holder = locker();
    const fh = await holder.open(f);
    assert.equal(await holder.send(`lock ${fh} w 0 0`), 'ok');
    const order: string[] = [];
    const waiters = [];
    for (const name of ['first', 'second', 'third']) {
      const w = locker();
      const fd = await w.open(f);
      const p = w.send(`lock ${fd} w 0 0 wait`).then(async (a) => {
        order.push(`${name}:${a}`);
        await w.send(`unlock ${fd} 0 0`);
      });
      waiters.push(p);
      assert.equal(await settled(p, 100), false);
    }
    assert.equal(await holder.send(`unlock ${fh} 0 0`), 'ok');
    await Promise.all(waiters);
    assert.deepEqual(order, ['first:ok', 'second:ok', 'third:ok']);
  });

  it('answers EDEADLK for a two-process wait-for cycle instead of hanging', async () => {
    const a = locker();
    const b = locker();
    const fa = await a.open(f);
    const fb = await b.open(f);
    assert.equal(await a.send(`lock ${fa} w 0 10`), 'ok');
    assert.equal(await b.send(`lock ${fb} w 10 10`), 'ok');
    const aWaits = a.send(`lock ${fa} w 10 10 wait`);
    assert.equal(await settled(aWaits, 150), false);
    assert.match(await b.send(`lock ${fb} w 0 10 wait`), /^EDEADL(K|OCK)$/);
    assert.equal(await b.send(`unlock ${fb} 10 10`), 'ok');
    assert.equal(await aWaits, 'ok');
  });

  it('tells apart processes of different pid namespaces that are both pid 1 (seed 004)', async () => {
    const ns = ['unshare', '--pid', '--fork', '--mount-proc'];
    const a = locker(ns);
    const b = locker(ns);
    assert.equal(await a.send('pid'), 'ok 1');
    assert.equal(await b.send('pid'), 'ok 1');
    const fa = await a.open(f);
    const fb = await b.open(f);
    assert.equal(await a.send(`lock ${fa} w 0 0`), 'ok');
    assert.equal(await b.send(`lock ${fb} w 0 0`), 'EAGAIN', 'pid 1 of another namespace is another owner');
    assert.equal(await b.send(`getlk ${fb} w 0 0`), 'w 0 0 0', 'its pid is not visible from this namespace');
    assert.equal(await a.send(`close ${fa}`), 'ok');
    assert.equal(await b.send(`lock ${fb} w 0 0`), 'ok');
  });

  it('takes each lock on the lower file too, where local users of the lower see it', async () => {
    const viaMount = locker();
    const onLower = locker();
    const fm = await viaMount.open(f);
    const fl = await onLower.open(join(s.lower, 'data'));
    assert.equal(await viaMount.send(`lock ${fm} w 0 10`), 'ok');
    assert.equal(await onLower.send(`lock ${fl} w 5 1`), 'EAGAIN', 'the lower file carries the lock');
    assert.match(await onLower.send(`getlk ${fl} w 0 0`), /^w 0 10 /);
    assert.equal(await viaMount.send(`unlock ${fm} 0 10`), 'ok');
    assert.equal(await onLower.send(`lock ${fl} w 0 0`), 'ok');
    // A lock held on the lower holds a request through the mount, until it goes.
    assert.equal(await viaMount.send(`lock ${fm} w 0 1`), 'EAGAIN');
    assert.match(await viaMount.send(`getlk ${fm} w 0 1`), /^w 0 0 \d+$/);
    const waiting = viaMount.send(`lock ${fm} w 0 1 wait`);
    assert.equal(await settled(waiting, 300), false);
    assert.equal(await onLower.send(`unlock ${fl} 0 0`), 'ok');
    assert.equal(await waiting, 'ok');
  });

  it('keeps locks inside the mount with locks=local', async () => {
    await d!.stop();
    d = await s.mount('locks=local');
    const viaMount = locker();
    const onLower = locker();
    const fm = await viaMount.open(f);
    const fl = await onLower.open(join(s.lower, 'data'));
    assert.equal(await viaMount.send(`lock ${fm} w 0 0`), 'ok');
    assert.equal(await onLower.send(`lock ${fl} w 0 0`), 'ok');
  });

  it('revalidates a file when a lock is granted: data changed on the lower is read after the lock (seed 000)', async () => {
    const reader = locker();
    const fd = await reader.open(f);
    assert.equal(await reader.send(`read ${fd} 0 5`), "ok b'xxxxx'");
    // Same size, new bytes: nothing in a stat tells the kernel to drop its cached page.
    const lowerFd = fs.openSync(join(s.lower, 'data'), 'r+');
    fs.writeSync(lowerFd, 'NEWER', 0);
    fs.closeSync(lowerFd);
    assert.equal(await reader.send(`lock ${fd} r 0 0`), 'ok');
    assert.equal(await reader.send(`read ${fd} 0 5`), "ok b'NEWER'");
  });
});
