import assert from 'assert/strict';
import createDebug from 'debug';
import { promises as fsp } from 'fs';
import { join } from 'path';
import { ROOT_ID } from '../../src/fuse/abi';
import { MemFs } from './memfs';
import { mountHandler, type SessionMount } from '../helpers/session-mount';
import { Background, python, run } from '../helpers/proc';
import { waitUntil } from '../helpers/wait';

/** Takes a whole-file write lock and prints "locked"; with "hold", keeps it until killed. */
const HOLD_LOCK = `
import fcntl, sys, signal, time
f = open(sys.argv[1], 'r+')
def on_usr1(signum, frame):
    raise InterruptedError('interrupted by SIGUSR1')
signal.signal(signal.SIGUSR1, on_usr1)
try:
    fcntl.lockf(f, fcntl.LOCK_EX if sys.argv[2] == 'wait' else fcntl.LOCK_EX | fcntl.LOCK_NB)
except InterruptedError:
    print('eintr', flush=True); sys.exit(3)
except BlockingIOError:
    print('busy', flush=True); sys.exit(2)
print('locked', flush=True)
if sys.argv[3:] == ['hold']:
    time.sleep(600)
`;

describe('FUSE session through the real kernel (in-memory filesystem)', function () {
  this.timeout(30000);
  let fs: MemFs;
  let m: SessionMount;
  const children: Background[] = [];

  beforeEach(async () => {
    fs = new MemFs();
    fs.addFile(ROOT_ID, 'hello.txt', 'hello, world\n');
    m = await mountHandler(fs);
  });

  afterEach(async () => {
    for (const c of children.splice(0)) await c.stop();
    await m.close();
  });

  it('serves stat, readdir, read and write', async () => {
    const st = await fsp.stat(join(m.dir, 'hello.txt'));
    assert.equal(st.size, 13);
    assert.ok(st.isFile());
    assert.deepEqual((await fsp.readdir(m.dir)).sort(), ['hello.txt']);
    assert.equal(await fsp.readFile(join(m.dir, 'hello.txt'), 'utf8'), 'hello, world\n');
    await fsp.writeFile(join(m.dir, 'new.bin'), Buffer.alloc(3 * 1024 * 1024, 7));
    const back = await fsp.readFile(join(m.dir, 'new.bin'));
    assert.equal(back.length, 3 * 1024 * 1024);
    assert.ok(back.every((b) => b === 7));
    const ents = await fsp.readdir(m.dir, { withFileTypes: true });
    assert.deepEqual(ents.map((e) => [e.name, e.isFile()]).sort(), [
      ['hello.txt', true],
      ['new.bin', true],
    ]);
  });

  it('serves mkdir, symlink, rename, link, truncate, chmod, unlink, rmdir', async () => {
    const d = join(m.dir, 'sub');
    await fsp.mkdir(d, 0o750);
    assert.equal((await fsp.stat(d)).mode & 0o7777, 0o750);
    await fsp.symlink('../hello.txt', join(d, 'ln'));
    assert.equal(await fsp.readlink(join(d, 'ln')), '../hello.txt');
    assert.equal(await fsp.readFile(join(d, 'ln'), 'utf8'), 'hello, world\n');
    await fsp.rename(join(m.dir, 'hello.txt'), join(d, 'moved.txt'));
    await assert.rejects(fsp.stat(join(m.dir, 'hello.txt')), { code: 'ENOENT' });
    await fsp.link(join(d, 'moved.txt'), join(m.dir, 'hard'));
    assert.equal((await fsp.stat(join(m.dir, 'hard'))).nlink, 2);
    await fsp.truncate(join(m.dir, 'hard'), 5);
    assert.equal(await fsp.readFile(join(d, 'moved.txt'), 'utf8'), 'hello');
    await fsp.chmod(join(m.dir, 'hard'), 0o600);
    assert.equal((await fsp.stat(join(d, 'moved.txt'))).mode & 0o777, 0o600);
    await fsp.unlink(join(m.dir, 'hard'));
    await fsp.unlink(join(d, 'moved.txt'));
    await fsp.unlink(join(d, 'ln'));
    await fsp.rmdir(d);
    assert.deepEqual(await fsp.readdir(m.dir), []);
  });

  it('serves xattrs: set, get, list, remove, and ERANGE/ENODATA', async () => {
    const f = join(m.dir, 'hello.txt');
    const set = await run('setfattr', ['-n', 'user.colour', '-v', 'blue', f]);
    assert.equal(set.code, 0, set.stderr);
    const get = await run('getfattr', ['--only-values', '-n', 'user.colour', f]);
    assert.equal(get.stdout, 'blue');
    const list = await run('getfattr', ['-d', '-m', '-', f]);
    assert.match(list.stdout, /user\.colour="blue"/);
    const small = await python(
      `
import ctypes, errno, sys
libc = ctypes.CDLL(None, use_errno=True)
buf = ctypes.create_string_buffer(2)
n = libc.getxattr(sys.argv[1].encode(), b'user.colour', buf, 2)
print(n, errno.errorcode[ctypes.get_errno()] if n < 0 else '')
`,
      [f],
    );
    assert.equal(small.stdout.trim(), '-1 ERANGE');
    assert.equal((await run('setfattr', ['-x', 'user.colour', f])).code, 0);
    const gone = await run('getfattr', ['-n', 'user.colour', f]);
    assert.notEqual(gone.code, 0);
    assert.match(gone.stderr, /No such attribute/);
  });

  it('answers a blocking lock later, while other requests go on', async () => {
    const f = join(m.dir, 'hello.txt');
    const holder = new Background('python3', ['-c', HOLD_LOCK, f, 'nowait', 'hold']);
    children.push(holder);
    await holder.waitFor('locked');
    const waiter = new Background('python3', ['-c', HOLD_LOCK, f, 'wait']);
    children.push(waiter);
    const ino = (await fsp.stat(f)).ino;
    await waitUntil(() => fs.waiting(ino) > 0, { what: 'the SETLKW to reach the filesystem' });
    assert.equal(fs.waiting(ino), 1, 'the SETLKW is queued in the filesystem');
    // Meanwhile the daemon keeps serving.
    for (let i = 0; i < 20; i++) assert.equal((await fsp.stat(f)).size, 13);
    assert.ok(waiter.running, 'the waiter still waits');
    await holder.stop();
    await waiter.waitFor('locked');
    assert.equal((await waiter.exited).code, 0);
  });

  it('delivers INTERRUPT to a pending lock request, which answers EINTR', async () => {
    const f = join(m.dir, 'hello.txt');
    const holder = new Background('python3', ['-c', HOLD_LOCK, f, 'nowait', 'hold']);
    children.push(holder);
    await holder.waitFor('locked');
    const waiter = new Background('python3', ['-c', HOLD_LOCK, f, 'wait']);
    children.push(waiter);
    const ino = (await fsp.stat(f)).ino;
    await waitUntil(() => fs.waiting(ino) > 0, { what: 'the SETLKW to reach the filesystem' });
    assert.equal(fs.waiting(ino), 1);
    waiter.signal('SIGUSR1');
    const { code } = await waiter.exited;
    assert.equal(code, 3, `waiter output: ${waiter.stdout} ${waiter.stderr}`);
    assert.equal(waiter.stdout.trim(), 'eintr');
    assert.equal(fs.waiting(ino), 0, 'the interrupted waiter was removed');
  });

  it('keeps serving while a request stays unanswered', async () => {
    // The held lookup keeps the root directory locked (shared) in the kernel, so the writes
    // below go to another directory.
    await fsp.mkdir(join(m.dir, 'sub'));
    fs.hangOnLookup.add('hang');
    const stuck = new Background('stat', [join(m.dir, 'hang')]);
    children.push(stuck);
    await waitUntil(() => fs.hungCount > 0, { what: 'the held LOOKUP' });
    assert.equal(fs.hungCount, 1);
    const stats = await Promise.all(Array.from({ length: 200 }, () => fsp.stat(join(m.dir, 'hello.txt'))));
    assert.ok(stats.every((s) => s.size === 13));
    await fsp.writeFile(join(m.dir, 'sub', 'other'), 'x');
    assert.equal(await fsp.readFile(join(m.dir, 'sub', 'other'), 'utf8'), 'x');
    assert.ok(stuck.running, 'the stuck stat is still waiting');
    fs.answerHung('hang');
    const { code } = await stuck.exited;
    assert.equal(code, 1);
    assert.match(stuck.stderr, /No such file/);
  });

  it('sends inval_entry without blocking the loop while the kernel holds the directory', async () => {
    await fsp.mkdir(join(m.dir, 'sub'));
    await fsp.writeFile(join(m.dir, 'sub', 'f'), 'data');
    assert.equal((await fsp.stat(join(m.dir, 'hello.txt'))).size, 13, 'entry now in the dcache');
    fs.hangOnLookup.add('hang');
    const stuck = new Background('stat', [join(m.dir, 'hang')]);
    children.push(stuck);
    await waitUntil(() => fs.hungCount > 0, { what: 'the held LOOKUP' });
    let settled = false;
    const sent = m.session.notifyInvalEntry(ROOT_ID, Buffer.from('hello.txt')).then((r) => {
      settled = true;
      return r;
    });
    // The notification waits for the root directory's lock, which the held lookup keeps;
    // the loop must go on serving meanwhile (in another directory: new lookups in the root
    // queue behind the notification's lock request).
    for (let i = 0; i < 20; i++) assert.equal((await fsp.stat(join(m.dir, 'sub', 'f'))).size, 4);
    assert.equal(settled, false, 'the notification is still waiting for the directory');
    fs.answerHung('hang');
    const res = await sent;
    assert.ok(settled);
    assert.ok(res >= 0, `notification accepted by the kernel (${res})`);
    await stuck.exited;
  });

  it('answers unknown names with ENOENT and reports statfs', async () => {
    await assert.rejects(fsp.stat(join(m.dir, 'nope')), { code: 'ENOENT' });
    const out = await run('stat', ['-f', '-c', '%b %f %l', m.dir]);
    assert.equal(out.stdout.trim(), '1000 500 255');
  });

  it('traces requests and replies readably under DEBUG=ovshift:fuse', async () => {
    const lines: string[] = [];
    const saved = createDebug.log;
    const was = createDebug.disable();
    createDebug.enable('ovshift:fuse');
    createDebug.log = (...args: unknown[]) => lines.push(args.map(String).join(' '));
    try {
      await fsp.stat(join(m.dir, 'hello.txt'));
      await assert.rejects(fsp.stat(join(m.dir, 'missing')), { code: 'ENOENT' });
    } finally {
      createDebug.log = saved;
      createDebug.disable();
      if (was) createDebug.enable(was);
    }
    const text = lines.join('\n');
    assert.match(text, /→ #\d+ LOOKUP node=1 uid=0 gid=0 pid=\d+ name="hello.txt"/);
    assert.match(text, /← #\d+ LOOKUP OK nodeid=\d+ .*mode=0100644/);
    assert.match(text, /← #\d+ LOOKUP ENOENT/);
  });

  it('ends the session when the filesystem is unmounted from outside', async () => {
    const r = await run('umount', [m.dir]);
    assert.equal(r.code, 0, r.stderr);
    const errno = await m.session.closed;
    assert.equal(errno, 19, 'ENODEV');
  });
});
