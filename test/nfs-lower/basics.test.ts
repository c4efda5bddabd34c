import assert from 'assert/strict';
import { createHash, randomBytes } from 'crypto';
import * as fs from 'fs';
import { join } from 'path';
import { startDaemon } from '../helpers/ovshift';
import { python, run } from '../helpers/proc';
import { ls, makeTree, read, sha256 } from '../helpers/tree';
import { NfsExport, NfsLowerMount } from './fixture';

const BIG = 24 * 1024 * 1024 + 4321;

describe('nfs:// lower: looking up, listing, reading, copying up', function () {
  this.timeout(60000);
  let exp: NfsExport;
  let m: NfsLowerMount;

  before(async () => {
    exp = await NfsExport.start();
  });

  after(async () => {
    await exp?.stop();
  });

  beforeEach(() => {
    m = new NfsLowerMount();
  });

  afterEach(async () => {
    await m.remove();
  });

  it('shows the export: names, types, sizes, modes, owners, times, symlinks, odd names', async () => {
    const { dir, url } = exp.area({
      'etc/hosts': '127.0.0.1 localhost\n',
      'etc/empty': '',
      'bin/tool': '#!/bin/sh\necho hi\n',
      link: { symlink: 'etc/hosts' },
      'deep/a/b/c/d/e/f': 'deep',
      fifo: { fifo: true },
    });
    fs.chmodSync(join(dir, 'bin/tool'), 0o755);
    fs.chownSync(join(dir, 'etc/hosts'), 1234, 5678);
    fs.writeFileSync(Buffer.from(`${dir}/caf\xe9`, 'latin1'), 'latin1 name');
    await m.mount(url);
    assert.deepEqual(ls(m.mnt), ['bin', 'caf\ufffd', 'deep', 'etc', 'fifo', 'link']);
    assert.deepEqual(ls(join(m.mnt, 'etc')), ['empty', 'hosts']);
    assert.equal(read(join(m.mnt, 'etc/hosts')), '127.0.0.1 localhost\n');
    assert.equal(read(join(m.mnt, 'deep/a/b/c/d/e/f')), 'deep');
    assert.equal(read(join(m.mnt, 'link')), '127.0.0.1 localhost\n');
    assert.equal(fs.readlinkSync(join(m.mnt, 'link')), 'etc/hosts');
    assert.equal(read(join(m.mnt, 'etc/empty')), '');
    const r = await python(`
import os, sys
m, d = sys.argv[1], sys.argv[2]
fields = ('st_mode', 'st_uid', 'st_gid', 'st_size', 'st_mtime_ns', 'st_ctime_ns')
for name in ('etc/hosts', 'bin/tool', 'link', 'fifo', 'etc', b'caf\\xe9'.decode('utf8', 'surrogateescape')):
    a, b = os.lstat(os.path.join(m, name)), os.lstat(os.path.join(d, name))
    print([f for f in fields if getattr(a, f) != getattr(b, f)])
with open(os.path.join(m, b'caf\\xe9'.decode('utf8', 'surrogateescape')), 'rb') as f: print(f.read())
print(sorted(e.name for e in os.scandir(m) if e.is_dir(follow_symlinks=False)))
`, [m.mnt, dir]);
    assert.equal(r.stdout, "[]\n[]\n[]\n[]\n[]\n[]\nb'latin1 name'\n['bin', 'deep', 'etc']\n", r.stderr);
    const exec = await run(join(m.mnt, 'bin/tool'), []);
    assert.equal(exec.stdout, 'hi\n');
  });

  it('reads a multi-MB file by hash, sequentially and at random offsets', async () => {
    const data = randomBytes(BIG);
    const { dir, url } = exp.area({});
    fs.writeFileSync(join(dir, 'big'), data);
    await m.mount(url);
    assert.equal(sha256(join(m.mnt, 'big')), createHash('sha256').update(data).digest('hex'));
    const fd = fs.openSync(join(m.mnt, 'big'), 'r');
    try {
      for (const offset of [0, 1, 4095, 131072, 1048575, BIG - 10, BIG - 1]) {
        const buf = Buffer.alloc(5000);
        const n = fs.readSync(fd, buf, 0, buf.length, offset);
        assert.equal(n, Math.min(5000, BIG - offset));
        assert.ok(buf.subarray(0, n).equals(data.subarray(offset, offset + n)), `bytes at ${offset}`);
      }
      assert.equal(fs.readSync(fd, Buffer.alloc(10), 0, 10, BIG), 0, 'end of file');
    } finally {
      fs.closeSync(fd);
    }
  });

  it('copies an NFS file up at its first change: small and multi-MB, by hash, the server file untouched', async () => {
    const big = randomBytes(BIG);
    const { dir, url } = exp.area({ 'conf/small.cfg': 'a=1\n' });
    fs.writeFileSync(join(dir, 'data.bin'), big);
    fs.chmodSync(join(dir, 'data.bin'), 0o640);
    fs.chownSync(join(dir, 'data.bin'), 42, 43);
    const before = fs.statSync(join(dir, 'data.bin'));
    await m.mount(url);
    fs.appendFileSync(join(m.mnt, 'conf/small.cfg'), 'b=2\n');
    assert.equal(read(join(m.mnt, 'conf/small.cfg')), 'a=1\nb=2\n');
    assert.equal(read(join(m.scratch.upper, 'conf/small.cfg')), 'a=1\nb=2\n');
    const fd = fs.openSync(join(m.mnt, 'data.bin'), 'r+');
    fs.writeSync(fd, Buffer.from('PATCHED'), 0, 7, 5_000_000);
    fs.closeSync(fd);
    const expected = Buffer.from(big);
    expected.write('PATCHED', 5_000_000);
    const want = createHash('sha256').update(expected).digest('hex');
    assert.equal(sha256(join(m.mnt, 'data.bin')), want);
    assert.equal(sha256(join(m.scratch.upper, 'data.bin')), want);
    const copied = fs.statSync(join(m.scratch.upper, 'data.bin'));
    assert.deepEqual([copied.mode, copied.uid, copied.gid], [before.mode, 42, 43]);
    // A change of metadata alone copies the file with its times.
    fs.chmodSync(join(m.mnt, 'conf'), 0o700);
    const server = fs.statSync(join(dir, 'conf'), { bigint: true });
    const upper = fs.statSync(join(m.scratch.upper, 'conf'), { bigint: true });
    assert.deepEqual([upper.mode & 0o7777n, upper.mtimeNs], [0o700n, server.mtimeNs]);
    assert.equal(read(join(dir, 'conf/small.cfg')), 'a=1\n', 'the server file is unchanged');
    assert.equal(createHash('sha256').update(fs.readFileSync(join(dir, 'data.bin'))).digest('hex'),
      createHash('sha256').update(big).digest('hex'), 'the server file is unchanged');
  });

  it('removes, renames and creates over an NFS lower with whiteouts in the upper only', async () => {
    const { dir, url } = exp.area({ 'a/one': '1', 'a/two': '2', keep: 'k' });
    await m.mount(url);
    fs.unlinkSync(join(m.mnt, 'a/one'));
    fs.renameSync(join(m.mnt, 'a/two'), join(m.mnt, 'a/three'));
    fs.writeFileSync(join(m.mnt, 'new'), 'n');
    fs.rmSync(join(m.mnt, 'keep'));
    assert.deepEqual(ls(m.mnt), ['a', 'new']);
    assert.deepEqual(ls(join(m.mnt, 'a')), ['three']);
    assert.equal(read(join(m.mnt, 'a/three')), '2');
    assert.deepEqual(ls(dir), ['a', 'keep']);
    assert.deepEqual(ls(join(dir, 'a')), ['one', 'two']);
  });

  it('stacks with directory lowers in any order (lowerdir=/a:nfs://h:PORT/e:/b) and as --lower', async () => {
    const { url } = exp.area({ shared: 'from nfs', 'dir/nfs-only': 'n' });
    const top = m.scratch.dir('top');
    const bottom = m.scratch.dir('bottom');
    makeTree(top, { 'dir/top-only': 't' });
    makeTree(bottom, { shared: 'from bottom', 'dir/bottom-only': 'b', 'bottom-file': 'bf' });
    await m.mount(`${top}:${url}:${bottom}`);
    assert.equal(read(join(m.mnt, 'shared')), 'from nfs');
    assert.deepEqual(ls(join(m.mnt, 'dir')), ['bottom-only', 'nfs-only', 'top-only']);
    assert.equal(read(join(m.mnt, 'bottom-file')), 'bf');
    await m.daemon!.stop();

    const d = await startDaemon(['--lower', url, '--lower', bottom, m.mnt], m.mnt);
    m.daemon = d;
    assert.equal(read(join(m.mnt, 'shared')), 'from nfs');
    assert.deepEqual(ls(join(m.mnt, 'dir')), ['bottom-only', 'nfs-only']);
    fs.writeFileSync(join(m.mnt, 'written'), 'into the tmpfs upper');
    assert.equal(read(join(m.mnt, 'written')), 'into the tmpfs upper');
  });

  it('reports the export\'s space in a read-only mount (statfs through FSSTAT)', async () => {
    const { url } = exp.area({ f: 'x' });
    m.daemon = await startDaemon(['-o', `lowerdir=${url},ro`, m.mnt], m.mnt);
    const r = await python(`
import os, sys
a, b = os.statvfs(sys.argv[1]), os.statvfs(sys.argv[2])
print(abs(a.f_blocks * a.f_frsize - b.f_blocks * b.f_frsize) < (1 << 20), a.f_namemax)
`, [m.mnt, exp.root]);
    assert.equal(r.stdout, 'True 255\n', r.stderr);
    assert.throws(() => fs.writeFileSync(join(m.mnt, 'f'), 'y'), { code: 'EROFS' });
  });

  it('keeps locks on NFS lower files in the daemon: POSIX and flock conflicts between processes', async () => {
    const { url } = exp.area({ 'locked.db': 'data' });
    await m.mount(url);
    const r = await python(`
import fcntl, os, sys, time
path = sys.argv[1]
holder = open(path, 'r+')
fcntl.lockf(holder, fcntl.LOCK_EX)
fcntl.flock(os.open(path, os.O_RDONLY), fcntl.LOCK_SH)
pid = os.fork()
if pid == 0:
    other = open(path, 'r+')
    out = []
    for take in (lambda: fcntl.lockf(other, fcntl.LOCK_EX | fcntl.LOCK_NB), lambda: fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)):
        try:
            take(); out.append('taken')
        except OSError as e: out.append(e.errno in (11, 13))
    print(out, flush=True)
    os._exit(0)
os.waitpid(pid, 0)
`, [join(m.mnt, 'locked.db')]);
    assert.equal(r.stdout, '[True, True]\n', r.stderr);
  });

  it('has no xattrs to show (NFSv3 has none)', async () => {
    const { url } = exp.area({ f: 'x' });
    await m.mount(url);
    const r = await run('getfattr', ['-d', '-m', '-', join(m.mnt, 'f')]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, '');
  });

  it('finds the NFS and MOUNT ports through the portmapper when the URL names none', async () => {
    const { dir } = exp.area({ found: 'through rpcbind' });
    await m.mount(`nfs://127.0.0.1${dir}`);
    assert.equal(read(join(m.mnt, 'found')), 'through rpcbind');
  });

  it('answers SEEK_DATA and SEEK_HOLE on NFS lower files as all data, ENXIO past the end', async () => {
    const { url } = exp.area({ f: 'x'.repeat(5000) });
    await m.mount(url);
    const r = await python(`
import os, sys
fd = os.open(sys.argv[1] + '/f', os.O_RDONLY)
print(os.lseek(fd, 100, os.SEEK_DATA), os.lseek(fd, 100, os.SEEK_HOLE))
try: os.lseek(fd, 5000, os.SEEK_DATA)
except OSError as e: print(e.errno == 6)
`, [m.mnt]);
    assert.equal(r.stdout, '100 5000\nTrue\n', r.stderr);
  });
});
