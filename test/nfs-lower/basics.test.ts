import assert from 'assert/strict';
import { createHash, randomBytes } from 'crypto';
import * as fs from 'fs';
import { join } from 'path';
import { OVSHIFT, startDaemon } from '../helpers/ovshift';
import { python, run } from '../helpers/proc';
import { ls, makeTree, read, sha256 } from '../helpers/tree';
import { NFS_VERSIONS, NfsLowerMount, exportPerSuite } from './fixture';

const BIG = 24 * 1024 * 1024 + 4321;

for (const vers of NFS_VERSIONS)
  describe(`nfs:// lower (NFSv${vers}): looking up, listing, reading, copying up`, function () {
    this.timeout(60000);
    const suite = exportPerSuite({ vers });

    it('shows the export: names, types, sizes, modes, owners, times, symlinks, odd names', async () => {
      const { dir, url } = suite.exp.area({
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
      await suite.m.mount(url);
      assert.deepEqual(ls(suite.m.mnt), ['bin', 'caf\ufffd', 'deep', 'etc', 'fifo', 'link']);
      assert.deepEqual(ls(join(suite.m.mnt, 'etc')), ['empty', 'hosts']);
      assert.equal(read(join(suite.m.mnt, 'etc/hosts')), '127.0.0.1 localhost\n');
      assert.equal(read(join(suite.m.mnt, 'deep/a/b/c/d/e/f')), 'deep');
      assert.equal(read(join(suite.m.mnt, 'link')), '127.0.0.1 localhost\n');
      assert.equal(fs.readlinkSync(join(suite.m.mnt, 'link')), 'etc/hosts');
      assert.equal(read(join(suite.m.mnt, 'etc/empty')), '');
      const r = await python(
        `
import os, sys
m, d = sys.argv[1], sys.argv[2]
fields = ('st_mode', 'st_uid', 'st_gid', 'st_size', 'st_mtime_ns', 'st_ctime_ns')
for name in ('etc/hosts', 'bin/tool', 'link', 'fifo', 'etc', b'caf\\xe9'.decode('utf8', 'surrogateescape')):
    a, b = os.lstat(os.path.join(m, name)), os.lstat(os.path.join(d, name))
    print([f for f in fields if getattr(a, f) != getattr(b, f)])
with open(os.path.join(m, b'caf\\xe9'.decode('utf8', 'surrogateescape')), 'rb') as f: print(f.read())
print(sorted(e.name for e in os.scandir(m) if e.is_dir(follow_symlinks=False)))
`,
        [suite.m.mnt, dir],
      );
      assert.equal(r.stdout, "[]\n[]\n[]\n[]\n[]\n[]\nb'latin1 name'\n['bin', 'deep', 'etc']\n", r.stderr);
      const exec = await run(join(suite.m.mnt, 'bin/tool'), []);
      assert.equal(exec.stdout, 'hi\n');
    });

    it('reads a multi-MB file by hash, sequentially and at random offsets', async () => {
      const data = randomBytes(BIG);
      const { dir, url } = suite.exp.area({});
      fs.writeFileSync(join(dir, 'big'), data);
      await suite.m.mount(url);
      assert.equal(sha256(join(suite.m.mnt, 'big')), createHash('sha256').update(data).digest('hex'));
      const fd = fs.openSync(join(suite.m.mnt, 'big'), 'r');
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
      const { dir, url } = suite.exp.area({ 'conf/small.cfg': 'a=1\n' });
      fs.writeFileSync(join(dir, 'data.bin'), big);
      fs.chmodSync(join(dir, 'data.bin'), 0o640);
      fs.chownSync(join(dir, 'data.bin'), 42, 43);
      const before = fs.statSync(join(dir, 'data.bin'));
      await suite.m.mount(url);
      fs.appendFileSync(join(suite.m.mnt, 'conf/small.cfg'), 'b=2\n');
      assert.equal(read(join(suite.m.mnt, 'conf/small.cfg')), 'a=1\nb=2\n');
      assert.equal(read(join(suite.m.scratch.upper, 'conf/small.cfg')), 'a=1\nb=2\n');
      const fd = fs.openSync(join(suite.m.mnt, 'data.bin'), 'r+');
      fs.writeSync(fd, Buffer.from('PATCHED'), 0, 7, 5_000_000);
      fs.closeSync(fd);
      const expected = Buffer.from(big);
      expected.write('PATCHED', 5_000_000);
      const want = createHash('sha256').update(expected).digest('hex');
      assert.equal(sha256(join(suite.m.mnt, 'data.bin')), want);
      assert.equal(sha256(join(suite.m.scratch.upper, 'data.bin')), want);
      const copied = fs.statSync(join(suite.m.scratch.upper, 'data.bin'));
      assert.deepEqual([copied.mode, copied.uid, copied.gid], [before.mode, 42, 43]);
      // A change of metadata alone copies the file with its times.
      fs.chmodSync(join(suite.m.mnt, 'conf'), 0o700);
      const server = fs.statSync(join(dir, 'conf'), { bigint: true });
      const upper = fs.statSync(join(suite.m.scratch.upper, 'conf'), { bigint: true });
      assert.deepEqual([upper.mode & 0o7777n, upper.mtimeNs], [0o700n, server.mtimeNs]);
      assert.equal(read(join(dir, 'conf/small.cfg')), 'a=1\n', 'the server file is unchanged');
      assert.equal(
        createHash('sha256')
          .update(fs.readFileSync(join(dir, 'data.bin')))
          .digest('hex'),
        createHash('sha256').update(big).digest('hex'),
        'the server file is unchanged',
      );
    });

    it('removes, renames and creates over an NFS lower with whiteouts in the upper only', async () => {
      const { dir, url } = suite.exp.area({ 'a/one': '1', 'a/two': '2', keep: 'k' });
      await suite.m.mount(url);
      fs.unlinkSync(join(suite.m.mnt, 'a/one'));
      fs.renameSync(join(suite.m.mnt, 'a/two'), join(suite.m.mnt, 'a/three'));
      fs.writeFileSync(join(suite.m.mnt, 'new'), 'n');
      fs.rmSync(join(suite.m.mnt, 'keep'));
      assert.deepEqual(ls(suite.m.mnt), ['a', 'new']);
      assert.deepEqual(ls(join(suite.m.mnt, 'a')), ['three']);
      assert.equal(read(join(suite.m.mnt, 'a/three')), '2');
      assert.deepEqual(ls(dir), ['a', 'keep']);
      assert.deepEqual(ls(join(dir, 'a')), ['one', 'two']);
    });

    it('stacks with directory lowers in any order (lowerdir=/a:nfs://h:PORT/e:/b) and as --lower', async () => {
      const { url } = suite.exp.area({ shared: 'from nfs', 'dir/nfs-only': 'n' });
      const top = suite.m.scratch.dir('top');
      const bottom = suite.m.scratch.dir('bottom');
      makeTree(top, { 'dir/top-only': 't' });
      makeTree(bottom, { shared: 'from bottom', 'dir/bottom-only': 'b', 'bottom-file': 'bf' });
      await suite.m.mount(`${top}:${url}:${bottom}`);
      assert.equal(read(join(suite.m.mnt, 'shared')), 'from nfs');
      assert.deepEqual(ls(join(suite.m.mnt, 'dir')), ['bottom-only', 'nfs-only', 'top-only']);
      assert.equal(read(join(suite.m.mnt, 'bottom-file')), 'bf');
      await suite.m.daemon!.stop();

      const d = await startDaemon(['--lower', url, '--lower', bottom, suite.m.mnt], suite.m.mnt);
      suite.m.daemon = d;
      assert.equal(read(join(suite.m.mnt, 'shared')), 'from nfs');
      assert.deepEqual(ls(join(suite.m.mnt, 'dir')), ['bottom-only', 'nfs-only']);
      fs.writeFileSync(join(suite.m.mnt, 'written'), 'into the tmpfs upper');
      assert.equal(read(join(suite.m.mnt, 'written')), 'into the tmpfs upper');
    });

    it("reports the export's space in a read-only mount (statfs through FSSTAT)", async () => {
      const { url } = suite.exp.area({ f: 'x' });
      suite.m.daemon = await startDaemon(['-o', `lowerdir=${url},ro`, suite.m.mnt], suite.m.mnt);
      const r = await python(
        `
import os, sys
a, b = os.statvfs(sys.argv[1]), os.statvfs(sys.argv[2])
print(abs(a.f_blocks * a.f_frsize - b.f_blocks * b.f_frsize) < (1 << 20), a.f_namemax)
`,
        [suite.m.mnt, suite.exp.root],
      );
      assert.equal(r.stdout, 'True 255\n', r.stderr);
      assert.throws(() => fs.writeFileSync(join(suite.m.mnt, 'f'), 'y'), { code: 'EROFS' });
    });

    it('locks=local keeps locks on NFS lower files in the daemon: POSIX and flock conflicts between processes, flock and POSIX apart', async () => {
      const { url } = suite.exp.area({ 'locked.db': 'data' });
      await suite.m.mount(url, 'locks=local');
      const r = await python(
        `
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
`,
        [join(suite.m.mnt, 'locked.db')],
      );
      assert.equal(r.stdout, '[True, True]\n', r.stderr);
    });

    it('has no xattrs to show (NFSv3 has none; this server sends no NFSv4 ACLs)', async () => {
      const { url } = suite.exp.area({ f: 'x' });
      await suite.m.mount(url);
      const r = await run('getfattr', ['-d', '-m', '-', join(suite.m.mnt, 'f')]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, '');
    });

    // About choosing a version: once.
    if (vers === '3')
      it('without vers=, mounts the highest version the server offers: NFSv4.2 on its port, else NFSv3 through the portmapper', async () => {
        const { dir } = suite.exp.area({ found: 'either way' });
        // The URL's port serves NFSv4.2 (ganesha answers every version on one port).
        await suite.m.mount(`nfs://127.0.0.1:${suite.exp.server.port}${dir}?mountport=${suite.exp.server.mountPort}`);
        assert.equal(read(join(suite.m.mnt, 'found')), 'either way');
        assert.match((await run(OVSHIFT, ['ctl', suite.m.mnt, 'status'])).stdout, /^lowers .* over NFSv4\.2$/m);
        // No port: nothing answers on 2049 here, so NFSv3, its ports from the portmapper.
        const other = new NfsLowerMount();
        try {
          await other.mount(`nfs://127.0.0.1${dir}`);
          assert.equal(read(join(other.mnt, 'found')), 'either way');
          assert.match((await run(OVSHIFT, ['ctl', other.mnt, 'status'])).stdout, /^lowers .* over NFSv3$/m);
        } finally {
          await other.remove();
        }
      });

    it('answers SEEK_DATA and SEEK_HOLE on NFS lower files as all data, ENXIO past the end', async () => {
      const { url } = suite.exp.area({ f: 'x'.repeat(5000) });
      await suite.m.mount(url);
      const r = await python(
        `
import os, sys
fd = os.open(sys.argv[1] + '/f', os.O_RDONLY)
print(os.lseek(fd, 100, os.SEEK_DATA), os.lseek(fd, 100, os.SEEK_HOLE))
try: os.lseek(fd, 5000, os.SEEK_DATA)
except OSError as e: print(e.errno == 6)
`,
        [suite.m.mnt],
      );
      assert.equal(r.stdout, '100 5000\nTrue\n', r.stderr);
    });
  });
