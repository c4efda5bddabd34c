/**
 * Issue 11: `.wh.NAME` and `.wh..wh..opq` are overlay bookkeeping. Made through the mount, they
 * would let any user who may create a file in a directory delete another user's NAME (even in a
 * sticky directory, where unlinking it is refused) or hide the whole directory. Creating,
 * linking or renaming to such a name through the mount answers EINVAL and leaves the upper as it
 * was; looking one up answers ENOENT and listings never show one.
 *
 * Both upper formats are covered: the default (0/0 character-device whiteouts, opaque xattrs),
 * and the `.wh.` file fallback. The daemon falls back to `.wh.NAME` files when the upper refuses
 * a 0/0 mknod (src/overlay/whiteouts.ts makeWhiteout); kernel overlayfs refuses exactly that
 * (EPERM), so an upper that lives on a kernel overlayfs mount makes the daemon write the fallback
 * format itself (checked in each test that uses it).
 */
import assert from 'assert/strict';
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import { join } from 'path';
import { Scratch, startDaemon, type Daemon } from '../helpers/ovshift';
import { run } from '../helpers/proc';
import { makeTree } from '../helpers/tree';
import { createUser, removeUser, type TestUser } from '../helpers/users';
import { ops, type Op } from './probe';

/** Every path under `root` with its type, as the host sees it. */
function tree(root: string): string[] {
  const out: string[] = [];
  const walk = (rel: string): void => {
    for (const n of fs.readdirSync(join(root, rel)).sort()) {
      const r = rel ? `${rel}/${n}` : n;
      const st = fs.lstatSync(join(root, r));
      out.push(`${r}:${st.isDirectory() ? 'd' : st.isCharacterDevice() ? `c${st.rdev}` : st.isFIFO() ? 'p' : st.isSymbolicLink() ? 'l' : 'f'}`);
      if (st.isDirectory()) walk(r);
    }
  };
  walk('');
  return out;
}

function whNames(root: string): string[] {
  return tree(root).filter((p) => /(^|\/)\.wh\./.test(p));
}

/** The names no operation may make, and the names that must answer EINVAL. */
const PRIVATE = ['.wh.foo', '.wh..wh..opq', '.wh.new'];

type FormatName = 'default (0/0 devices, xattrs)' | '.wh. files (upper on kernel overlayfs)';
const FORMATS: FormatName[] = ['default (0/0 devices, xattrs)', '.wh. files (upper on kernel overlayfs)'];

