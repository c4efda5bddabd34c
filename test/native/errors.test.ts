import assert from 'assert/strict';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { AT_FDCWD, C, native } from '../../src/native';
import { errnoOf, freshPath, makeTempDir, rejectsWithCode } from './fixtures';

const REQUIRED_CONSTANTS = [
  'AT_FDCWD',
  'AT_SYMLINK_NOFOLLOW',
  'AT_EMPTY_PATH',
  'AT_REMOVEDIR',
  'AT_STATX_SYNC_AS_STAT',
  'AT_STATX_FORCE_SYNC',
  'AT_STATX_DONT_SYNC',
  'STATX_BASIC_STATS',
  'STATX_BTIME',
  'STATX_ALL',
  'UTIME_NOW',
  'UTIME_OMIT',
  'RENAME_NOREPLACE',
  'RENAME_EXCHANGE',
  'RENAME_WHITEOUT',
  'XATTR_CREATE',
  'XATTR_REPLACE',
  'F_GETLK',
  'F_SETLK',
  'F_SETLKW',
  'F_OFD_GETLK',
  'F_OFD_SETLK',
  'F_OFD_SETLKW',
  'F_RDLCK',
  'F_WRLCK',
  'F_UNLCK',
  'LOCK_SH',
  'LOCK_EX',
  'LOCK_UN',
  'LOCK_NB',
  'SEEK_DATA',
  'SEEK_HOLE',
  'FALLOC_FL_KEEP_SIZE',
  'FALLOC_FL_PUNCH_HOLE',
  'FALLOC_FL_ZERO_RANGE',
  'FALLOC_FL_COLLAPSE_RANGE',
  'FALLOC_FL_INSERT_RANGE',
  'FALLOC_FL_UNSHARE_RANGE',
  'MS_RDONLY',
  'MS_NOSUID',
  'MS_NODEV',
  'MS_NOEXEC',
  'MS_NOATIME',
  'MS_NODIRATIME',
  'MS_RELATIME',
  'MS_STRICTATIME',
  'MS_SYNCHRONOUS',
  'MS_DIRSYNC',
  'MS_LAZYTIME',
  'MNT_FORCE',
  'MNT_DETACH',
  'MNT_EXPIRE',
  'UMOUNT_NOFOLLOW',
  'O_PATH',
  'O_NOFOLLOW',
  'O_DIRECTORY',
  'O_TMPFILE',
  'O_NOATIME',
  'O_CLOEXEC',
  'O_NONBLOCK',
];

describe('native errors, arguments and constants', function () {
  this.timeout(10000);

  let dir = '';
  before(function () {
    dir = makeTempDir();
  });
  after(function () {
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('rejects with an Error shaped like Node fs errors', async () => {
    const missing = path.join(dir, 'missing');
    const error = await rejectsWithCode(native.openat(AT_FDCWD, missing, C.O_RDONLY, 0), 'ENOENT', 'openat');
    assert.ok(error instanceof Error);
    assert.equal(error.message, 'ENOENT: no such file or directory, openat');
    assert.equal(error.errno, -os.constants.errno.ENOENT);
    let nodeError: NodeJS.ErrnoException | undefined;
    try {
      fs.openSync(missing, 'r');
    } catch (e) {
      nodeError = e as NodeJS.ErrnoException;
    }
    assert.equal(error.code, nodeError?.code);
    assert.equal(error.errno, nodeError?.errno);
  });

  it('names errnos the kernel way (EOPNOTSUPP, not ENOTSUP)', async () => {
    const a = freshPath(dir);
    const b = freshPath(dir);
    fs.writeFileSync(a, 'a');
    fs.writeFileSync(b, '');
    const src = fs.openSync(a, 'r');
    const dst = fs.openSync(b, 'r+');
    try {
      const error = await rejectsWithCode(native.ficlone(dst, src), 'EOPNOTSUPP', 'ioctl');
      assert.equal(error.message, 'EOPNOTSUPP: operation not supported, ioctl');
    } finally {
      fs.closeSync(src);
      fs.closeSync(dst);
    }
  });

  it('throws synchronously with the errno shape from the synchronous calls', () => {
    assert.throws(() => native.setNonblock(123456), {
      name: 'Error',
      code: 'EBADF',
      errno: -errnoOf('EBADF'),
      syscall: 'fcntl',
      message: 'EBADF: bad file descriptor, fcntl',
    });
  });

  it('throws a TypeError for arguments of the wrong type, before any syscall', () => {
    const loose = native as unknown as Record<string, (...args: unknown[]) => unknown>;
    assert.throws(() => loose.openat(AT_FDCWD, 42, 0, 0), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' });
    assert.throws(() => loose.openat('x', '/', 0, 0), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' });
    assert.throws(() => loose.lseek(0, 5, 0), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' });
    assert.throws(() => loose.setxattrat(AT_FDCWD, '/', 'user.x', 'not a buffer', 0, false), TypeError);
    assert.throws(() => loose.getxattrat(AT_FDCWD, '/', 'user.x', 'no'), TypeError);
    assert.throws(() => loose.statx(AT_FDCWD), { name: 'TypeError', code: 'ERR_MISSING_ARGS' });
    assert.throws(() => loose.notifyWrite(1, [Buffer.alloc(1)], 'not a function'), TypeError);
  });

  it('refuses a path containing a NUL byte instead of truncating it', () => {
    assert.throws(() => native.statx(AT_FDCWD, '/tmp\0/etc/passwd', 0, C.STATX_BASIC_STATS), TypeError);
    assert.throws(() => native.getxattrat(AT_FDCWD, Buffer.from('/tmp\0x'), 'user.x', false), TypeError);
  });

  it('refuses a bigint that does not fit in 64 bits', () => {
    assert.throws(() => native.lseek(0, 1n << 64n, C.SEEK_SET), RangeError);
  });

  it('exports the required constants as numbers with the kernel values', () => {
    for (const name of REQUIRED_CONSTANTS) assert.equal(typeof C[name], 'number', name);
    assert.equal(C.AT_FDCWD, AT_FDCWD);
    assert.equal(C.O_CLOEXEC, 0o2000000);
    assert.equal(C.O_NOFOLLOW, fs.constants.O_NOFOLLOW);
    assert.equal(C.O_DIRECTORY, fs.constants.O_DIRECTORY);
    assert.equal(C.O_NONBLOCK, fs.constants.O_NONBLOCK);
    assert.deepEqual([C.F_OFD_GETLK, C.F_OFD_SETLK, C.F_OFD_SETLKW], [36, 37, 38]);
    assert.deepEqual([C.RENAME_NOREPLACE, C.RENAME_EXCHANGE, C.RENAME_WHITEOUT], [1, 2, 4]);
    assert.deepEqual([C.UTIME_NOW, C.UTIME_OMIT], [(1 << 30) - 1, (1 << 30) - 2]);
    assert.ok(Object.isFrozen(C));
  });
});
