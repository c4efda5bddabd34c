import assert from 'assert/strict';
import * as fs from 'fs';
import { C, native } from '../../src/native';
import { constants as osConstants } from 'os';
import { Children, collect, freshPath, makeTempDir, rejectsWithCode } from './fixtures';

const errnoOf = (name: string): number => (osConstants.errno as Record<string, number>)[name]!;

describe('native locks', function () {
  this.timeout(10000);

  let dir = '';
  let file = '';
  const fds: number[] = [];
  const children = new Children();

  function open(): number {
    const fd = fs.openSync(file, 'r+');
    fds.push(fd);
    return fd;
  }

  before(function () {
    dir = makeTempDir();
  });
  after(function () {
    fs.rmSync(dir, { recursive: true, force: true });
  });
  beforeEach(function () {
    file = freshPath(dir);
    fs.writeFileSync(file, 'locked content');
  });
  afterEach(function () {
    children.killAll();
    for (const fd of fds.splice(0)) fs.closeSync(fd);
  });

  it('OFD locks on two fds of one file conflict, and F_OFD_GETLK reports the holder', async () => {
    const first = open();
    const second = open();
    assert.equal(await native.fcntlLock(first, C.F_OFD_SETLK, C.F_WRLCK, 0n, 100n), null);
    await rejectsWithCode(native.fcntlLock(second, C.F_OFD_SETLK, C.F_RDLCK, 50n, 10n), 'EAGAIN', 'fcntl');

    const holder = await native.fcntlLock(second, C.F_OFD_GETLK, C.F_RDLCK, 10n, 0n);
    assert.deepEqual(holder, { type: C.F_WRLCK, start: 0n, len: 100n, pid: -1 });

    assert.equal(await native.fcntlLock(first, C.F_OFD_SETLK, C.F_UNLCK, 0n, 0n), null);
    const free = await native.fcntlLock(second, C.F_OFD_GETLK, C.F_WRLCK, 0n, 0n);
    assert.equal(free?.type, C.F_UNLCK);
    assert.equal(await native.fcntlLock(second, C.F_OFD_SETLK, C.F_WRLCK, 50n, 10n), null);
  });

  it('fcntlLockSync and flockSync answer on the calling thread, with -errno instead of throwing', () => {
    const first = open();
    const second = open();
    assert.equal(native.fcntlLockSync(first, C.F_OFD_SETLK!, C.F_WRLCK!, 0n, 100n), null);
    assert.equal(native.fcntlLockSync(second, C.F_OFD_SETLK!, C.F_RDLCK!, 50n, 10n), -errnoOf('EAGAIN'));
    assert.deepEqual(native.fcntlLockSync(second, C.F_OFD_GETLK!, C.F_RDLCK!, 10n, 0n), { type: C.F_WRLCK, start: 0n, len: 100n, pid: -1 });
    assert.equal(native.fcntlLockSync(first, C.F_OFD_SETLK!, C.F_UNLCK!, 0n, 0n), null);
    assert.equal(native.fcntlLockSync(second, C.F_OFD_SETLK!, C.F_WRLCK!, 50n, 10n), null);

    assert.equal(native.flockSync(first, C.LOCK_EX! | C.LOCK_NB!), 0);
    assert.equal(native.flockSync(second, C.LOCK_SH! | C.LOCK_NB!), -errnoOf('EWOULDBLOCK'));
    assert.equal(native.flockSync(first, C.LOCK_UN!), 0);
    assert.equal(native.flockSync(second, C.LOCK_SH! | C.LOCK_NB!), 0);
    assert.equal(native.flockSync(-1, C.LOCK_UN!), -errnoOf('EBADF'));
  });

  it('OFD locks do not conflict beyond their range', async () => {
    const first = open();
    const second = open();
    await native.fcntlLock(first, C.F_OFD_SETLK, C.F_WRLCK, 0n, 10n);
    assert.equal(await native.fcntlLock(second, C.F_OFD_SETLK, C.F_WRLCK, 10n, 10n), null);
  });

  it('F_GETLK reports a POSIX lock held by another process with its pid', async () => {
    const script = [
      'import fcntl, sys',
      'f = open(sys.argv[1], "r+")',
      'fcntl.lockf(f, fcntl.LOCK_EX, 4, 2)',
      'print("locked", flush=True)',
      'sys.stdin.read()',
    ].join('\n');
    const child = children.start('python3', ['-c', script, file], { stdio: ['pipe', 'pipe', 'pipe'] });
    const done = collect(child);
    await new Promise<void>((resolve, reject) => {
      child.stdout?.on('data', (s: string) => {
        if (s.includes('locked')) resolve();
      });
      child.on('exit', () => reject(new Error('lock holder exited early')));
    });

    const fd = open();
    const holder = await native.fcntlLock(fd, C.F_GETLK, C.F_RDLCK, 0n, 0n);
    assert.deepEqual(holder, { type: C.F_WRLCK, start: 2n, len: 4n, pid: child.pid });
    await rejectsWithCode(native.fcntlLock(fd, C.F_SETLK, C.F_WRLCK, 3n, 1n), ['EAGAIN', 'EACCES'], 'fcntl');
    assert.equal(await native.fcntlLock(fd, C.F_SETLK, C.F_WRLCK, 6n, 1n), null);

    child.stdin?.end();
    assert.equal((await done).code, 0);
    assert.equal(await native.fcntlLock(fd, C.F_SETLKW, C.F_WRLCK, 0n, 0n), null);
  });

  it('flock locks on two fds conflict until unlocked', async () => {
    const first = open();
    const second = open();
    await native.flock(first, C.LOCK_EX);
    await rejectsWithCode(native.flock(second, C.LOCK_SH | C.LOCK_NB), 'EAGAIN', 'flock');
    await native.flock(first, C.LOCK_UN);
    await native.flock(second, C.LOCK_SH | C.LOCK_NB);
    await native.flock(first, C.LOCK_SH | C.LOCK_NB);
    await rejectsWithCode(native.flock(first, C.LOCK_EX | C.LOCK_NB), 'EAGAIN');
  });

  it('rejects a lock on a closed fd with EBADF', async () => {
    await rejectsWithCode(native.fcntlLock(-1, C.F_OFD_SETLK, C.F_WRLCK, 0n, 0n), 'EBADF', 'fcntl');
    await rejectsWithCode(native.flock(-1, C.LOCK_EX), 'EBADF', 'flock');
  });
});
