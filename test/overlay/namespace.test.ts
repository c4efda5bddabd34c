import assert from 'assert/strict';
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import { join } from 'path';
import { Scratch } from '../helpers/ovshift';
import { python, run } from '../helpers/proc';
import { ls, makeTree, read } from '../helpers/tree';

const RENAME2 = `
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
flags = {'noreplace': 1, 'exchange': 2, 'whiteout': 4}[sys.argv[3]]
r = libc.renameat2(-100, sys.argv[1].encode(), -100, sys.argv[2].encode(), flags)
print('ok' if r == 0 else os.strerror(ctypes.get_errno()))
`;

describe('overlay: names, links, special files and file operations', function () {
  this.timeout(30000);
  let s: Scratch;

  beforeEach(() => {
    s = new Scratch();
  });

  afterEach(() => s.dispose());

  it('executes programs from the lower, from the upper, and copied up (an exec opens with flags of its own)', async () => {
    makeTree(s.lower, { 'bin/hello': '#!/bin/sh\necho hello from the lower\n' });
    fs.chmodSync(join(s.lower, 'bin/hello'), 0o755);
    await s.mount();
    assert.equal(execFileSync(join(s.mnt, 'bin/hello')).toString(), 'hello from the lower\n');
    fs.copyFileSync('/bin/true', join(s.mnt, 'bin/true'));
    fs.chmodSync(join(s.mnt, 'bin/true'), 0o755);
    assert.equal(execFileSync(join(s.mnt, 'bin/true')).toString(), '');
    fs.appendFileSync(join(s.mnt, 'bin/hello'), 'echo and from the upper\n');
    assert.equal(execFileSync(join(s.mnt, 'bin/hello')).toString(), 'hello from the lower\nand from the upper\n');
  });

  it('renames files over lower and upper files, leaving whiteouts where lower names must stay hidden', async () => {
    makeTree(s.lower, { a: 'A', b: 'B', sub: { dir: true } });
    await s.mount();
    fs.renameSync(join(s.mnt, 'a'), join(s.mnt, 'b'));
    assert.deepEqual(ls(s.mnt), ['b', 'sub']);
    assert.equal(read(join(s.mnt, 'b')), 'A');
    fs.renameSync(join(s.mnt, 'b'), join(s.mnt, 'sub/c'));
    assert.deepEqual(ls(s.mnt), ['sub']);
    assert.equal(read(join(s.mnt, 'sub/c')), 'A');
    assert.ok(fs.lstatSync(join(s.upper, 'a')).isCharacterDevice(), 'whiteout for the lower a');
    assert.ok(fs.lstatSync(join(s.upper, 'b')).isCharacterDevice(), 'whiteout for the lower b');
    assert.deepEqual(ls(s.lower), ['a', 'b', 'sub']);
  });

  it('renames directories with lower parts through a redirect, in kernel overlayfs format', async () => {
    makeTree(s.lower, { 'd1/f': '1', 'd1/sub/g': '2', 'other/x': 'x' });
    const d = await s.mount('redirect_dir=on');
    fs.renameSync(join(s.mnt, 'd1'), join(s.mnt, 'moved'));
    fs.renameSync(join(s.mnt, 'moved'), join(s.mnt, 'other/deeper'));
    assert.deepEqual(ls(s.mnt), ['other']);
    assert.deepEqual(ls(join(s.mnt, 'other/deeper')), ['f', 'sub']);
    assert.equal(read(join(s.mnt, 'other/deeper/sub/g')), '2');
    const redirect = execFileSync('getfattr', ['--absolute-names', '--only-values', '-n', 'trusted.overlay.redirect', join(s.upper, 'other/deeper')], {
      encoding: 'utf8',
    });
    assert.equal(redirect, '/d1');
    await d.stop();
    // The same upper, read by kernel overlayfs.
    execFileSync('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${s.lower},upperdir=${s.upper},workdir=${s.work},redirect_dir=on`, s.mnt]);
    try {
      assert.deepEqual(ls(s.mnt), ['other']);
      assert.deepEqual(ls(join(s.mnt, 'other/deeper')), ['f', 'sub']);
      assert.equal(read(join(s.mnt, 'other/deeper/f')), '1');
    } finally {
      execFileSync('umount', [s.mnt]);
    }
  });

  it('answers EXDEV for such renames with redirect_dir=off', async () => {
    makeTree(s.lower, { 'd1/f': '1' });
    await s.mount('redirect_dir=off');
    assert.throws(() => fs.renameSync(join(s.mnt, 'd1'), join(s.mnt, 'd2')), { code: 'EXDEV' });
    fs.mkdirSync(join(s.mnt, 'fresh'));
    fs.renameSync(join(s.mnt, 'fresh'), join(s.mnt, 'fresh2'));
    assert.deepEqual(ls(s.mnt), ['d1', 'fresh2']);
  });

  it('supports RENAME_NOREPLACE and RENAME_EXCHANGE, refuses RENAME_WHITEOUT', async () => {
    makeTree(s.lower, { a: 'A', b: 'B', 'da/f': 'in da' });
    await s.mount('redirect_dir=on');
    assert.equal((await python(RENAME2, [join(s.mnt, 'a'), join(s.mnt, 'b'), 'noreplace'])).stdout.trim(), 'File exists');
    assert.equal((await python(RENAME2, [join(s.mnt, 'a'), join(s.mnt, 'c'), 'noreplace'])).stdout.trim(), 'ok');
    assert.equal((await python(RENAME2, [join(s.mnt, 'c'), join(s.mnt, 'b'), 'exchange'])).stdout.trim(), 'ok');
    assert.equal(read(join(s.mnt, 'b')), 'A');
    assert.equal(read(join(s.mnt, 'c')), 'B');
    assert.equal((await python(RENAME2, [join(s.mnt, 'da'), join(s.mnt, 'b'), 'exchange'])).stdout.trim(), 'ok');
    assert.equal(read(join(s.mnt, 'da')), 'A');
    assert.equal(read(join(s.mnt, 'b/f')), 'in da');
    assert.equal((await python(RENAME2, [join(s.mnt, 'c'), join(s.mnt, 'e'), 'whiteout'])).stdout.trim(), 'Invalid argument');
    assert.deepEqual(ls(s.mnt), ['b', 'c', 'da']);
  });

  it('replaces an empty merged directory, refuses a non-empty one', async () => {
    makeTree(s.lower, { 'full/x': 'x', 'empty/gone': 'g', src: { dir: true } });
    await s.mount('redirect_dir=on');
    fs.unlinkSync(join(s.mnt, 'empty/gone'));
    assert.throws(() => fs.renameSync(join(s.mnt, 'src'), join(s.mnt, 'full')), { code: 'ENOTEMPTY' });
    assert.throws(() => fs.rmdirSync(join(s.mnt, 'full')), { code: 'ENOTEMPTY' });
    fs.renameSync(join(s.mnt, 'src'), join(s.mnt, 'empty'));
    assert.deepEqual(ls(join(s.mnt, 'empty')), []);
    fs.rmdirSync(join(s.mnt, 'empty'));
    assert.deepEqual(ls(s.mnt), ['full']);
  });

  it('makes hard links (copying a lower file up first) that share st_ino and count in st_nlink', async () => {
    makeTree(s.lower, { f: 'shared' });
    await s.mount();
    fs.linkSync(join(s.mnt, 'f'), join(s.mnt, 'g'));
    fs.linkSync(join(s.mnt, 'g'), join(s.mnt, 'h'));
    const [f, g, h] = ['f', 'g', 'h'].map((n) => fs.statSync(join(s.mnt, n)));
    assert.equal(f!.ino, g!.ino);
    assert.equal(g!.ino, h!.ino);
    assert.equal(h!.nlink, 3);
    fs.appendFileSync(join(s.mnt, 'h'), '!');
    assert.equal(read(join(s.mnt, 'f')), 'shared!');
    fs.unlinkSync(join(s.mnt, 'f'));
    assert.equal(fs.statSync(join(s.mnt, 'g')).nlink, 2);
    assert.equal(read(join(s.lower, 'f')), 'shared');
  });

  it('makes O_TMPFILE files: unnamed, named later by linkat (also in a lower directory and over a whiteout), never with O_EXCL, gone when closed unnamed', async () => {
    makeTree(s.lower, { 'ldir/old': 'lower' });
    await s.mount();
    const r = await python(
      `
import ctypes, errno, os, sys
mnt = sys.argv[1]
libc = ctypes.CDLL(None, use_errno=True)
AT_EMPTY_PATH = 0x1000
def tmpfile(d, data, extra=0):
    fd = os.open(d, os.O_TMPFILE | os.O_RDWR | extra, 0o640)
    os.write(fd, data)
    return fd
def link(fd, path):
    if libc.linkat(fd, b'', -100, path.encode(), AT_EMPTY_PATH) != 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
fd = tmpfile(mnt, b'one')
print(os.fstat(fd).st_nlink, oct(os.fstat(fd).st_mode & 0o777), os.listdir(mnt))
link(fd, mnt + '/named')
print(os.fstat(fd).st_nlink, open(mnt + '/named').read(), os.stat(mnt + '/named').st_ino == os.fstat(fd).st_ino)
os.close(fd)
fd = tmpfile(mnt + '/ldir', b'two')
os.unlink(mnt + '/ldir/old')
link(fd, mnt + '/ldir/old')
print(os.fstat(fd).st_nlink, open(mnt + '/ldir/old').read())
os.close(fd)
fd = tmpfile(mnt, b'three', os.O_EXCL)
try:
    link(fd, mnt + '/excl')
    print('linked')
except OSError as e:
    print(errno.errorcode[e.errno])
os.close(fd)
print(sorted(os.listdir(mnt)), sorted(os.listdir(mnt + '/ldir')))
`,
      [s.mnt],
    );
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.stdout.trim().split('\n'), ["0 0o640 ['ldir']", '1 one True', '1 two', 'ENOENT', "['ldir', 'named'] ['old']"]);
    assert.equal(read(join(s.upper, 'ldir/old')), 'two');
    assert.equal(read(join(s.lower, 'ldir/old')), 'lower');
    assert.deepEqual(ls(s.upper).sort(), ['ldir', 'named'], 'nothing left of the unnamed files');
  });

  it('creates symlinks, FIFOs, sockets and device nodes, owned by the caller', async () => {
    await s.mount();
    fs.symlinkSync('target/path', join(s.mnt, 'ln'));
    assert.equal(fs.readlinkSync(join(s.mnt, 'ln')), 'target/path');
    execFileSync('mkfifo', [join(s.mnt, 'fifo')]);
    assert.ok(fs.lstatSync(join(s.mnt, 'fifo')).isFIFO());
    execFileSync('mknod', [join(s.mnt, 'null'), 'c', '1', '3']);
    const dev = fs.lstatSync(join(s.mnt, 'null'));
    assert.ok(dev.isCharacterDevice());
    assert.equal(dev.rdev, fs.statSync('/dev/null').rdev);
    const sock = await python(`import socket, sys\ns = socket.socket(socket.AF_UNIX)\ns.bind(sys.argv[1])\nprint('bound')`, [join(s.mnt, 'sock')]);
    assert.equal(sock.stdout.trim(), 'bound');
    assert.ok(fs.lstatSync(join(s.mnt, 'sock')).isSocket());
    const made = await run('setpriv', ['--reuid=1234', '--regid=5678', '--clear-groups', 'sh', '-c', `mkdir ${s.mnt}/byuser/ 2>&1 || true`]);
    assert.match(made.stdout, /Permission denied/, 'the kernel checks permissions on the shown attributes');
    fs.chmodSync(s.mnt, 0o777);
    assert.equal((await run('setpriv', ['--reuid=1234', '--regid=5678', '--clear-groups', 'mkdir', join(s.mnt, 'byuser')])).code, 0);
    const st = fs.statSync(join(s.mnt, 'byuser'));
    assert.deepEqual([st.uid, st.gid], [1234, 5678]);
    assert.deepEqual([fs.statSync(join(s.upper, 'byuser')).uid, fs.statSync(join(s.upper, 'byuser')).gid], [1234, 5678]);
  });

  it('inherits the group of a set-group-ID directory', async () => {
    fs.mkdirSync(join(s.lower, 'shared'));
    fs.chownSync(join(s.lower, 'shared'), 0, 4321);
    fs.chmodSync(join(s.lower, 'shared'), 0o2777);
    await s.mount();
    await run('setpriv', ['--reuid=1234', '--regid=5678', '--clear-groups', 'sh', '-c', `touch ${s.mnt}/shared/f && mkdir ${s.mnt}/shared/d`]);
    const f = fs.statSync(join(s.mnt, 'shared/f'));
    const dd = fs.statSync(join(s.mnt, 'shared/d'));
    assert.deepEqual([f.uid, f.gid], [1234, 4321]);
    assert.deepEqual([dd.gid, (dd.mode & 0o2000) !== 0], [4321, true]);
  });

  it('keeps the set-user-ID and set-group-ID bits a file is created with, by open, mknod and O_TMPFILE, for root and for its owner (generic/633)', async () => {
    fs.mkdirSync(join(s.lower, 'sgid'));
    fs.chmodSync(join(s.lower, 'sgid'), 0o2777);
    fs.mkdirSync(join(s.lower, 'user'));
    fs.chownSync(join(s.lower, 'user'), 1234, 1234);
    await s.mount();
    const CREATE = `
import ctypes, os, stat, sys
libc = ctypes.CDLL(None, use_errno=True)
AT_SYMLINK_FOLLOW = 0x400
d = sys.argv[1]
os.umask(0)
os.close(os.open(d + '/open', os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o2010))
os.close(os.open(d + '/suid', os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o4755))
os.mknod(d + '/mknod', stat.S_IFREG | 0o6750)
os.mknod(d + '/chrdev', stat.S_IFCHR | 0o2750, os.makedev(5, 1)) if os.geteuid() == 0 else open(d + '/chrdev', 'w').close()
fd = os.open(d, os.O_TMPFILE | os.O_WRONLY, 0o2750)
if libc.linkat(-100, b'/proc/self/fd/%d' % fd, -100, (d + '/tmpfile').encode(), AT_SYMLINK_FOLLOW) != 0:
    raise OSError(ctypes.get_errno(), 'linkat')
print(' '.join(oct(os.stat(d + '/' + n).st_mode & 0o7777) for n in ['open', 'suid', 'mknod', 'tmpfile', 'chrdev']))
`;
    let r = await python(CREATE, [join(s.mnt, 'sgid')]);
    assert.equal(r.stdout.trim(), '0o2010 0o4755 0o6750 0o2750 0o2750', r.stderr);
    r = await python(CREATE, [join(s.mnt, 'user')], { uid: 1234, gid: 1234 });
    assert.equal(r.stdout.trim(), '0o2010 0o4755 0o6750 0o2750 0o666', r.stderr);
    assert.equal(fs.statSync(join(s.upper, 'user/suid')).uid, 1234);
  });

  it('truncates, fallocates, seeks data and holes, fsyncs, and reports the upper filesystem in statfs', async () => {
    makeTree(s.lower, { f: 'x'.repeat(10000) });
    await s.mount();
    const r = await python(
      `
import os, sys
p = sys.argv[1]
fd = os.open(p + '/f', os.O_RDWR)
os.ftruncate(fd, 1 << 20)
os.posix_fallocate(fd, 0, 4096)
os.pwrite(fd, b'end', (1 << 20) - 3)
print(os.fstat(fd).st_size)
print(os.lseek(fd, 0, os.SEEK_DATA), os.lseek(fd, 0, os.SEEK_HOLE) < (1 << 20))
print(os.lseek(fd, 600000, os.SEEK_DATA) >= 600000)
# A negative offset: ENXIO, as on a local filesystem (generic/448).
for whence in (os.SEEK_DATA, os.SEEK_HOLE):
    try:
        os.lseek(fd, -1, whence)
    except OSError as e:
        print(os.strerror(e.errno))
os.fsync(fd); os.fdatasync(fd)
os.close(fd)
st = os.statvfs(p)
print(st.f_namemax)
`,
      [s.mnt],
    );
    assert.equal(r.stdout, '1048576\n0 True\nTrue\nNo such device or address\nNo such device or address\n255\n', r.stderr);
    const up = await python('import os, sys\ns = os.statvfs(sys.argv[1]); print(s.f_blocks, s.f_bsize)', [s.upper]);
    const mnt = await python('import os, sys\ns = os.statvfs(sys.argv[1]); print(s.f_blocks, s.f_bsize)', [s.mnt]);
    assert.equal(mnt.stdout, up.stdout, 'statfs is the upper filesystem');
  });

  it("gets, sets, lists and removes xattrs, keeping the overlay's own hidden", async () => {
    makeTree(s.lower, { f: 'f', d: { dir: true } });
    execFileSync('setfattr', ['-n', 'user.lower', '-v', 'L', join(s.lower, 'f')]);
    await s.mount('redirect_dir=on');
    const f = join(s.mnt, 'f');
    assert.equal(execFileSync('getfattr', ['--absolute-names', '--only-values', '-n', 'user.lower', f], { encoding: 'utf8' }), 'L');
    execFileSync('setfattr', ['-n', 'user.new', '-v', 'N', f]);
    fs.renameSync(join(s.mnt, 'd'), join(s.mnt, 'd2')); // gives d2 a private redirect xattr
    for (const p of [f, join(s.mnt, 'd2')]) {
      const all = execFileSync('getfattr', ['--absolute-names', '-d', '-m', '-', p], { encoding: 'utf8' });
      assert.doesNotMatch(all, /overlay/, `private xattrs hidden on ${p}`);
    }
    assert.match(execFileSync('getfattr', ['--absolute-names', '-d', '-m', '-', f], { encoding: 'utf8' }), /user\.lower="L"\nuser\.new="N"/);
    execFileSync('setfattr', ['-x', 'user.lower', f]);
    assert.throws(() => execFileSync('getfattr', ['--absolute-names', '-n', 'user.lower', f], { stdio: 'pipe' }));
    const priv = await run('setfattr', ['-n', 'trusted.overlay.opaque', '-v', 'y', join(s.mnt, 'd2')]);
    assert.notEqual(priv.code, 0, "the overlay's own xattrs cannot be set through it");
    assert.equal(execFileSync('getfattr', ['--absolute-names', '--only-values', '-n', 'user.lower', join(s.lower, 'f')], { encoding: 'utf8' }), 'L');
  });

  it('answers ENAMETOOLONG for names over NAME_MAX', async () => {
    await s.mount();
    const long = 'n'.repeat(256);
    assert.throws(() => fs.writeFileSync(join(s.mnt, long), ''), { code: 'ENAMETOOLONG' });
    assert.throws(() => fs.statSync(join(s.mnt, long)), { code: 'ENAMETOOLONG' });
    fs.writeFileSync(join(s.mnt, 'n'.repeat(255)), 'ok');
  });
});
