import assert from 'assert/strict';
import { execFileSync } from 'child_process';
import { createHash } from 'crypto';
import * as fs from 'fs';
import { join } from 'path';
import { Scratch, startDaemon, type Daemon } from '../helpers/ovshift';
import { python, run } from '../helpers/proc';
import { waitUntil } from '../helpers/wait';
import { makeTree, read, sha256 } from '../helpers/tree';

function xattr(p: string, name: string): string | undefined {
  try {
    return execFileSync('getfattr', ['--absolute-names', '-h', '--only-values', '-n', name, p], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  } catch {
    return undefined;
  }
}

describe('overlay: copy-up', function () {
  this.timeout(60000);
  let s: Scratch;
  let d: Daemon | undefined;
  const extraMounts: string[] = [];

  beforeEach(() => {
    s = new Scratch();
  });

  afterEach(async () => {
    await d?.stop();
    d = undefined;
    for (const m of extraMounts.splice(0)) await run('umount', ['-l', m]);
    s.remove();
  });

  it('does not copy up at open: a file opened read-write keeps reading the lower until written', async () => {
    makeTree(s.lower, { mbox: 'first message\n' });
    d = await s.mount();
    const r = await python(
      `
import os, sys, time
mnt, lower, upper = sys.argv[1:4]
fd = os.open(mnt + '/mbox', os.O_RDWR)
print(os.read(fd, 100).decode().strip())
print(os.path.exists(upper + '/mbox'))
with open(lower + '/mbox', 'a') as f: f.write('second message\\n')
print(os.fstat(fd).st_size)
print(os.pread(fd, 100, 14).decode().strip())
os.pwrite(fd, b'FIRST', 0)
print(os.path.exists(upper + '/mbox'))
print(os.pread(fd, 100, 0).decode().replace('\\n', '|'))
`,
      [s.mnt, s.lower, s.upper],
    );
    assert.equal(r.stdout, 'first message\nFalse\n29\nsecond message\nTrue\nFIRST message|second message|\n', r.stderr);
    assert.equal(read(join(s.lower, 'mbox')), 'first message\nsecond message\n', 'the lower is untouched');
  });

  it('makes every open handle, read-only ones too, see the upper copy after a copy-up', async () => {
    makeTree(s.lower, { f: 'lower content' });
    d = await s.mount();
    const r = await python(
      `
import os, sys
p = sys.argv[1] + '/f'
ro = os.open(p, os.O_RDONLY)
print(os.pread(ro, 100, 0).decode())
with open(p, 'r+') as w: w.write('UPPER')
print(os.pread(ro, 100, 0).decode())
`,
      [s.mnt],
    );
    assert.equal(r.stdout, 'lower content\nUPPER content\n', r.stderr);
  });

  it('copies data, mode, owner, times and xattrs, parents first, for every kind of first change', async () => {
    makeTree(s.lower, { 'deep/er/file': 'payload' });
    for (const rel of ['deep', 'deep/er', 'deep/er/file']) {
      const p = join(s.lower, rel);
      fs.chownSync(p, 1234, 5678);
      execFileSync('setfattr', ['-n', 'user.keep', '-v', rel, p]);
    }
    fs.chmodSync(join(s.lower, 'deep/er/file'), 0o640);
    fs.utimesSync(join(s.lower, 'deep/er/file'), new Date('2020-01-02T03:04:05Z'), new Date('2021-02-03T04:05:06Z'));
    fs.utimesSync(join(s.lower, 'deep'), new Date('2019-01-01T00:00:00Z'), new Date('2019-06-01T00:00:00Z'));
    d = await s.mount();
    // A change that keeps data and times: a new xattr.
    execFileSync('setfattr', ['-n', 'user.added', '-v', 'x', join(s.mnt, 'deep/er/file')]);
    const up = join(s.upper, 'deep/er/file');
    assert.equal(read(up), 'payload');
    const st = fs.statSync(up);
    assert.equal(st.mode & 0o7777, 0o640);
    assert.deepEqual([st.uid, st.gid], [1234, 5678]);
    assert.equal(st.mtime.toISOString(), '2021-02-03T04:05:06.000Z');
    assert.equal(xattr(up, 'user.keep'), 'deep/er/file');
    assert.equal(xattr(up, 'user.added'), 'x');
    const parent = fs.statSync(join(s.upper, 'deep'));
    assert.deepEqual([parent.uid, parent.gid, parent.mtime.toISOString()], [1234, 5678, '2019-06-01T00:00:00.000Z']);
    assert.equal(xattr(join(s.upper, 'deep'), 'user.keep'), 'deep');
    assert.equal(xattr(join(s.mnt, 'deep/er/file'), 'trusted.overlay.ovshift.origin'), undefined, 'overlay xattrs stay hidden');

    const triggers: Array<[string, (p: string) => void]> = [
      ['write', (p) => fs.appendFileSync(p, '+')],
      ['truncate', (p) => fs.truncateSync(p, 3)],
      ['O_TRUNC', (p) => fs.writeFileSync(p, 'new')],
      ['chmod', (p) => fs.chmodSync(p, 0o600)],
      ['chown', (p) => fs.chownSync(p, 42, 43)],
      ['utimens', (p) => fs.utimesSync(p, new Date(), new Date())],
      ['setxattr', (p) => execFileSync('setfattr', ['-n', 'user.t', '-v', '1', p])],
      ['removexattr', (p) => execFileSync('setfattr', ['-x', 'user.keep', p])],
      ['link', (p) => fs.linkSync(p, `${p}.link`)],
      ['rename', (p) => fs.renameSync(p, `${p}.moved`)],
    ];
    for (const [what] of triggers) {
      fs.writeFileSync(join(s.lower, `t-${what}`), 'trigger');
      execFileSync('setfattr', ['-n', 'user.keep', '-v', '1', join(s.lower, `t-${what}`)]);
    }
    for (const [what, act] of triggers) {
      act(join(s.mnt, `t-${what}`));
      const upperName = what === 'rename' ? `t-${what}.moved` : `t-${what}`;
      assert.ok(fs.existsSync(join(s.upper, upperName)), `${what} copies up`);
      assert.equal(read(join(s.lower, `t-${what}`)), 'trigger', `${what} leaves the lower alone`);
    }
    assert.equal(read(join(s.mnt, 't-truncate')), 'tri');
    assert.equal(read(join(s.mnt, 't-O_TRUNC')), 'new');
    assert.equal(read(join(s.mnt, 't-write')), 'trigger+');
    assert.equal(fs.statSync(join(s.mnt, 't-link')).nlink, 2);
    assert.equal(fs.statSync(join(s.mnt, 't-link')).ino, fs.statSync(join(s.mnt, 't-link.link')).ino);
  });

  it('skips xattrs the upper cannot store (logged), but refuses to lose a POSIX ACL', async () => {
    // A ramfs upper stores no xattrs at all.
    const ram = s.dir('ram');
    execFileSync('mount', ['-t', 'ramfs', 'ovshift-test-ramfs', ram]);
    extraMounts.push(ram);
    fs.mkdirSync(join(ram, 'upper'));
    fs.mkdirSync(join(ram, 'work'));
    makeTree(s.lower, { plain: 'p', withacl: 'a', dir: { dir: true }, 'dir/inner': 'i' });
    execFileSync('setfattr', ['-n', 'user.note', '-v', 'kept on the lower', join(s.lower, 'plain')]);
    execFileSync('setfacl', ['-m', 'u:1234:r', join(s.lower, 'withacl')]);
    d = await startDaemon(['-o', `lowerdir=${s.lower},upperdir=${ram}/upper,workdir=${ram}/work`, s.mnt], s.mnt, { env: { DEBUG: 'ovshift:copyup' } });
    fs.appendFileSync(join(s.mnt, 'plain'), '+');
    assert.equal(read(join(ram, 'upper/plain')), 'p+');
    const logged = /skipping xattr user\.note of plain: the upper cannot store it \(EOPNOTSUPP\)/;
    await waitUntil(() => logged.test(d!.stderr()), { what: 'the skipped-xattr log line' });
    assert.match(d.stderr(), logged);
    assert.throws(() => fs.appendFileSync(join(s.mnt, 'withacl'), '+'), { errno: -95 }); // EOPNOTSUPP
    assert.equal(fs.existsSync(join(ram, 'upper/withacl')), false);
    assert.equal(read(join(s.mnt, 'withacl')), 'a');
    // Opaque directories fall back to the marker file there.
    fs.rmSync(join(s.mnt, 'dir'), { recursive: true });
    fs.mkdirSync(join(s.mnt, 'dir'));
    assert.deepEqual(fs.readdirSync(join(s.mnt, 'dir')), []);
    assert.ok(fs.existsSync(join(ram, 'upper/dir/.wh..wh..opq')));
  });

  it('keeps a sparse file sparse at copy-up, into an upper on another filesystem (tmpfs) and on the same one, bytes unchanged', async () => {
    const size = 64 << 20;
    const sparse = join(s.lower, 'sparse');
    const fd = fs.openSync(sparse, 'w');
    fs.writeSync(fd, Buffer.alloc(5000, 'A'), 0, 5000, 1 << 20);
    fs.writeSync(fd, Buffer.alloc(70000, 'B'), 0, 70000, 40 << 20);
    fs.ftruncateSync(fd, size);
    fs.closeSync(fd);
    const want = createHash('sha256').update(fs.readFileSync(sparse)).update('x').digest('hex');
    const ram = s.dir('ram');
    execFileSync('mount', ['-t', 'tmpfs', 'ovshift-test-upper', ram]);
    extraMounts.push(ram);
    for (const root of [ram, s.dir('same-fs')]) {
      const [upper, work] = [join(root, 'upper'), join(root, 'work')];
      fs.mkdirSync(upper);
      fs.mkdirSync(work);
      d = await startDaemon(['-o', `lowerdir=${s.lower},upperdir=${upper},workdir=${work}`, s.mnt], s.mnt);
      fs.appendFileSync(join(s.mnt, 'sparse'), 'x');
      assert.equal(sha256(join(s.mnt, 'sparse')), want, `${root}: the bytes through the mount`);
      const copy = fs.statSync(join(upper, 'sparse'));
      assert.equal(copy.size, size + 1);
      assert.ok(copy.blocks * 512 < 4 << 20, `${root}: the copy takes ${copy.blocks * 512} bytes of ${size}: its holes were filled`);
      await d.stop();
      d = undefined;
    }
  });

  it('never shows a half-copied file: a copy-up cut by SIGKILL leaves nothing after remount', async () => {
    const t = s.dir('t');
    execFileSync('mount', ['-t', 'tmpfs', 'ovshift-test-upper', t]);
    extraMounts.push(t);
    fs.mkdirSync(join(t, 'upper'));
    fs.mkdirSync(join(t, 'work'));
    const big = join(s.lower, 'big');
    execFileSync('dd', ['if=/dev/urandom', `of=${big}`, 'bs=1M', 'count=512', 'status=none']);
    const want = sha256(big);
    const args = ['-o', `lowerdir=${s.lower},upperdir=${t}/upper,workdir=${t}/work`, s.mnt];
    d = await startDaemon(args, s.mnt);
    const toucher = python(`import os, sys\ntry: os.utime(sys.argv[1])\nexcept OSError as e: print(e.errno)`, [join(s.mnt, 'big')]);
    await waitUntil(() => fs.readdirSync(join(t, 'work/work')).length > 0, { intervalMs: 5, what: 'the copy-up to start in the work dir' });
    d.child.kill('SIGKILL');
    await toucher;
    await d.stop();
    assert.equal(fs.existsSync(join(t, 'upper/big')), false, 'no partial copy in the upper');
    d = await startDaemon(args, s.mnt);
    assert.deepEqual(fs.readdirSync(join(t, 'work/work')), [], 'the work dir was cleared at mount');
    assert.equal(sha256(join(s.mnt, 'big')), want);
    fs.utimesSync(join(s.mnt, 'big'), new Date(), new Date());
    assert.equal(sha256(join(t, 'upper/big')), want, 'a full copy after an uninterrupted copy-up');
  });
});
