import assert from 'assert/strict';
import * as fs from 'fs';
import { join } from 'path';
import { python, sleep } from '../helpers/proc';
import { ls, read } from '../helpers/tree';
import { NfsExport, NfsLowerMount } from './fixture';

/**
 * What the kernel may keep from a lookup or a listing of a lower object: one clock tick (the
 * default lower_timeout; 4 ms at HZ=250). Checks after a change on the server wait longer.
 */
function tick(): Promise<void> {
  return sleep(20);
}
/** Node has no name for it ("Unknown system error -116"). */
const ESTALE = 116;

describe('nfs:// lower changed on the server', function () {
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

  it('shows names appearing, vanishing and being replaced on the server, files and directories', async () => {
    const { dir, url } = exp.area({ 'etc/keep': 'k', 'etc/old': 'o', 'dir/inner': 'i', flip: 'a file' });
    await m.mount(url);
    assert.deepEqual(ls(join(m.mnt, 'etc')), ['keep', 'old']);
    assert.throws(() => fs.statSync(join(m.mnt, 'etc/new')), { code: 'ENOENT' });
    fs.writeFileSync(join(dir, 'etc/new'), 'appeared');
    assert.equal(read(join(m.mnt, 'etc/new')), 'appeared', 'a new name shows at once: absences are not cached');
    fs.unlinkSync(join(dir, 'etc/old'));
    await tick();
    assert.throws(() => fs.statSync(join(m.mnt, 'etc/old')), { code: 'ENOENT' });
    assert.deepEqual(ls(join(m.mnt, 'etc')), ['keep', 'new']);
    fs.rmSync(join(dir, 'dir'), { recursive: true });
    fs.writeFileSync(join(dir, 'dir'), 'now a file');
    fs.unlinkSync(join(dir, 'flip'));
    fs.mkdirSync(join(dir, 'flip'));
    fs.writeFileSync(join(dir, 'flip/x'), 'x');
    await tick();
    assert.ok(fs.statSync(join(m.mnt, 'dir')).isFile());
    assert.equal(read(join(m.mnt, 'dir')), 'now a file');
    assert.ok(fs.statSync(join(m.mnt, 'flip')).isDirectory());
    assert.deepEqual(ls(join(m.mnt, 'flip')), ['x']);
    fs.renameSync(join(dir, 'etc'), join(dir, 'etc2'));
    await tick();
    assert.throws(() => fs.statSync(join(m.mnt, 'etc/keep')), { code: 'ENOENT' });
    assert.equal(read(join(m.mnt, 'etc2/keep')), 'k');
  });

  it('never serves stale bytes after rename-over edits on the server (checked by md5, in a loop)', async () => {
    const { dir, url } = exp.area({ 'conf/app.cfg': 'v0' });
    await m.mount(url);
    const r = await python(`
import hashlib, os, sys
lower, mnt = sys.argv[1], sys.argv[2]
bad = 0
for i in range(300):
    data = (('version %d ' % i) * (1 + i % 50)).encode()
    with open(lower + '/conf/app.cfg.tmp', 'wb') as f: f.write(data)
    os.rename(lower + '/conf/app.cfg.tmp', lower + '/conf/app.cfg')
    with open(mnt + '/conf/app.cfg', 'rb') as f: got = f.read()
    if hashlib.md5(got).hexdigest() != hashlib.md5(data).hexdigest(): bad += 1
print(bad)
`, [dir, m.mnt], { timeoutMs: 50000 });
    assert.equal(r.stdout.trim(), '0', r.stderr);
  });

  it('reads bytes appended on the server to an open file once stat shows the new size, never zeros', async () => {
    const { dir, url } = exp.area({ mbox: 'x'.repeat(5000) });
    await m.mount(url);
    const r = await python(`
import os, sys, time
lower, mnt = sys.argv[1], sys.argv[2]
fd = os.open(mnt + '/mbox', os.O_RDWR)
old = os.read(fd, 1 << 20)
with open(lower + '/mbox', 'ab') as f: f.write(b'appended on the server\\n')
for _ in range(200):
    if os.fstat(fd).st_size > len(old): break
    time.sleep(0.01)
print(os.fstat(fd).st_size)
print(os.pread(fd, 100, len(old)))
`, [dir, m.mnt]);
    assert.equal(r.stdout, "5023\nb'appended on the server\\n'\n", r.stderr);
  });

  it('keeps a file unlinked through the mount usable through its descriptors: fstat, read, write, ftruncate, /proc reopen', async () => {
    const { dir, url } = exp.area({ lowerfile: 'from the server' });
    await m.mount(url);
    const r = await python(`
import os, sys
m = sys.argv[1]
out = []
fd = os.open(m + '/lowerfile', os.O_RDWR)
os.unlink(m + '/lowerfile')
out.append(os.path.exists(m + '/lowerfile'))
out.append(os.fstat(fd).st_nlink)
out.append(os.pread(fd, 100, 0).decode())
os.pwrite(fd, b'WRITTEN', 0)
out.append(os.pread(fd, 100, 0).decode())
fd2 = os.open('/proc/self/fd/%d' % fd, os.O_RDONLY)
out.append(os.read(fd2, 100).decode())
os.ftruncate(fd, 3)
out.append(os.fstat(fd2).st_size)
out.append(os.read(fd2, 100).decode() + '|' + os.pread(fd2, 100, 0).decode())
print(repr(out))
`, [m.mnt]);
    assert.equal(r.stdout.trim(), "[False, 0, 'from the server', 'WRITTENe server', 'WRITTENe server', 3, '|WRI']", r.stderr);
    assert.equal(read(join(dir, 'lowerfile')), 'from the server', 'the server keeps its file');
  });

  it('a file deleted on the server while open: gone from the mount; its descriptor gives its bytes or ESTALE, never other bytes', async () => {
    const { dir, url } = exp.area({ doomed: 'still here' });
    await m.mount(url);
    const fd = fs.openSync(join(m.mnt, 'doomed'), 'r');
    try {
      fs.unlinkSync(join(dir, 'doomed'));
      await tick();
      assert.equal(fs.existsSync(join(m.mnt, 'doomed')), false);
      assert.equal(fs.fstatSync(fd).nlink, 0);
      // The server answers from the file while it still holds it open; once restarted it
      // has forgotten the file, and its handle is stale.
      await exp.server.restart();
      fs.writeFileSync(join(dir, 'doomed'), 'a new file');
      assert.throws(() => fs.readSync(fd, Buffer.alloc(100), 0, 100, 0), { errno: -ESTALE });
      assert.equal(read(join(m.mnt, 'doomed')), 'a new file');
    } finally {
      fs.closeSync(fd);
    }
  });

  it('a file deleted and recreated on the server while ovshift holds its handle: a fresh open reads the new file', async () => {
    const { dir, url } = exp.area({ 'lib/libfoo.so': 'v1' });
    await m.mount(url);
    assert.equal(fs.statSync(join(m.mnt, 'lib/libfoo.so')).size, 2);
    const fd = fs.openSync(join(m.mnt, 'lib/libfoo.so'), 'r');
    try {
      fs.unlinkSync(join(dir, 'lib/libfoo.so'));
      fs.writeFileSync(join(dir, 'lib/libfoo.so'), 'v2, longer');
      // The server forgets the old file (it may still hold it open for a while).
      await exp.server.restart();
      assert.equal(read(join(m.mnt, 'lib/libfoo.so')), 'v2, longer');
      assert.equal(fs.statSync(join(m.mnt, 'lib/libfoo.so')).size, 10);
      assert.throws(() => fs.readSync(fd, Buffer.alloc(100), 0, 100, 0), { errno: -ESTALE });
    } finally {
      fs.closeSync(fd);
    }
  });

  it('keeps a renamed file the same object (same handle): an open descriptor goes on reading it', async () => {
    const { dir, url } = exp.area({ 'a/moving': 'same object' });
    await m.mount(url);
    const fd = fs.openSync(join(m.mnt, 'a/moving'), 'r');
    try {
      fs.renameSync(join(dir, 'a/moving'), join(dir, 'a/moved'));
      await tick();
      assert.deepEqual(ls(join(m.mnt, 'a')), ['moved']);
      assert.equal(read(join(m.mnt, 'a/moved')), 'same object');
      const buf = Buffer.alloc(100);
      assert.equal(buf.subarray(0, fs.readSync(fd, buf, 0, 100, 0)).toString(), 'same object');
    } finally {
      fs.closeSync(fd);
    }
  });

  it('dircache=SECONDS: a directory replaced on the server is walked afresh after its cached handle goes stale', async () => {
    const { dir, url } = exp.area({ 'd/sub/f': 'first' }, 'dircache=600');
    await m.mount(url);
    assert.equal(read(join(m.mnt, 'd/sub/f')), 'first');
    fs.rmSync(join(dir, 'd'), { recursive: true });
    fs.mkdirSync(join(dir, 'd/sub'), { recursive: true });
    fs.writeFileSync(join(dir, 'd/sub/f'), 'second');
    await exp.server.restart();
    assert.equal(read(join(m.mnt, 'd/sub/f')), 'second');
    assert.deepEqual(ls(join(m.mnt, 'd/sub')), ['f']);
  });
});
