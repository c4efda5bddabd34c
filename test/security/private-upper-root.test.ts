/**
 * Issue 11: without an upperdir the daemon makes a private tmpfs upper. Its root directory is
 * the mount's root, so it must carry the topmost lower root's mode, owner and ACL, as kernel
 * overlayfs shows the top layer's root; a world-writable root (0777, no sticky bit) let any user
 * of a shared root mount delete or replace /bin, or create files at the top.
 */
import assert from 'assert/strict';
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import { join } from 'path';
import { Scratch, startDaemon, type Daemon } from '../helpers/ovshift';
import { makeTree, snapshot } from '../helpers/tree';
import { createUser, removeUser, type TestUser } from '../helpers/users';
import { ops } from './probe';

/** getfacl's answer without its "# file:" line (the path differs). */
function acl(p: string): string {
  return execFileSync('getfacl', ['-p', p], { encoding: 'utf8' })
    .split('\n')
    .filter((l) => !l.startsWith('# file:'))
    .join('\n');
}

describe("security: the root of a private-upper mount is the top lower root's (issue 11)", function () {
  this.timeout(60000);
  let s: Scratch;
  let daemons: Daemon[];
  let user: TestUser;
  let other: TestUser;

  before(async () => {
    user = await createUser();
    other = await createUser();
  });

  after(async () => {
    await removeUser(user);
    await removeUser(other);
  });

  beforeEach(() => {
    s = new Scratch('ovshift-privroot-');
    daemons = [];
  });

  afterEach(async () => {
    for (const d of daemons.splice(0).reverse()) await d.stop();
    s.remove();
  });

  /** A mount without upperdir: the daemon's private tmpfs upper. */
  async function mount(lowers: string[]): Promise<Daemon> {
    const d = await startDaemon(['-o', `lowerdir=${lowers.join(':')}`, s.mnt], s.mnt);
    daemons.push(d);
    return d;
  }

  it('lower root 0700 root:root: the mount root is 0700 root:root and another user cannot list it', async function () {
    this.timeout(60000);
    makeTree(s.lower, { 'bin/sh': 'sh', secret: 's' });
    fs.chmodSync(s.lower, 0o700);
    await mount([s.lower]);
    assert.deepEqual(
      await ops(
        [
          ['ls', s.mnt],
          ['read', join(s.mnt, 'secret')],
        ],
        user,
      ),
      ['EACCES', 'EACCES'],
    );
    assert.deepEqual(await ops([['mode', s.mnt]]), ['700 0:0']);
  });

  it('lower root 0755 owned by a user: the mount root is 0755 with that owner', async function () {
    this.timeout(60000);
    makeTree(s.lower, { f: 'f' });
    fs.chmodSync(s.lower, 0o755);
    fs.chownSync(s.lower, user.uid, user.gid);
    await mount([s.lower]);
    // The owner may write at the top; another user may not.
    assert.deepEqual(await ops([['create', join(s.mnt, 'byother')]], other), ['EACCES']);
    assert.deepEqual(await ops([['create', join(s.mnt, 'byowner')]], user), ['ok']);
    assert.deepEqual(await ops([['mode', s.mnt]]), [`755 ${user.uid}:${user.gid}`]);
  });

  it('lower root 0755 root: another user cannot delete, move or replace bin, nor create at the top', async function () {
    this.timeout(60000);
    makeTree(s.lower, { 'bin/sh': '#!/bin/true\n', etcfile: 'e', 'tmp/keep': 'k', srv: { dir: true } });
    fs.chmodSync(s.lower, 0o755);
    fs.chmodSync(join(s.lower, 'tmp'), 0o1777);
    const lowerBefore = snapshot(s.lower);
    const d = await mount([s.lower]);
    const m = s.mnt;
    const res = await ops(
      [
        ['mkdir', join(m, 'tmp/evil')], // where the user may write: the control
        ['create', join(m, 'tmp/evil/sh')],
        ['rename', join(m, 'bin'), join(m, 'bin.old')], // a rename in the root needs only the root's w
        ['rename', join(m, 'tmp/evil'), join(m, 'bin')],
        ['rmdir', join(m, 'srv')],
        ['unlink', join(m, 'etcfile')],
        ['rename', join(m, 'tmp/evil/sh'), join(m, 'etcfile')],
        ['create', join(m, 'newfile')],
        ['mkdir', join(m, 'newdir')],
        ['symlink', join(m, 'newlink'), '/tmp'],
      ],
      user,
    );
    assert.deepEqual(res, ['ok', 'ok', 'EACCES', 'EACCES', 'EACCES', 'EACCES', 'EACCES', 'EACCES', 'EACCES', 'EACCES']);
    const after = await ops([
      ['ls', m],
      ['ls', join(m, 'bin')],
      ['read', join(m, 'bin/sh')],
      ['read', join(m, 'etcfile')],
    ]);
    assert.deepEqual(after, [['bin', 'etcfile', 'srv', 'tmp'], ['sh'], '#!/bin/true\n', 'e']);
    assert.deepEqual(await ops([['mode', m]]), ['755 0:0']);
    await d.stop();
    assert.deepEqual(snapshot(s.lower), lowerBefore, 'the lower changed');
  });

  it('a lower root with an access ACL shows the same ACL through the mount (getfacl)', async function () {
    this.timeout(60000);
    makeTree(s.lower, { f: 'f' });
    fs.chmodSync(s.lower, 0o750);
    execFileSync('setfacl', ['-m', `u:${user.name}:rwx`, s.lower]);
    const want = acl(s.lower);
    assert.match(want, new RegExp(`user:${user.name}:rwx`));
    await mount([s.lower]);
    assert.equal(acl(s.mnt), want);
    // The mode bits (group class = the ACL mask) keep another user out.
    assert.deepEqual(
      await ops(
        [
          ['ls', s.mnt],
          ['create', join(s.mnt, 'byother')],
        ],
        other,
      ),
      ['EACCES', 'EACCES'],
    );
  });

  describe("two lowers (lowerdir=A:B): A's root decides", () => {
    it('A 0700 root over B 0777 owned by a user: 0700 root:root, not listable by the user', async function () {
      this.timeout(60000);
      const a = s.dir('A');
      const b = s.dir('B');
      makeTree(a, { fa: 'a' });
      makeTree(b, { fb: 'b' });
      fs.chmodSync(a, 0o700);
      fs.chmodSync(b, 0o777);
      fs.chownSync(b, user.uid, user.gid);
      await mount([a, b]);
      assert.deepEqual(
        await ops(
          [
            ['ls', s.mnt],
            ['create', join(s.mnt, 'x')],
          ],
          user,
        ),
        ['EACCES', 'EACCES'],
      );
      assert.deepEqual(
        await ops([
          ['mode', s.mnt],
          ['ls', s.mnt],
        ]),
        ['700 0:0', ['fa', 'fb']],
      );
    });

    it("A 0755 owned by a user over B 0700 root: 0755 with A's owner", async function () {
      this.timeout(60000);
      const a = s.dir('A');
      const b = s.dir('B');
      makeTree(a, { fa: 'a' });
      makeTree(b, { fb: 'b' });
      fs.chmodSync(a, 0o755);
      fs.chownSync(a, user.uid, user.gid);
      fs.chmodSync(b, 0o700);
      await mount([a, b]);
      assert.deepEqual(await ops([['create', join(s.mnt, 'byother')]], other), ['EACCES']);
      assert.deepEqual(
        await ops(
          [
            ['ls', s.mnt],
            ['create', join(s.mnt, 'byowner')],
          ],
          user,
        ),
        [['fa', 'fb'], 'ok'],
      );
      assert.deepEqual(await ops([['mode', s.mnt]]), [`755 ${user.uid}:${user.gid}`]);
    });

    it("A with an ACL over B without: A's ACL shows", async function () {
      this.timeout(60000);
      const a = s.dir('A');
      const b = s.dir('B');
      makeTree(a, { fa: 'a' });
      makeTree(b, { fb: 'b' });
      fs.chmodSync(a, 0o700);
      execFileSync('setfacl', ['-m', `u:${user.name}:rx`, a]);
      await mount([a, b]);
      assert.equal(acl(s.mnt), acl(a));
      assert.deepEqual(await ops([['ls', s.mnt]], other), ['EACCES']);
    });
  });
});