for (const format of FORMATS) {
  const whFiles = format.startsWith('.wh.');

  describe(`security: overlay-private names cannot be made through the mount, upper format ${format} (issue 11)`, function () {
    this.timeout(60000);
    let s: Scratch;
    let upper: string;
    let work: string;
    let kernelOverlay: string | undefined;
    let daemons: Daemon[];
    let userA: TestUser;
    let userB: TestUser;

    before(async () => {
      userA = await createUser();
      userB = await createUser();
    });

    after(async () => {
      await removeUser(userA);
      await removeUser(userB);
    });

    beforeEach(() => {
      s = new Scratch('ovshift-privnames-');
      daemons = [];
      kernelOverlay = undefined;
      if (whFiles) {
        kernelOverlay = s.dir('kovl');
        const kl = s.dir('kl');
        const ku = s.dir('ku');
        const kw = s.dir('kw');
        execFileSync('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${kl},upperdir=${ku},workdir=${kw}`, kernelOverlay]);
        upper = join(kernelOverlay, 'upper');
        work = join(kernelOverlay, 'work');
        fs.mkdirSync(upper);
        fs.mkdirSync(work);
      } else {
        upper = s.upper;
        work = s.work;
      }
      makeTree(s.lower, { 'dir/foo': 'foo', 'dir/src': 'src', 'dir/srcdir/x': 'x', 'tmp/rootfile': 'r', 'odir/hidden': 'h', 'dir/gone': 'g' });
    });

    afterEach(async () => {
      for (const d of daemons.splice(0).reverse()) await d.stop();
      if (kernelOverlay) {
        const r = await run('umount', [kernelOverlay]);
        if (r.code !== 0) await run('umount', ['-l', kernelOverlay]);
      }
      s.remove();
    });

    async function mount(): Promise<Daemon> {
      const d = await startDaemon(['-o', `lowerdir=${s.lower},upperdir=${upper},workdir=${work}`, s.mnt], s.mnt);
      daemons.push(d);
      return d;
    }

    /** Removes lower dir/gone through the mount and checks the whiteout is in this format. */
    async function checkFormat(): Promise<void> {
      assert.deepEqual(await ops([['unlink', join(s.mnt, 'dir/gone')]]), ['ok']);
      const t = tree(upper);
      if (whFiles) assert.ok(t.includes('dir/.wh.gone:f'), `the daemon wrote a .wh. whiteout file: ${t.join(' ')}`);
      else assert.ok(t.includes('dir/gone:c0'), `the daemon wrote a 0/0 whiteout device: ${t.join(' ')}`);
    }

    it('create, mkfifo, mkdir, symlink, link and rename to .wh.* answer EINVAL and add nothing to the upper', async function () {
      this.timeout(60000);
      await mount();
      await checkFormat();
      // Sources for link and rename, already in the upper.
      assert.deepEqual(
        await ops([
          ['write', join(s.mnt, 'dir/up'), 'up'],
          ['mkdir', join(s.mnt, 'dir/updir')],
        ]),
        ['ok', 'ok'],
      );
      const upperBefore = tree(upper);
      const list: Op[] = [];
      for (const n of PRIVATE) {
        const p = join(s.mnt, 'dir', n);
        list.push(
          ['create', p],
          ['mkfifo', p],
          ['mkdir', p],
          ['symlink', p, 'foo'],
          ['link', join(s.mnt, 'dir/up'), p],
          ['rename', join(s.mnt, 'dir/up'), p],
          ['rename', join(s.mnt, 'dir/updir'), p],
          ['rename', join(s.mnt, 'dir/src'), p],
        );
        // At the root too, and in a directory that is not yet in the upper.
        list.push(['create', join(s.mnt, n)], ['mkdir', join(s.mnt, 'odir', n)]);
      }
      const results = await ops(list);
      results.forEach((r, i) => assert.equal(r, 'EINVAL', `${list[i]![0]} ${list[i]!.slice(1).join(' -> ')}`));
      assert.deepEqual(tree(upper), upperBefore, 'the upper changed');
      const [dir, root, odir, foo, up] = await ops([
        ['ls', join(s.mnt, 'dir')],
        ['ls', s.mnt],
        ['ls', join(s.mnt, 'odir')],
        ['read', join(s.mnt, 'dir/foo')],
        ['read', join(s.mnt, 'dir/up')],
      ]);
      assert.deepEqual(dir, ['foo', 'src', 'srcdir', 'up', 'updir']);
      assert.deepEqual(root, ['dir', 'odir', 'tmp']);
      assert.deepEqual(odir, ['hidden']);
      assert.equal(foo, 'foo');
      assert.equal(up, 'up');
    });

    it("sticky 1777 directory: user A cannot remove B's file, nor hide it or the directory with .wh. names", async function () {
      this.timeout(60000);
      fs.chmodSync(join(s.lower, 'tmp'), 0o1777);
      fs.writeFileSync(join(s.lower, 'tmp/theirfile'), 'theirs');
      fs.chownSync(join(s.lower, 'tmp/theirfile'), userB.uid, userB.gid);
      fs.chmodSync(join(s.lower, 'tmp/theirfile'), 0o644);
      await mount();
      await checkFormat();
      const t = (n: string): string => join(s.mnt, 'tmp', n);
      const res = await ops(
        [
          ['unlink', t('theirfile')],
          ['create', t('.wh.theirfile')],
          ['create', t('.wh..wh..opq')],
          ['mkdir', t('.wh.theirfile')],
          ['mkfifo', t('.wh.theirfile')],
          ['symlink', t('.wh.theirfile'), 'x'],
          ['write', t('mine'), 'mine'],
          ['rename', t('mine'), t('.wh.theirfile')],
          ['link', t('mine'), t('.wh..wh..opq')],
          ['ls', join(s.mnt, 'tmp')],
        ],
        userA,
      );
      assert.deepEqual(res, ['EPERM', 'EINVAL', 'EINVAL', 'EINVAL', 'EINVAL', 'EINVAL', 'ok', 'EINVAL', 'EINVAL', ['mine', 'rootfile', 'theirfile']]);
      // Everyone still sees every entry, and B's file.
      for (const who of [userA, userB, undefined]) {
        const [list, theirs] = await ops(
          [
            ['ls', join(s.mnt, 'tmp')],
            ['read', t('theirfile')],
          ],
          who,
        );
        assert.deepEqual(list, ['mine', 'rootfile', 'theirfile'], `listing as ${who?.name ?? 'root'}`);
        assert.equal(theirs, 'theirs', `theirfile as ${who?.name ?? 'root'}`);
      }
      const upperTree = tree(upper);
      assert.deepEqual(
        upperTree.filter((p) => p.startsWith('tmp/')),
        ['tmp/mine:f'],
        `upper tmp holds only A's file: ${upperTree.join(' ')}`,
      );
    });

    it('.wh. names the upper or a lower holds answer ENOENT and never show in listings', async function () {
      this.timeout(60000);
      // As fuse-overlayfs leaves them: a whiteout file hiding lower dir/foo, an opaque marker, and
      // a .wh. file in the lower (a lower written in the fallback format).
      makeTree(upper, { 'dir/.wh.foo': '', 'odir/.wh..wh..opq': '', 'odir/up': 'u', 'dir/.wh.nothing': '' });
      makeTree(s.lower, { 'dir/.wh.lowerwh': '', '.wh.top': '' });
      await mount();
      await checkFormat();
      const res = await ops([
        ['stat', join(s.mnt, 'dir/.wh.foo')],
        ['stat', join(s.mnt, 'dir/.wh.gone')],
        ['stat', join(s.mnt, 'dir/.wh.nothing')],
        ['stat', join(s.mnt, 'odir/.wh..wh..opq')],
        ['stat', join(s.mnt, 'dir/.wh.lowerwh')],
        ['stat', join(s.mnt, '.wh.top')],
        ['read', join(s.mnt, 'dir/.wh.nothing')],
        ['ls', s.mnt],
        ['ls', join(s.mnt, 'dir')],
        ['ls', join(s.mnt, 'odir')],
        ['stat', join(s.mnt, 'dir/foo')],
      ]);
      assert.deepEqual(res.slice(0, 7), ['ENOENT', 'ENOENT', 'ENOENT', 'ENOENT', 'ENOENT', 'ENOENT', 'ENOENT']);
      assert.deepEqual(res.slice(7), [['dir', 'odir', 'tmp'], ['src', 'srcdir'], ['up'], 'ENOENT']);
      // `ls -a` (getdents through the shell) agrees.
      const lsA = await run('ls', ['-aR', s.mnt]);
      assert.equal(lsA.code, 0, lsA.stderr);
      assert.doesNotMatch(lsA.stdout, /\.wh\./, lsA.stdout);
      assert.ok(whNames(upper).length >= 3, 'the upper still holds its .wh. files');
    });
  });
}
