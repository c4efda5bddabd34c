/**
 * Issue 11: the overlay's own xattrs are not user data. On a mount by root, trusted.overlay.*
 * cannot be set, read, listed or removed through the mount (kernel overlayfs answers EOPNOTSUPP
 * for its own xattrs; EPERM is accepted and reported), so a user of the mount can neither make a
 * directory opaque or redirected nor learn or drop what the upper records. user.overlay.* is
 * plain user data there: its owner sets and reads it, and it decides nothing.
 */
import assert from 'assert/strict';
import { execFileSync, spawnSync } from 'child_process';
import * as fs from 'fs';
import { join } from 'path';
import { Scratch } from '../helpers/ovshift';
import { run } from '../helpers/proc';
import { makeTree, snapshot } from '../helpers/tree';
import { createUser, removeUser, type TestUser } from '../helpers/users';
import { ops, type Op } from './probe';

/** Every xattr name the host sees on `p` (as root, without following a symlink). */
function hostXattrs(p: string): string[] {
  const out = execFileSync('getfattr', ['-h', '-d', '-m', '-', '--absolute-names', p], { encoding: 'utf8' });
  return out
    .split('\n')
    .filter((l) => l && !l.startsWith('#'))
    .map((l) => l.replace(/=.*/, ''))
    .sort();
}

function hostXattr(p: string, name: string): string | null {
  const r = spawnSync('getfattr', ['-h', '--only-values', '--absolute-names', '-n', name, p], { encoding: 'utf8' });
  return r.status === 0 ? (r.stdout as string) : null;
}

const OVERLAY_NAMES = ['trusted.overlay.opaque', 'trusted.overlay.redirect', 'trusted.overlay.anything'];
const REFUSED = ['EOPNOTSUPP', 'EPERM'];

