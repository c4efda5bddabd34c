/**
 * Issue 11: redirects are untrusted layer content. On a mount by root only trusted.overlay.* is
 * overlay metadata, and a redirect is checked as kernel overlayfs checks it before it is used: a
 * relative one is a single name, an absolute one has no empty, "." or ".." component. A
 * directory whose redirect is anything else answers EIO (one line on the daemon's stderr) and
 * the redirect is never followed, so no layer can show the host's files through the mount.
 *
 * Layout: the layers live in ROOT/layers (ROOT/layers/outside is a tree that is in no layer),
 * the mountpoint in ROOT/mnt, so that a redirect that climbs out of a layer finds `outside`
 * (or the host's /etc), never the mountpoint (the daemon would stat its own mount).
 */
import assert from 'assert/strict';
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import { join } from 'path';
import { Scratch, startDaemon, type Daemon } from '../helpers/ovshift';
import { sleep } from '../helpers/proc';
import { waitUntil } from '../helpers/wait';
import { makeTree, snapshot, type Snapshot } from '../helpers/tree';
import { createUser, removeUser, type TestUser } from '../helpers/users';
import { ops } from './probe';

/** Runs each operation, answering its result or the errno name it failed with. */

/** Names that only the host's /etc has here: any of them in a listing means /etc leaked. */
const HOST_ETC = ['passwd', 'shadow', 'group', 'hostname', 'os-release'];

function setRedirect(dir: string, value: string, ns = 'trusted'): void {
  // setfattr cannot write an empty value; python can.
  execFileSync('python3', ['-c', 'import os,sys; os.setxattr(sys.argv[1], sys.argv[2], sys.argv[3].encode("latin1"))', dir, `${ns}.overlay.redirect`, value]);
}

const PAST = new Date('2020-05-05T05:05:05Z');

/** Sets every time in the tree to the past, so that a read through a leak would move an atime. */
function age(root: string): void {
  const walk = (p: string): void => {
    const st = fs.lstatSync(p);
    if (st.isDirectory()) for (const n of fs.readdirSync(p)) walk(join(p, n));
    if (!st.isSymbolicLink()) fs.utimesSync(p, PAST, PAST);
  };
  walk(root);
}

