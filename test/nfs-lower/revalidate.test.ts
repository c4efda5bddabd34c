import assert from 'assert/strict';
import * as fs from 'fs';
import { join } from 'path';
import { APPEND_WHILE_OPEN, RENAME_OVER_EDITS, UNLINKED_BUT_OPEN } from '../helpers/lower-changes';
import { python, sleep } from '../helpers/proc';
import { ls, read } from '../helpers/tree';
import { NFS_VERSIONS, exportPerSuite } from './fixture';

/**
 * What the kernel may keep from a lookup or a listing of a lower object: one clock tick (the
 * default lower_timeout; 4 ms at HZ=250). Checks after a change on the server wait longer.
 */
function tick(): Promise<void> {
  return sleep(20);
}
/** Node has no name for it ("Unknown system error -116"). */
const ESTALE = 116;

for (const vers of NFS_VERSIONS)
  describe(`nfs:// lower (NFSv${vers}) changed on the server`, function () {
    this.timeout(60000);
    const suite = exportPerSuite({ vers });

    it('shows names appearing, vanishing and being replaced on the server, files and directories', async () => {
      const { dir, url } = suite.exp.area({ 'etc/keep': 'k', 'etc/old': 'o', 'dir/inner': 'i', flip: 'a file' });
      await suite.m.mount(url);
      assert.deepEqual(ls(join(suite.m.mnt, 'etc')), ['keep', 'old']);
      assert.throws(() => fs.statSync(join(suite.m.mnt, 'etc/new')), { code: 'ENOENT' });
      fs.writeFileSync(join(dir, 'etc/new'), 'appeared');
      assert.equal(read(join(suite.m.mnt, 'etc/new')), 'appeared', 'a new name shows at once: absences are not cached');
      fs.unlinkSync(join(dir, 'etc/old'));
      await tick();
      assert.throws(() => fs.statSync(join(suite.m.mnt, 'etc/old')), { code: 'ENOENT' });
      assert.deepEqual(ls(join(suite.m.mnt, 'etc')), ['keep', 'new']);
      fs.rmSync(join(dir, 'dir'), { recursive: true });
      fs.writeFileSync(join(dir, 'dir'), 'now a file');
      fs.unlinkSync(join(dir, 'flip'));
      fs.mkdirSync(join(dir, 'flip'));
      fs.writeFileSync(join(dir, 'flip/x'), 'x');
      await tick();
      assert.ok(fs.statSync(join(suite.m.mnt, 'dir')).isFile());
      assert.equal(read(join(suite.m.mnt, 'dir')), 'now a file');
      assert.ok(fs.statSync(join(suite.m.mnt, 'flip')).isDirectory());
      assert.deepEqual(ls(join(suite.m.mnt, 'flip')), ['x']);
      fs.renameSync(join(dir, 'etc'), join(dir, 'etc2'));
      await tick();
      assert.throws(() => fs.statSync(join(suite.m.mnt, 'etc/keep')), { code: 'ENOENT' });
      assert.equal(read(join(suite.m.mnt, 'etc2/keep')), 'k');
    });

    it('a listing shows what the server has now: sizes and types changed on the server show in the next listing and its stats', async () => {
      const { dir, url } = suite.exp.area({ 'd/a': 'short', 'd/b': 'b', 'd/c': 'c' });
      await suite.m.mount(url);
      const lsl = (): Array<[string, number, boolean]> =>
        fs.readdirSync(join(suite.m.mnt, 'd')).map((n) => {
          const st = fs.lstatSync(join(suite.m.mnt, 'd', n));
          return [n, st.isDirectory() ? -1 : st.size, st.isDirectory()];
        });
      assert.deepEqual(lsl(), [
        ['a', 5, false],
        ['b', 1, false],
        ['c', 1, false],
      ]);
      fs.writeFileSync(join(dir, 'd/a'), 'a longer text');
      fs.unlinkSync(join(dir, 'd/b'));
      fs.mkdirSync(join(dir, 'd/b'));
      fs.renameSync(join(dir, 'd/c'), join(dir, 'd/e'));
      await tick();
      assert.deepEqual(lsl(), [
        ['a', 13, false],
        ['b', -1, true],
        ['e', 1, false],
      ]);
    });

    it('never serves bytes it read ahead once stat shows the file rewritten on the server', async () => {
      const MiB = 1024 * 1024;
      const { dir, url } = suite.exp.area({ big: 'a'.repeat(8 * MiB) });
      await suite.m.mount(url);
      // O_DIRECT: the reads reach the daemon as they are, with no read-ahead of the kernel's.
      const fd = fs.openSync(join(suite.m.mnt, 'big'), fs.constants.O_RDONLY | fs.constants.O_DIRECT);
      try {
        const buf = Buffer.alloc(MiB);
        // Sequential reads: the daemon reads ahead of them, megabytes at a time.
        for (let at = 0; at < 3 * MiB; at += MiB) assert.equal(fs.readSync(fd, buf, 0, MiB, at), MiB);
        const server = fs.openSync(join(dir, 'big'), 'r+');
        fs.writeSync(server, Buffer.alloc(4 * MiB, 'b'), 0, 4 * MiB, 3 * MiB);
        fs.closeSync(server);
        await tick();
        assert.notEqual(fs.fstatSync(fd).mtimeMs, 0);
        for (let at = 3 * MiB; at < 7 * MiB; at += MiB) {
          assert.equal(fs.readSync(fd, buf, 0, MiB, at), MiB);
          assert.ok(
            buf.every((b) => b === 0x62),
            `new bytes at ${at / MiB} MiB`,
          );
        }
      } finally {
        fs.closeSync(fd);
      }
    });

    it('a lock granted on a file drops what was read ahead of it, even when the file kept its size and mtime (seed 000)', async () => {
      const MiB = 1024 * 1024;
      const { dir, url } = suite.exp.area({ big: 'a'.repeat(8 * MiB) });
      await suite.m.mount(url);
      // O_DIRECT reads reach the daemon as they are; the server rewrites bytes the daemon has read
      // ahead, then puts the mtime back (only the ctime tells); a lock taken, the reads under it
      // must give the new bytes.
      const r = await python(
        `
import fcntl, mmap, os, sys
mnt, server = sys.argv[1], sys.argv[2]
MiB = 1 << 20
fd = os.open(os.path.join(mnt, 'big'), os.O_RDWR | os.O_DIRECT)
buf = mmap.mmap(-1, MiB)
for at in range(0, 3 * MiB, MiB):
    assert os.preadv(fd, [buf], at) == MiB
st = os.stat(server)
with open(server, 'r+b') as f:
    f.seek(3 * MiB)
    f.write(b'b' * (4 * MiB))
os.utime(server, ns=(st.st_atime_ns, st.st_mtime_ns))
fcntl.lockf(fd, fcntl.LOCK_EX)
for at in range(3 * MiB, 7 * MiB, MiB):
    assert os.preadv(fd, [buf], at) == MiB
    if buf[:] != b'b' * MiB:
        print('old bytes at %d MiB' % (at // MiB))
        sys.exit(1)
print('ok')
`,
        [suite.m.mnt, join(dir, 'big')],
        { timeoutMs: 30000 },
      );
      assert.equal(r.stdout.trim(), 'ok', r.stdout + r.stderr);
    });

    it('never serves stale bytes after rename-over edits on the server (checked by md5, in a loop)', async () => {
      const { dir, url } = suite.exp.area({ 'conf/app.cfg': 'v0' });
      await suite.m.mount(url);
      const r = await python(RENAME_OVER_EDITS, [dir, suite.m.mnt], { timeoutMs: 50000 });
      assert.equal(r.stdout.trim(), '0', r.stderr);
    });

    it('reads bytes appended on the server to an open file once stat shows the new size, never zeros', async () => {
      const { dir, url } = suite.exp.area({ mbox: 'x'.repeat(5000) });
      await suite.m.mount(url);
      const r = await python(APPEND_WHILE_OPEN, [dir, suite.m.mnt]);
      assert.equal(r.stdout, "5023\nb'appended on the server\\n'\n", r.stderr);
    });

    it('reopens a lower file unlinked through the mount, before any write, through /proc/PID/fd: its bytes, read by handle', async () => {
      const { dir, url } = suite.exp.area({ lowerfile: 'from the server' });
      await suite.m.mount(url);
      const script = `
import os, sys
m = sys.argv[1]
fd = os.open(m + '/lowerfile', os.O_RDONLY)
os.unlink(m + '/lowerfile')
fd2 = os.open('/proc/self/fd/%d' % fd, os.O_RDONLY)
print(repr([os.path.exists(m + '/lowerfile'), os.read(fd2, 100).decode(), os.fstat(fd2).st_size]))
`;
      const r = await python(script, [suite.m.mnt]);
      assert.equal(r.stdout.trim(), "[False, 'from the server', 15]", r.stderr);
      assert.equal(read(join(dir, 'lowerfile')), 'from the server', 'the server keeps its file');
    });

    it('a process whose cwd was renamed away on the server goes on in it, as with the kernel NFS client; its old path is gone', async () => {
      const { dir, url } = suite.exp.area({ 'd/e/f': 'in e', 'd/e/g': 'also' });
      await suite.m.mount(url);
      const script = `
import os, sys, time
server, m = sys.argv[1], sys.argv[2]
os.chdir(m + '/d/e')
before = open('f').read()
os.rename(server + '/d', server + '/moved')
time.sleep(0.05)
seen = [before, open('f').read(), sorted(os.listdir('.')), os.path.exists(m + '/d'), open(m + '/moved/e/g').read()]
try:
    open('created', 'w')
    seen.append('created')
except OSError as e:
    seen.append(e.errno)
print(repr(seen))
`;
      const r = await python(script, [dir, suite.m.mnt]);
      assert.equal(r.stdout.trim(), "['in e', 'in e', ['f', 'g'], False, 'also', 2]", r.stderr);
      assert.deepEqual(fs.readdirSync(suite.m.scratch.upper), [], 'nothing was made in the upper');
    });

    it('keeps a file unlinked through the mount usable through its descriptors: fstat, read, write, ftruncate, /proc reopen', async () => {
      const { dir, url } = suite.exp.area({ lowerfile: 'from the server' });
      await suite.m.mount(url);
      const r = await python(UNLINKED_BUT_OPEN, [suite.m.mnt, 'lowerfile']);
      assert.equal(r.stdout.trim(), "[False, 0, 'from the server', 'WRITTENe server', 'WRITTENe server', 3, '|WRI']", r.stderr);
      assert.equal(read(join(dir, 'lowerfile')), 'from the server', 'the server keeps its file');
    });

    it('a file deleted on the server while open: gone from the mount; its descriptor gives its bytes or ESTALE, never other bytes', async () => {
      const { dir, url } = suite.exp.area({ doomed: 'still here' });
      await suite.m.mount(url);
      const fd = fs.openSync(join(suite.m.mnt, 'doomed'), 'r');
      try {
        fs.unlinkSync(join(dir, 'doomed'));
        await tick();
        assert.equal(fs.existsSync(join(suite.m.mnt, 'doomed')), false);
        assert.equal(fs.fstatSync(fd).nlink, 0);
        // The server answers from the file while it still holds it open; once restarted it
        // has forgotten the file, and its handle is stale.
        await suite.exp.server.restart();
        fs.writeFileSync(join(dir, 'doomed'), 'a new file');
        assert.throws(() => fs.readSync(fd, Buffer.alloc(100), 0, 100, 0), { errno: -ESTALE });
        assert.equal(read(join(suite.m.mnt, 'doomed')), 'a new file');
      } finally {
        fs.closeSync(fd);
      }
    });

    it('a file deleted and recreated on the server while ovshift holds its handle: a fresh open reads the new file', async () => {
      const { dir, url } = suite.exp.area({ 'lib/libfoo.so': 'v1' });
      await suite.m.mount(url);
      assert.equal(fs.statSync(join(suite.m.mnt, 'lib/libfoo.so')).size, 2);
      const fd = fs.openSync(join(suite.m.mnt, 'lib/libfoo.so'), 'r');
      try {
        fs.unlinkSync(join(dir, 'lib/libfoo.so'));
        fs.writeFileSync(join(dir, 'lib/libfoo.so'), 'v2, longer');
        // The server forgets the old file (it may still hold it open for a while).
        await suite.exp.server.restart();
        assert.equal(read(join(suite.m.mnt, 'lib/libfoo.so')), 'v2, longer');
        assert.equal(fs.statSync(join(suite.m.mnt, 'lib/libfoo.so')).size, 10);
        assert.throws(() => fs.readSync(fd, Buffer.alloc(100), 0, 100, 0), { errno: -ESTALE });
      } finally {
        fs.closeSync(fd);
      }
    });

    it('keeps a renamed file the same object (same handle): an open descriptor goes on reading it', async () => {
      const { dir, url } = suite.exp.area({ 'a/moving': 'same object' });
      await suite.m.mount(url);
      const fd = fs.openSync(join(suite.m.mnt, 'a/moving'), 'r');
      try {
        fs.renameSync(join(dir, 'a/moving'), join(dir, 'a/moved'));
        await tick();
        assert.deepEqual(ls(join(suite.m.mnt, 'a')), ['moved']);
        assert.equal(read(join(suite.m.mnt, 'a/moved')), 'same object');
        const buf = Buffer.alloc(100);
        assert.equal(buf.subarray(0, fs.readSync(fd, buf, 0, 100, 0)).toString(), 'same object');
      } finally {
        fs.closeSync(fd);
      }
    });

    it('a directory replaced on the server, its handles gone stale across a server restart, is found afresh', async () => {
      const { dir, url } = suite.exp.area({ 'd/sub/f': 'first' });
      await suite.m.mount(url);
      assert.equal(read(join(suite.m.mnt, 'd/sub/f')), 'first');
      fs.rmSync(join(dir, 'd'), { recursive: true });
      fs.mkdirSync(join(dir, 'd/sub'), { recursive: true });
      fs.writeFileSync(join(dir, 'd/sub/f'), 'second');
      await suite.exp.server.restart();
      assert.equal(read(join(suite.m.mnt, 'd/sub/f')), 'second');
      assert.deepEqual(ls(join(suite.m.mnt, 'd/sub')), ['f']);
    });
  });