describe('security: overlay xattrs cannot be read, set or removed through a root mount (issue 11)', function () {
  this.timeout(60000);
  let s: Scratch;

  beforeEach(() => {
    s = new Scratch('ovshift-ovxattr-');
    makeTree(s.lower, { 'ldir/lfile': 'l', lfile: 'lower file', 'odir/hidden': 'h', 'real/r': 'r' });
    makeTree(s.upper, { 'udir/ufile': 'u', ufile: 'upper file' });
  });

  afterEach(() => s.dispose());

  it('setfattr trusted.overlay.{opaque,redirect,anything} fails (EOPNOTSUPP, or EPERM) and stores nothing, not even a copy-up', async function () {
    this.timeout(60000);
    const lowerBefore = snapshot(s.lower);
    const d = await s.mount();
    const targets = ['udir', 'ufile', 'ldir', 'lfile'];
    const list: Op[] = [];
    for (const t of targets) for (const n of OVERLAY_NAMES) list.push(['setxattr', join(s.mnt, t), n, n.endsWith('redirect') ? '/real' : 'y']);
    const results = await ops(list);
    const seen = new Set<unknown>();
    results.forEach((r, i) => {
      seen.add(r);
      assert.ok(REFUSED.includes(r as string), `setxattr ${list[i]![2]} on ${list[i]![1]}: ${JSON.stringify(r)}`);
    });
    // Which one the implementation answers (kernel overlayfs: EOPNOTSUPP).
    console.log(`      setxattr of trusted.overlay.* through the mount answers: ${[...seen].join(', ')}`);
    for (const t of ['udir', 'ufile']) {
      assert.deepEqual(
        hostXattrs(join(s.upper, t)).filter((n) => n.startsWith('trusted.overlay.')),
        [],
        `${t} in the upper got an overlay xattr`,
      );
    }
    assert.ok(!fs.existsSync(join(s.upper, 'ldir')), 'a refused setxattr copied ldir up');
    assert.ok(!fs.existsSync(join(s.upper, 'lfile')), 'a refused setxattr copied lfile up');
    // The directories are neither opaque nor redirected.
    const [ldir, udir] = await ops([
      ['ls', join(s.mnt, 'ldir')],
      ['ls', join(s.mnt, 'udir')],
    ]);
    assert.deepEqual(ldir, ['lfile']);
    assert.deepEqual(udir, ['ufile']);
    await d.stop();
    assert.deepEqual(snapshot(s.lower), lowerBefore, 'the lower changed');
  });

  it('getfattr of trusted.overlay.* the upper holds fails through the mount, and listxattr never lists them', async function () {
    this.timeout(60000);
    // An opaque upper directory over a lower one, a redirected one, and a file with a custom one.
    fs.mkdirSync(join(s.upper, 'odir'));
    execFileSync('setfattr', ['-n', 'trusted.overlay.opaque', '-v', 'y', join(s.upper, 'odir')]);
    execFileSync('setfattr', ['-n', 'user.visible', '-v', 'yes', join(s.upper, 'odir')]);
    fs.mkdirSync(join(s.upper, 'moved'));
    execFileSync('setfattr', ['-n', 'trusted.overlay.redirect', '-v', '/real', join(s.upper, 'moved')]);
    execFileSync('setfattr', ['-n', 'trusted.overlay.anything', '-v', 'secret', join(s.upper, 'ufile')]);
    execFileSync('setfattr', ['-n', 'trusted.overlay.anything', '-v', 'secret', join(s.lower, 'lfile')]);
    await s.mount();
    const [odirList, movedList, o, r, a, la, lo, lm, lu, ll] = await ops([
      ['ls', join(s.mnt, 'odir')],
      ['ls', join(s.mnt, 'moved')],
      ['getxattr', join(s.mnt, 'odir'), 'trusted.overlay.opaque'],
      ['getxattr', join(s.mnt, 'moved'), 'trusted.overlay.redirect'],
      ['getxattr', join(s.mnt, 'ufile'), 'trusted.overlay.anything'],
      ['getxattr', join(s.mnt, 'lfile'), 'trusted.overlay.anything'],
      ['listxattr', join(s.mnt, 'odir')],
      ['listxattr', join(s.mnt, 'moved')],
      ['listxattr', join(s.mnt, 'ufile')],
      ['listxattr', join(s.mnt, 'lfile')],
    ]);
    // The metadata is in force (it is metadata, not data)...
    assert.deepEqual(odirList, [], 'the opaque upper directory hides the lower one');
    assert.deepEqual(movedList, ['r'], 'the redirect is followed');
    // ...and invisible.
    for (const [what, v] of [
      ['opaque', o],
      ['redirect', r],
      ['upper file', a],
      ['lower file', la],
    ] as const) {
      assert.ok(['ENODATA', 'EOPNOTSUPP'].includes(v as string), `getxattr of trusted.overlay.* (${what}) through the mount: ${JSON.stringify(v)}`);
    }
    for (const l of [lo, lm, lu, ll]) {
      assert.ok(Array.isArray(l), `listxattr failed: ${JSON.stringify(l)}`);
      assert.deepEqual(
        (l as string[]).filter((n) => n.startsWith('trusted.overlay.')),
        [],
        `listed: ${JSON.stringify(l)}`,
      );
    }
    assert.ok((lo as string[]).includes('user.visible'), 'other xattrs are still listed');
    // getfattr -d -m - (what an administrator would run) agrees.
    const dump = await run('getfattr', [
      '-d',
      '-m',
      '-',
      '--absolute-names',
      join(s.mnt, 'odir'),
      join(s.mnt, 'moved'),
      join(s.mnt, 'ufile'),
      join(s.mnt, 'lfile'),
    ]);
    assert.doesNotMatch(dump.stdout, /trusted\.overlay\./, dump.stdout);
  });

  it('removexattr of trusted.overlay.opaque through the mount fails and the upper keeps it (the directory stays opaque)', async function () {
    this.timeout(60000);
    fs.mkdirSync(join(s.upper, 'odir'));
    execFileSync('setfattr', ['-n', 'trusted.overlay.opaque', '-v', 'y', join(s.upper, 'odir')]);
    execFileSync('setfattr', ['-n', 'trusted.overlay.redirect', '-v', '/real', join(s.upper, 'udir')]);
    await s.mount();
    const [ro, rr, list] = await ops([
      ['removexattr', join(s.mnt, 'odir'), 'trusted.overlay.opaque'],
      ['removexattr', join(s.mnt, 'udir'), 'trusted.overlay.redirect'],
      ['ls', join(s.mnt, 'odir')],
    ]);
    assert.ok(['EOPNOTSUPP', 'EPERM', 'ENODATA'].includes(ro as string), `removexattr trusted.overlay.opaque: ${JSON.stringify(ro)}`);
    assert.ok(['EOPNOTSUPP', 'EPERM', 'ENODATA'].includes(rr as string), `removexattr trusted.overlay.redirect: ${JSON.stringify(rr)}`);
    console.log(`      removexattr of trusted.overlay.* through the mount answers: ${ro}`);
    assert.equal(hostXattr(join(s.upper, 'odir'), 'trusted.overlay.opaque'), 'y', 'the upper lost its opaque xattr');
    assert.equal(hostXattr(join(s.upper, 'udir'), 'trusted.overlay.redirect'), '/real', 'the upper lost its redirect');
    assert.deepEqual(list, [], 'the lower odir/hidden shows: the directory is no longer opaque');
  });

  describe('user.overlay.* is plain user data on a root mount', () => {
    let user: TestUser;
    before(async () => {
      user = await createUser();
    });
    after(() => removeUser(user));

    it('the owner of a file sets, reads, lists and removes user.overlay.foo through the mount', async function () {
      this.timeout(60000);
      fs.mkdirSync(join(s.lower, 'home'));
      fs.chownSync(join(s.lower, 'home'), user.uid, user.gid);
      fs.writeFileSync(join(s.lower, 'home/theirs'), 'lower');
      fs.chownSync(join(s.lower, 'home/theirs'), user.uid, user.gid);
      execFileSync('setfattr', ['-n', 'user.overlay.fromlower', '-v', 'lowerval', join(s.lower, 'home/theirs')]);
      await s.mount();
      const m = s.mnt;
      const res = await ops(
        [
          ['getxattr', join(m, 'home/theirs'), 'user.overlay.fromlower'],
          ['create', join(m, 'home/new')],
          ['setxattr', join(m, 'home/new'), 'user.overlay.foo', 'bar'],
          ['getxattr', join(m, 'home/new'), 'user.overlay.foo'],
          ['listxattr', join(m, 'home/new')],
          ['setxattr', join(m, 'home/theirs'), 'user.overlay.foo', 'baz'],
          ['getxattr', join(m, 'home/theirs'), 'user.overlay.foo'],
          ['removexattr', join(m, 'home/theirs'), 'user.overlay.fromlower'],
          ['listxattr', join(m, 'home/theirs')],
        ],
        user,
      );
      assert.deepEqual(res, ['lowerval', 'ok', 'ok', 'bar', ['user.overlay.foo'], 'ok', 'baz', 'ok', ['user.overlay.foo']]);
      // Stored as what it is, on the upper objects.
      assert.equal(hostXattr(join(s.upper, 'home/new'), 'user.overlay.foo'), 'bar');
      assert.equal(hostXattr(join(s.upper, 'home/theirs'), 'user.overlay.foo'), 'baz');
      assert.equal(hostXattr(join(s.upper, 'home/theirs'), 'user.overlay.fromlower'), null);
    });

    it('user.overlay.opaque=y set by the owner (on the host, or through the mount) does not make a directory opaque', async function () {
      this.timeout(60000);
      makeTree(s.lower, { 'shared/a': 'a', 'shared/b': 'b', 'other/c': 'c' });
      fs.chownSync(join(s.lower, 'other'), user.uid, user.gid);
      makeTree(s.upper, { 'shared/mine': 'm' });
      fs.chownSync(join(s.upper, 'shared'), user.uid, user.gid);
      const set = await user.run(['setfattr', '-n', 'user.overlay.opaque', '-v', 'y', join(s.upper, 'shared')]);
      assert.equal(set.code, 0, set.stderr);
      await s.mount();
      // Through the mount too, by its owner, on a lower directory (copied up to take it).
      const [shared] = await ops([['ls', join(s.mnt, 'shared')]], user);
      assert.deepEqual(shared, ['a', 'b', 'mine'], 'user.overlay.opaque set on the host hid the lower directory on a root mount');
      const [setRes, other] = await ops(
        [
          ['setxattr', join(s.mnt, 'other'), 'user.overlay.opaque', 'y'],
          ['ls', join(s.mnt, 'other')],
        ],
        user,
      );
      assert.equal(setRes, 'ok', 'the owner sets user.overlay.opaque through the mount');
      assert.equal(hostXattr(join(s.upper, 'other'), 'user.overlay.opaque'), 'y');
      assert.deepEqual(other, ['c'], 'user.overlay.opaque set through the mount hid the lower directory');
    });
  });
});