describe('security: overlay redirects are validated before use (issue 11)', function () {
  this.timeout(60000);
  let s: Scratch;
  let lower: string;
  let lower2: string;
  let outside: string;
  let upper: string;
  let work: string;
  let mnt: string;
  let daemons: Daemon[];

  beforeEach(() => {
    s = new Scratch('ovshift-redirects-');
    lower = s.dir('layers/lower');
    lower2 = s.dir('layers/lower2');
    outside = s.dir('layers/outside');
    upper = s.upper;
    work = s.work;
    mnt = s.mnt;
    daemons = [];
    makeTree(outside, { 'secret.txt': 'outside secret', 'etc/passwd': 'fake', 'sub/deeper.txt': 'deep' });
    makeTree(lower, { 'real/dir/file': 'lower file', 'real/dir/sub/x': 'x', 'a/b/ab.txt': 'ab', 'keep.txt': 'keep' });
  });

  afterEach(async () => {
    for (const d of daemons.splice(0).reverse()) await d.stop();
    s.remove();
  });

  async function mount(lowers: string[], withUpper = true): Promise<Daemon> {
    const opt = `lowerdir=${lowers.join(':')}${withUpper ? `,upperdir=${upper},workdir=${work}` : ''},redirect_dir=on`;
    const d = await startDaemon(['-o', opt, mnt], mnt);
    daemons.push(d);
    return d;
  }

  /** Lines of the daemon's stderr about redirects, once at least one has arrived (or 3 s). */
  async function redirectLines(d: Daemon): Promise<string[]> {
    const lines = (): string[] =>
      d
        .stderr()
        .split('\n')
        .filter((l) => /redirect/i.test(l));
    // Callers also expect none: then the 3 s pass and the empty list is their answer.
    await waitUntil(() => lines().length > 0, { timeoutMs: 3000, what: 'a redirect line' }).catch(() => undefined);
    // A second line (a repeat) would come right after the first.
    await sleep(200);
    return lines();
  }

  /** What must not change: the tree outside the layers and every layer, to the nanosecond. */
  function untouched(): { outside: Snapshot; lower: Snapshot; lower2: Snapshot } {
    return { outside: snapshot(outside), lower: snapshot(lower), lower2: snapshot(lower2) };
  }

  /**
   * Mounts with `upper/bad` (holding `own`) redirected to `value`, checks that `bad` answers
   * EIO to stat, listing, reads and creates, that one stderr line names it, that none of
   * `leakNames` shows, and that nothing outside or in the lowers changed.
   */
  async function expectInvalid(value: string, leakNames: string[]): Promise<void> {
    makeTree(upper, { 'bad/own': 'mine' });
    setRedirect(join(upper, 'bad'), value);
    age(s.root);
    const before = untouched();
    const upperBefore = snapshot(join(upper, 'bad'));
    const d = await mount([lower]);
    const [st, list, read, create, mkdir, again] = await ops([
      ['stat', join(mnt, 'bad')],
      ['ls', join(mnt, 'bad')],
      ['read', join(mnt, 'bad/secret.txt')],
      ['create', join(mnt, 'bad/new')],
      ['mkdir', join(mnt, 'bad/newdir')],
      ['ls', join(mnt, 'bad')],
    ]);
    for (const leak of leakNames) {
      assert.ok(
        !(Array.isArray(list) && list.includes(leak)),
        `${leak} (of what the redirect names) listed through bad: ${JSON.stringify(list).slice(0, 300)}`,
      );
    }
    assert.notEqual(read, 'outside secret', 'a file outside the layers was read through the redirect');
    assert.equal(st, 'EIO', `stat of a directory with redirect ${JSON.stringify(value)}`);
    assert.equal(list, 'EIO', `listing of a directory with redirect ${JSON.stringify(value)}`);
    assert.equal(again, 'EIO', 'a second listing answers EIO too');
    assert.equal(read, 'EIO');
    assert.equal(create, 'EIO');
    assert.equal(mkdir, 'EIO');
    const lines = await redirectLines(d);
    assert.equal(lines.length, 1, `one stderr line about the redirect, got: ${JSON.stringify(d.stderr())}`);
    assert.match(lines[0]!, /bad/, 'the line names the directory');
    // The rest of the mount still works.
    assert.equal((await ops([['read', join(mnt, 'keep.txt')]]))[0], 'keep');
    await d.stop();
    assert.deepEqual(untouched(), before, 'nothing outside the layers and nothing in the lowers changed');
    assert.deepEqual(snapshot(join(upper, 'bad')), upperBefore, 'the directory in the upper did not change');
  }

  describe('an invalid trusted.overlay.redirect on an upper directory answers EIO and is never followed', () => {
    it('"/../../../../../etc" (climbs to the host\'s /etc): no entry of /etc shows', async function () {
      this.timeout(60000);
      await expectInvalid('/../../../../../etc', HOST_ETC);
    });

    it('"/../outside" (climbs to a tree beside the layer): nothing of it shows or is read', async function () {
      this.timeout(60000);
      await expectInvalid('/../outside', ['secret.txt', 'etc', 'sub']);
    });

    it('".." (relative, the layer\'s parent): the other layers and trees beside them do not show', async function () {
      this.timeout(60000);
      await expectInvalid('..', ['lower', 'lower2', 'outside']);
    });

    it('"a/b" (relative with a slash) is not followed even though lower a/b exists', async function () {
      this.timeout(60000);
      await expectInvalid('a/b', ['ab.txt']);
    });

    it('"/a//b" (empty component) is not followed even though lower a/b exists', async function () {
      this.timeout(60000);
      await expectInvalid('/a//b', ['ab.txt']);
    });

    it('"/./a" ("." component) is not followed even though lower a exists', async function () {
      this.timeout(60000);
      await expectInvalid('/./a', ['b']);
    });

    it('"/real/dir/" (trailing slash: an empty last component, invalid for the kernel too)', async function () {
      this.timeout(60000);
      await expectInvalid('/real/dir/', ['file', 'sub']);
    });

    it('"." (relative, the directory itself)', async function () {
      this.timeout(60000);
      await expectInvalid('.', ['real', 'a', 'keep.txt']);
    });

    it('an empty value is invalid, as kernel overlayfs has it ("invalid redirect"): EIO, not a merge', async function () {
      this.timeout(60000);
      // With a lower directory of the same name, following nothing would merge it in; the kernel
      // (6.x ovl_get_redirect_xattr) rejects a zero-length redirect instead.
      makeTree(lower, { 'bad/lowerfile': 'l' });
      await expectInvalid('', ['lowerfile']);
    });
  });

  it('a directory with an invalid redirect does not make its parent unlistable (kernel overlayfs lists it)', async function () {
    this.timeout(60000);
    makeTree(upper, { 'bad/own': 'mine', 'sib.txt': 'sibling' });
    setRedirect(join(upper, 'bad'), '/../../../../etc');
    await mount([lower]);
    const [root, sib, bad] = await ops([
      ['ls', mnt],
      ['read', join(mnt, 'sib.txt')],
      ['ls', join(mnt, 'bad')],
    ]);
    assert.equal(bad, 'EIO', `bad answers ${JSON.stringify(bad).slice(0, 300)}`);
    assert.equal(sib, 'sibling');
    assert.ok(Array.isArray(root), `the mount's root lists (got ${JSON.stringify(root)})`);
    for (const n of ['sib.txt', 'keep.txt', 'real', 'a']) assert.ok((root as string[]).includes(n), `${n} listed: ${JSON.stringify(root)}`);
  });

  it('a valid absolute redirect through a lower symlink ("/root/etc", lower root -> /) finds nothing: no /etc names', async function () {
    this.timeout(60000);
    fs.symlinkSync('/', join(lower, 'root'));
    fs.symlinkSync('../outside', join(lower, 'out'));
    makeTree(upper, { 'd/own': 'mine', 'e/own': 'mine' });
    setRedirect(join(upper, 'd'), '/root/etc');
    setRedirect(join(upper, 'e'), '/out');
    age(s.root);
    const before = untouched();
    await mount([lower]);
    const [d, e, passwd] = await ops([
      ['ls', join(mnt, 'd')],
      ['ls', join(mnt, 'e')],
      ['read', join(mnt, 'd/passwd')],
    ]);
    assert.deepEqual(d, ['own'], `the redirected directory shows its upper contents only, not: ${JSON.stringify(d).slice(0, 300)}`);
    assert.deepEqual(e, ['own'], `a redirect through a symlink to a tree beside the layer shows nothing of it, not: ${JSON.stringify(e)}`);
    assert.equal(passwd, 'ENOENT');
    for (const daemon of daemons.splice(0)) await daemon.stop();
    assert.deepEqual(untouched(), before);
  });

  it('positive controls: valid redirects inside the layers still work ("/real/dir" absolute, "real" relative)', async function () {
    this.timeout(60000);
    makeTree(upper, { 'renamed/own': 'mine', 'renamed2/own2': 'mine2' });
    setRedirect(join(upper, 'renamed'), '/real/dir');
    setRedirect(join(upper, 'renamed2'), 'real');
    const d = await mount([lower]);
    const [abs, rel, file] = await ops([
      ['ls', join(mnt, 'renamed')],
      ['ls', join(mnt, 'renamed2')],
      ['read', join(mnt, 'renamed/file')],
    ]);
    assert.deepEqual(abs, ['file', 'own', 'sub']);
    assert.deepEqual(rel, ['dir', 'own2']);
    assert.equal(file, 'lower file');
    assert.deepEqual(
      d
        .stderr()
        .split('\n')
        .filter((l) => /redirect/i.test(l)),
      [],
      'no complaint about valid redirects',
    );
  });

  describe('user.overlay.redirect on a root mount is plain user data', () => {
    let user: TestUser;
    before(async () => {
      user = await createUser();
    });
    after(() => removeUser(user));

    it('set on the host by the owner of an upper directory, it is not followed and reads back as data', async function () {
      this.timeout(60000);
      makeTree(upper, { 'mine/own': 'mine' });
      fs.chownSync(join(upper, 'mine'), user.uid, user.gid);
      // As the user could do it: on their own directory, on the host.
      const set = await user.run(['setfattr', '-n', 'user.overlay.redirect', '-v', '/real/dir', join(upper, 'mine')]);
      assert.equal(set.code, 0, set.stderr);
      makeTree(upper, { 'rel/own': 'mine' });
      setRedirect(join(upper, 'rel'), 'real', 'user');
      await mount([lower]);
      const [mine, rel, value] = await ops([
        ['ls', join(mnt, 'mine')],
        ['ls', join(mnt, 'rel')],
        ['getxattr', join(mnt, 'mine'), 'user.overlay.redirect'],
      ]);
      assert.deepEqual(mine, ['own'], 'user.overlay.redirect /real/dir was followed on a root mount');
      assert.deepEqual(rel, ['own'], 'user.overlay.redirect "real" was followed on a root mount');
      assert.equal(value, '/real/dir', 'user.overlay.redirect reads back through the mount as user data');
    });
  });

  describe('a redirect in a lower above another lower (lowerdir=L1:L2)', () => {
    it('an invalid one pointing outside answers EIO; L2 and the outside tree do not show', async function () {
      this.timeout(60000);
      makeTree(lower, { 'm/l1file': '1' });
      makeTree(lower2, { 'm/l2file': '2', 'real2/r2file': 'r2' });
      setRedirect(join(lower, 'm'), '/../outside');
      age(s.root);
      const before = untouched();
      const d = await mount([lower, lower2]);
      const [st, list, secret, keep] = await ops([
        ['stat', join(mnt, 'm')],
        ['ls', join(mnt, 'm')],
        ['read', join(mnt, 'm/secret.txt')],
        ['read', join(mnt, 'keep.txt')],
      ]);
      assert.ok(!(Array.isArray(list) && list.includes('secret.txt')), `the outside tree listed through m: ${JSON.stringify(list).slice(0, 300)}`);
      assert.notEqual(secret, 'outside secret');
      assert.equal(st, 'EIO');
      assert.equal(list, 'EIO');
      assert.equal(keep, 'keep');
      const lines = await redirectLines(d);
      assert.equal(lines.length, 1, `one stderr line about the redirect, got: ${JSON.stringify(d.stderr())}`);
      for (const daemon of daemons.splice(0)) await daemon.stop();
      assert.deepEqual(untouched(), before);
    });

    it("an invalid one to the host's /etc, without an upper: EIO, no /etc names", async function () {
      this.timeout(60000);
      makeTree(lower, { 'm/l1file': '1' });
      makeTree(lower2, { 'm/l2file': '2' });
      setRedirect(join(lower, 'm'), '/../../../../../../../../etc');
      await mount([lower, lower2], false);
      const [st, list] = await ops([
        ['stat', join(mnt, 'm')],
        ['ls', join(mnt, 'm')],
      ]);
      for (const leak of HOST_ETC) assert.ok(!(Array.isArray(list) && list.includes(leak)), `host /etc listed: ${JSON.stringify(list).slice(0, 300)}`);
      assert.equal(st, 'EIO');
      assert.equal(list, 'EIO');
    });

    it("positive control: a valid one into L2 merges L2's directory", async function () {
      this.timeout(60000);
      makeTree(lower, { 'm/l1file': '1' });
      makeTree(lower2, { 'real2/r2file': 'r2' });
      setRedirect(join(lower, 'm'), '/real2');
      await mount([lower, lower2]);
      const [list, r2] = await ops([
        ['ls', join(mnt, 'm')],
        ['read', join(mnt, 'm/r2file')],
      ]);
      assert.deepEqual(list, ['l1file', 'r2file']);
      assert.equal(r2, 'r2');
    });
  });
});
