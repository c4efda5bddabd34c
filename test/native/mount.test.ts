import assert from 'assert/strict';
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { AT_FDCWD, C, native } from '../../src/native';
import { Children, errnoOf, fdFlags, freshPath, isMounted, makeTempDir, rejectsWithCode } from './fixtures';

function mountOptions(dir: string): string[] {
  const line = fs
    .readFileSync('/proc/self/mounts', 'utf8')
    .split('\n')
    .find((l) => l.split(' ')[1] === dir);
  assert.ok(line !== undefined, `${dir} is not mounted`);
  const [, , fstype, options] = line.split(' ');
  return [fstype, ...options.split(',')];
}

describe('native mount, fd passing and the FUSE device', function () {
  this.timeout(10000);

  describe('mount and umount2', function () {
    let target = '';
    before(function () {
      target = makeTempDir();
    });
    after(function () {
      if (isMounted(target)) execFileSync('umount', ['-l', target]);
      fs.rmSync(target, { recursive: true, force: true });
    });

    it('mounts a tmpfs with flags and data, and unmounts it', async () => {
      const before = fs.statSync(target, { bigint: true }).dev;
      await native.mount('ovshift-test', target, 'tmpfs', C.MS_NOSUID | C.MS_NODEV | C.MS_NOEXEC, 'size=1m,mode=0700');
      const options = mountOptions(target);
      assert.equal(options[0], 'tmpfs');
      for (const expected of ['nosuid', 'nodev', 'noexec', 'size=1024k', 'mode=700']) {
        assert.ok(options.includes(expected), `${expected} missing from ${options.join(',')}`);
      }
      assert.notEqual(fs.statSync(target, { bigint: true }).dev, before);
      fs.writeFileSync(path.join(target, 'inside'), 'x');

      await rejectsWithCode(native.umount2(Buffer.from(target), C.UMOUNT_NOFOLLOW | C.MNT_EXPIRE), 'EAGAIN', 'umount2');
      await native.umount2(Buffer.from(target), 0);
      assert.ok(!isMounted(target));
      assert.ok(!fs.existsSync(path.join(target, 'inside')));
    });

    it('rejects an unknown filesystem type with ENODEV and a non-mountpoint with EINVAL', async () => {
      await rejectsWithCode(native.mount('none', target, 'no-such-fs', 0, ''), 'ENODEV', 'mount');
      await rejectsWithCode(native.umount2(target, 0), 'EINVAL', 'umount2');
      await rejectsWithCode(native.umount2(path.join(target, 'missing'), C.MNT_DETACH), 'ENOENT');
    });
  });

  describe('socketpair and recvFd', function () {
    let dir = '';
    const fds: number[] = [];
    const children = new Children();
    const sendScript = [
      'import socket, sys',
      'sock = socket.socket(fileno=int(sys.argv[1]))',
      'with open(sys.argv[2]) as f:',
      '    socket.send_fds(sock, [b"\\0"], [f.fileno()])',
    ].join('\n');

    function pair(): [number, number] {
      const [a, b] = native.socketpair();
      fds.push(a, b);
      return [a, b];
    }

    before(function () {
      dir = makeTempDir();
    });
    after(function () {
      fs.rmSync(dir, { recursive: true, force: true });
    });
    afterEach(function () {
      children.killAll();
      for (const fd of fds.splice(0)) fs.closeSync(fd);
    });

    it('socketpair returns two connected close-on-exec sockets', () => {
      const [a, b] = pair();
      assert.ok(fs.readlinkSync(`/proc/self/fd/${a}`).startsWith('socket:'));
      assert.equal(fdFlags(a) & C.O_CLOEXEC, C.O_CLOEXEC);
      assert.equal(fdFlags(b) & C.O_CLOEXEC, C.O_CLOEXEC);
      fs.writeSync(a, 'ping');
      const got = Buffer.alloc(4);
      assert.equal(fs.readSync(b, got), 4);
      assert.equal(got.toString(), 'ping');
    });

    it('receives an fd passed by a child process, which reads the passed file', async () => {
      const file = freshPath(dir);
      fs.writeFileSync(file, 'passed through SCM_RIGHTS');
      const [mine, theirs] = pair();
      const received = native.recvFd(mine);
      // Handed down as the child's fd 3, as mount.ts hands it to fusermount3.
      const result = await children.run('python3', ['-c', sendScript, '3', file], { stdio: ['ignore', 'pipe', 'pipe', theirs] });
      assert.equal(result.code, 0, result.stderr);
      const fd = await received;
      fds.push(fd);
      assert.equal(fdFlags(fd) & C.O_CLOEXEC, C.O_CLOEXEC);
      const content = Buffer.alloc(64);
      const n = fs.readSync(fd, content, 0, 64, 0);
      assert.equal(content.subarray(0, n).toString(), 'passed through SCM_RIGHTS');
    });

    it('a child does not inherit the socket unless it is handed down', async () => {
      const file = freshPath(dir);
      fs.writeFileSync(file, '');
      const [, theirs] = pair();
      const result = await children.run('python3', ['-c', sendScript, String(theirs), file]);
      assert.notEqual(result.code, 0);
      assert.match(result.stderr, /Bad file descriptor/);
    });

    it('rejects with ECONNRESET when the peer closes without sending an fd', async () => {
      const [mine, theirs] = pair();
      const received = native.recvFd(mine);
      fs.closeSync(theirs);
      fds.splice(fds.indexOf(theirs), 1);
      await rejectsWithCode(received, 'ECONNRESET', 'recvmsg');
    });

    it('rejects with EPROTO when the peer sends bytes but no fd', async () => {
      const [mine, theirs] = pair();
      fs.writeSync(theirs, 'x');
      await rejectsWithCode(native.recvFd(mine), 'EPROTO', 'recvmsg');
    });
  });

  describe('FUSE device', function () {
    const fds: number[] = [];
    afterEach(function () {
      for (const fd of fds.splice(0)) fs.closeSync(fd);
    });

    it('devOpen opens /dev/fuse read-write, non-blocking and close-on-exec', () => {
      const fd = native.devOpen();
      fds.push(fd);
      assert.equal(fs.readlinkSync(`/proc/self/fd/${fd}`), '/dev/fuse');
      const flags = fdFlags(fd);
      assert.equal(flags & C.O_RDWR, C.O_RDWR);
      assert.equal(flags & C.O_NONBLOCK, C.O_NONBLOCK);
      assert.equal(flags & C.O_CLOEXEC, C.O_CLOEXEC);
    });

    it('backingOpen and backingClose return -errno instead of throwing', async () => {
      const fd = await native.openat(AT_FDCWD, '/etc/passwd', C.O_RDONLY | C.O_CLOEXEC, 0);
      fds.push(fd);
      assert.equal(native.backingOpen(fd, fd), -errnoOf('ENOTTY'));
      assert.equal(native.backingClose(fd, 1), -errnoOf('ENOTTY'));
      const fuseFd = native.devOpen();
      fds.push(fuseFd);
      // The FUSE device knows both ioctls (an unknown one would be ENOTTY) but has no connection.
      assert.equal(native.backingOpen(fuseFd, fd), -errnoOf('EPERM'));
      assert.equal(native.backingClose(fuseFd, 1), -errnoOf('EPERM'));
    });
  });
});
