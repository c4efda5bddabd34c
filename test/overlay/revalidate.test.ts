import assert from 'assert/strict';
import * as fs from 'fs';
import { join } from 'path';
import { APPEND_WHILE_OPEN, RENAME_OVER_EDITS, UNLINKED_BUT_OPEN } from '../helpers/lower-changes';
import { OVSHIFT, Scratch } from '../helpers/ovshift';
import { python, run, sleep } from '../helpers/proc';
import { waitUntil } from '../helpers/wait';
import { ls, makeTree, read } from '../helpers/tree';

/**
 * What the kernel may keep from a lookup of a lower object: one clock tick (4 ms at HZ=250,
 * 10 ms at HZ=100). Checks after a change on the lower wait that long, as the contract says.
 */
function tick(): Promise<void> {
  return sleep(12);
}

/** Replaces a lower file the way an editor or a package manager does: temp file, then rename. */
function renameOverEdit(path: string, content: string): void {
  fs.writeFileSync(`${path}.tmp`, content);
  fs.renameSync(`${path}.tmp`, path);
}

describe('a lower that changes underneath', function () {
  this.timeout(60000);
  let s: Scratch;

  beforeEach(() => {
    s = new Scratch();
  });

  afterEach(() => s.dispose());

  // Lower changes pushed by the kernel (the default, where it can) and polled at each lookup:
  // the same guarantees either way.
  for (const watched of [true, false]) {
    describe(`revalidate=always (default), ${watched ? 'watch=on (default): changes pushed by fanotify' : 'watch=off: changes polled'}`, () => {
      const mount = (extra = '', opts: { env?: NodeJS.ProcessEnv } = {}): ReturnType<Scratch['mount']> =>
        s.mount([extra, watched ? '' : 'watch=off'].filter((o) => o !== '').join(','), opts);

      it('says in ovshift ctl status how lower changes reach the kernel', async () => {
        await mount();
        const status = await run(OVSHIFT, ['ctl', s.mnt, 'status']);
        assert.match(status.stdout, watched ? /^lower changes pushed by the kernel \(fanotify\)$/m : /^lower changes polled at each lookup \(watch=off\)$/m);
      });

      it('shows names appearing, vanishing and being replaced on the lower, files and directories', async () => {
        makeTree(s.lower, { 'etc/keep': 'k', 'etc/old': 'o', 'dir/inner': 'i', flip: 'a file' });
        await mount();
        assert.deepEqual(ls(join(s.mnt, 'etc')), ['keep', 'old']);
        assert.throws(() => fs.statSync(join(s.mnt, 'etc/new')), { code: 'ENOENT' });
        fs.writeFileSync(join(s.lower, 'etc/new'), 'appeared');
        // Polled, absences a lower decides are not cached: the name shows at once. Pushed, the
        // kernel keeps them until the lower's change invalidates them: within a tick.
        if (watched) await tick();
        assert.equal(read(join(s.mnt, 'etc/new')), 'appeared', 'a new name shows');
        fs.unlinkSync(join(s.lower, 'etc/old'));
        await tick();
        assert.throws(() => fs.statSync(join(s.mnt, 'etc/old')), { code: 'ENOENT' });
        assert.deepEqual(ls(join(s.mnt, 'etc')), ['keep', 'new']);
        // A directory replaced by a file, a file by a directory, and a directory renamed.
        fs.rmSync(join(s.lower, 'dir'), { recursive: true });
        fs.writeFileSync(join(s.lower, 'dir'), 'now a file');
        fs.unlinkSync(join(s.lower, 'flip'));
        fs.mkdirSync(join(s.lower, 'flip'));
        fs.writeFileSync(join(s.lower, 'flip/x'), 'x');
        await tick();
        assert.ok(fs.statSync(join(s.mnt, 'dir')).isFile());
        assert.equal(read(join(s.mnt, 'dir')), 'now a file');
        assert.ok(fs.statSync(join(s.mnt, 'flip')).isDirectory());
        assert.deepEqual(ls(join(s.mnt, 'flip')), ['x']);
        fs.renameSync(join(s.lower, 'etc'), join(s.lower, 'etc2'));
        await tick();
        assert.throws(() => fs.statSync(join(s.mnt, 'etc/keep')), { code: 'ENOENT' });
        assert.equal(read(join(s.mnt, 'etc2/keep')), 'k');
      });

      it('never serves stale bytes after rename-over edits on the lower (checked by md5, in a loop)', async () => {
        makeTree(s.lower, { 'conf/app.cfg': 'v0' });
        await mount();
        const r = await python(RENAME_OVER_EDITS, [s.lower, s.mnt]);
        assert.equal(r.stdout.trim(), '0', r.stderr);
      });

      it('reads bytes appended on the lower to an open file once stat shows the new size, never zeros (seed 000)', async () => {
        makeTree(s.lower, { mbox: 'x'.repeat(5000) });
        await mount();
        const r = await python(APPEND_WHILE_OPEN, [s.lower, s.mnt]);
        assert.equal(r.stdout, "5023\nb'appended on the server\\n'\n", r.stderr);
      });

      it('drops the pages an open file read once its lower file is rewritten in place: the next read shows the new bytes, no stat or reopen', async () => {
        makeTree(s.lower, { config: 'A'.repeat(8192) });
        await mount();
        const fd = fs.openSync(join(s.mnt, 'config'), 'r');
        try {
          assert.equal(fs.readFileSync(fd, 'latin1'), 'A'.repeat(8192));
          const lowerFd = fs.openSync(join(s.lower, 'config'), 'r+');
          fs.writeSync(lowerFd, 'B'.repeat(4096), 4096);
          fs.closeSync(lowerFd);
          await tick();
          const buf = Buffer.alloc(8192);
          assert.equal(fs.readSync(fd, buf, 0, 8192, 0), 8192);
          assert.equal(buf.toString('latin1'), 'A'.repeat(4096) + 'B'.repeat(4096));
        } finally {
          fs.closeSync(fd);
        }
      });

      it('keeps an unlinked file usable through its open descriptors: fstat, read, write, ftruncate, /proc reopen', async () => {
        makeTree(s.lower, { lowerfile: 'from the lower' });
        fs.writeFileSync(join(s.upper, 'upperfile'), 'from the upper');
        await mount();
        const r = await python(UNLINKED_BUT_OPEN, [s.mnt, 'upperfile', 'lowerfile']);
        assert.equal(
          r.stdout.trim(),
          repr([
            false,
            0,
            'from the upper',
            'WRITTENe upper',
            'WRITTENe upper',
            3,
            '|WRI',
            false,
            0,
            'from the lower',
            'WRITTENe lower',
            'WRITTENe lower',
            3,
            '|WRI',
          ]),
          r.stderr,
        );
        assert.equal(read(join(s.lower, 'lowerfile')), 'from the lower', 'the lower keeps its file');
      });

      it('keeps a lower file deleted on the lower readable and writable through a descriptor opened before', async () => {
        makeTree(s.lower, { doomed: 'still here' });
        await mount();
        const r = await python(
          `
import os, sys, time
lower, m = sys.argv[1], sys.argv[2]
fd = os.open(m + '/doomed', os.O_RDWR)
os.unlink(lower + '/doomed')
time.sleep(0.012)  # one clock tick: what the kernel may keep from the last lookup
print(os.path.exists(m + '/doomed'), os.fstat(fd).st_nlink, os.pread(fd, 100, 0).decode())
os.pwrite(fd, b'STILL', 0)
print(os.pread(fd, 100, 0).decode())
`,
          [s.lower, s.mnt],
        );
        assert.equal(r.stdout, 'False 0 still here\nSTILL here\n', r.stderr);
      });

      it('answers fstat on an unlinked device node', async () => {
        await mount('dev');
        const r = await python(
          `
import os, sys
m = sys.argv[1]
os.mknod(m + '/null', 0o20666, os.makedev(1, 3))
fd = os.open(m + '/null', os.O_WRONLY)
os.unlink(m + '/null')
st = os.fstat(fd)
print(st.st_nlink, os.major(st.st_rdev), os.minor(st.st_rdev), os.write(fd, b'gone into /dev/null'))
`,
          [s.mnt],
        );
        assert.equal(r.stdout.trim(), '0 1 3 19', r.stderr);
      });

      it('gives ENOENT for relative lookups from a cwd removed on the lower', async () => {
        makeTree(s.lower, { 'work/file': 'f', 'work/sub/x': 'x' });
        await mount();
        const r = await python(
          `
import os, shutil, sys, time
lower, m = sys.argv[1], sys.argv[2]
os.chdir(m + '/work')
print(open('file').read())
shutil.rmtree(lower + '/work')
time.sleep(0.012)  # one clock tick
for name in ('file', 'sub/x', 'nothing'):
    try:
        os.stat(name); print('found', name)
    except OSError as e: print(os.strerror(e.errno))
`,
          [s.lower, s.mnt],
        );
        assert.equal(r.stdout, 'f\nNo such file or directory\nNo such file or directory\nNo such file or directory\n', r.stderr);
      });

      it('re-resolves by path once on ESTALE from the lower: the application never sees it (fault injection)', async () => {
        makeTree(s.lower, { 'data/f': 'content', 'data/g': 'other' });
        const d = await mount('inject=stat:data/f:ESTALE:count=1;readdir:data:ESTALE:count=1;open:data/g:ESTALE:count=1', {
          env: { DEBUG: 'ovshift:revalidate' },
        });
        assert.equal(read(join(s.mnt, 'data/f')), 'content');
        assert.deepEqual(ls(join(s.mnt, 'data')), ['f', 'g']);
        assert.equal(read(join(s.mnt, 'data/g')), 'other');
        const listed = await run(OVSHIFT, ['ctl', s.mnt, 'inject', 'list']);
        assert.match(listed.stdout, /stat:data\/f:ESTALE:count=1 {2}\(hits 1\)/);
        assert.match(listed.stdout, /readdir:data:ESTALE:count=1 {2}\(hits 1\)/);
        await waitUntil(() => /ESTALE from the lower; resolving the path again/.test(d.stderr()), { what: 'the ESTALE log line' });
        assert.match(d.stderr(), /stat data\/f: ESTALE from the lower; resolving the path again/);
      });

      it('keeps the page cache of a lower file across opens while the file is unchanged: the next read asks the lower for nothing', async () => {
        makeTree(s.lower, { 'data/f': 'x'.repeat(64 * 1024) });
        await mount();
        assert.equal(read(join(s.mnt, 'data/f')).length, 64 * 1024);
        // Any read reaching the lower now fails: a read served from the kept pages does not.
        const r = await run(OVSHIFT, ['ctl', s.mnt, 'inject', 'add', 'read:data/f:EIO']);
        assert.equal(r.code, 0, r.stderr);
        assert.equal(read(join(s.mnt, 'data/f')), 'x'.repeat(64 * 1024));
        const listed = await run(OVSHIFT, ['ctl', s.mnt, 'inject', 'list']);
        assert.match(listed.stdout, /read:data\/f:EIO {2}\(hits 0\)/);
      });

      it('reads a lower file afresh at the next open once it changed, even with its size and mtime put back (its ctime moved)', async () => {
        makeTree(s.lower, { 'data/f': 'a'.repeat(8192) });
        await mount();
        assert.equal(read(join(s.mnt, 'data/f')), 'a'.repeat(8192));
        const rewritten = await python(
          `
import os, sys
path = sys.argv[1]
st = os.stat(path)
with open(path, 'r+') as f:
    f.write('b' * 8192)
os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
now = os.stat(path)
print(now.st_size == st.st_size and now.st_mtime_ns == st.st_mtime_ns and now.st_ctime_ns != st.st_ctime_ns)
`,
          [join(s.lower, 'data/f')],
        );
        assert.equal(rewritten.stdout.trim(), 'True', 'same size and mtime, another ctime');
        await tick();
        assert.equal(read(join(s.mnt, 'data/f')), 'b'.repeat(8192));
      });

      it('changes fault rules at runtime through ovshift ctl', async () => {
        makeTree(s.lower, { 'a/b': 'b' });
        await mount();
        let r = await run(OVSHIFT, ['ctl', s.mnt, 'inject', 'add', 'open:a/*:EIO']);
        assert.equal(r.code, 0, r.stderr);
        assert.throws(() => read(join(s.mnt, 'a/b')), { code: 'EIO' });
        r = await run(OVSHIFT, ['ctl', s.mnt, 'inject', 'add', 'read:**:delay=300:count=1']);
        assert.equal(r.code, 0);
        await run(OVSHIFT, ['ctl', s.mnt, 'inject', 'clear']);
        assert.equal(read(join(s.mnt, 'a/b')), 'b');
        r = await run(OVSHIFT, ['ctl', s.mnt, 'inject', 'add', 'bogus:x:EIO']);
        assert.equal(r.code, 1);
        assert.match(r.stderr, /unknown operation bogus/);
        const status = await run(OVSHIFT, ['ctl', s.mnt, 'status']);
        assert.match(status.stdout, /nodes \d+/);
      });

      it(`logs every revalidation decision under DEBUG=${watched ? 'ovshift:revalidate,ovshift:watch' : 'ovshift:revalidate'}`, async () => {
        makeTree(s.lower, { f: 'one' });
        const d = await mount('', { env: { DEBUG: watched ? 'ovshift:revalidate,ovshift:watch' : 'ovshift:revalidate' } });
        const fd = fs.openSync(join(s.mnt, 'f'), 'r');
        renameOverEdit(join(s.lower, 'f'), 'two');
        assert.equal(read(join(s.mnt, 'f')), 'two');
        fs.closeSync(fd);
        fs.unlinkSync(join(s.lower, 'f'));
        await tick();
        assert.equal(fs.existsSync(join(s.mnt, 'f')), false);
        // Polled, the lookups find each change; pushed, each change invalidates the entry, and
        // the kernel forgets the node before it looks the name up again.
        const want = watched
          ? [
              /lower changes: pushed by the kernel \(fanotify\)/,
              /\d+ changes: [1-9]\d* entries, [1-9]\d* inodes invalidated/,
              /f: node \d+ \(lower 1 [\d:.]+\) detached: now lower 1 [\d:.]+; inval_inode sent/,
              /f: new node \d+ for lower 1/,
            ]
          : [
              /lower changes: polled at each lookup \(watch=off\)/,
              /f: node \d+ \(lower 1 [\d:.]+\) detached: now lower 1 [\d:.]+; inval_inode sent/,
              /f: new node \d+ for lower 1/,
              /f: node \d+ \(lower 1 [\d:.]+\) detached: gone \(lower-miss\)/,
            ];
        await waitUntil(() => want.every((w) => w.test(d.stderr())), { what: 'every revalidation log line' });
        for (const w of want) assert.match(d.stderr(), w);
      });

      it('drops nodes when the kernel forgets them', async () => {
        for (let i = 0; i < 2000; i++) fs.writeFileSync(join(s.lower, `f${i}`), '');
        await mount();
        await python('import os, sys\nfor n in os.listdir(sys.argv[1]): os.stat(os.path.join(sys.argv[1], n))', [s.mnt]);
        const nodes = async () => Number((await run(OVSHIFT, ['ctl', s.mnt, 'status'])).stdout.match(/nodes (\d+)/)![1]);
        assert.ok((await nodes()) >= 2000);
        fs.writeFileSync('/proc/sys/vm/drop_caches', '2');
        await waitUntil(async () => (await nodes()) <= 10, { what: 'the forgotten nodes to leave the table', intervalMs: 50 });
        assert.ok((await nodes()) <= 10, 'forgotten nodes are gone from the table');
      });
    });
  }

  describe('revalidate=cached and revalidate=kernel', () => {
    it('cached: like fuse-overlayfs, what was looked up stays as it was', async () => {
      makeTree(s.lower, { f: 'first' });
      await s.mount('revalidate=cached');
      assert.equal(read(join(s.mnt, 'f')), 'first');
      assert.equal(fs.existsSync(join(s.mnt, 'g')), false);
      fs.writeFileSync(join(s.lower, 'g'), 'new');
      fs.unlinkSync(join(s.lower, 'f'));
      assert.equal(fs.existsSync(join(s.mnt, 'g')), false, 'a cached absence hides the new file');
      assert.equal(fs.existsSync(join(s.mnt, 'f')), true, 'a cached entry outlives the lower file');
    });

    it('kernel: reproduces the ESTALE kernel overlayfs gives on a changed lower (seed 002), which the default does not', async () => {
      makeTree(s.lower, { 'usr/lib/libfoo.so': 'v1' });
      const probe = `
import os, sys
m, lower = sys.argv[1], sys.argv[2]
print(open(m + '/usr/lib/libfoo.so').read())
with open(lower + '/usr/lib/libfoo.so.new', 'w') as f: f.write('v2')
os.rename(lower + '/usr/lib/libfoo.so.new', lower + '/usr/lib/libfoo.so')
try:
    print(open(m + '/usr/lib/libfoo.so').read())
except OSError as e: print(os.strerror(e.errno))
`;
      const kernelMode = await s.mount('revalidate=kernel');
      const kernel = await python(probe, [s.mnt, s.lower]);
      assert.equal(kernel.stdout, 'v1\nStale file handle\n', kernel.stderr);
      await kernelMode.stop();
      renameOverEdit(join(s.lower, 'usr/lib/libfoo.so'), 'v1');
      await s.mount();
      const always = await python(probe, [s.mnt, s.lower]);
      assert.equal(always.stdout, 'v1\nv2\n', always.stderr);
    });
  });
});

function repr(v: unknown[]): string {
  return `[${v.map((x) => (typeof x === 'string' ? `'${x}'` : typeof x === 'boolean' ? (x ? 'True' : 'False') : String(x))).join(', ')}]`;
}
