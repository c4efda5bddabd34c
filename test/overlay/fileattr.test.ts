/**
 * Inode flags through the mount (chattr, lsattr: FS_IOC_GETFLAGS/SETFLAGS, which the kernel
 * forwards as ioctls): set on the upper object, a lower one copied up first, and permitted only
 * to those a local filesystem permits.
 */
import assert from 'assert/strict';
import * as fs from 'fs';
import { join } from 'path';
import { Scratch } from '../helpers/ovshift';
import { run, sh } from '../helpers/proc';
import { makeTree } from '../helpers/tree';

async function flagsOf(path: string, dir = false): Promise<string> {
  const r = await run('lsattr', dir ? ['-d', path] : [path]);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.split(' ')[0]!;
}

describe('overlay: inode flags (chattr, lsattr)', function () {
  this.timeout(30000);
  let s: Scratch;

  beforeEach(() => {
    s = new Scratch();
    makeTree(s.lower, { lower: 'lower\n' });
  });

  afterEach(async () => {
    // Immutable files would keep the tree from being removed.
    await run('chattr', ['-R', '-i', '-a', s.upper]);
    await s.dispose();
  });

  it('sets and clears immutable and append-only, which then refuse what they refuse on a local filesystem', async () => {
    await s.mount();
    const f = join(s.mnt, 'f');
    const d = join(s.mnt, 'd');
    await sh(`echo a > ${f} && mkdir ${d} && chattr +i ${f} && chattr +a ${d}`);
    assert.match(await flagsOf(f), /i/);
    assert.match(await flagsOf(d, true), /a/);
    assert.match(await flagsOf(join(s.upper, 'f')), /i/, 'on the upper file itself');
    assert.throws(() => fs.appendFileSync(f, 'b'), { code: 'EPERM' });
    assert.throws(() => fs.unlinkSync(f), { code: 'EPERM' });
    // A non-empty directory in an append-only one: EPERM before ENOTEMPTY (generic/079).
    await sh(`chattr -a ${d} && mkdir ${d}/full && touch ${d}/full/x && chattr +a ${d}`);
    assert.throws(() => fs.rmdirSync(join(d, 'full')), { code: 'EPERM' });
    await sh(`chattr -i ${f} && echo b >> ${f} && chattr -a ${d}`);
    assert.equal(fs.readFileSync(f, 'utf8'), 'a\nb\n');
    assert.doesNotMatch(await flagsOf(f), /i/);
  });

  it('shows a lower file with no flags, and copies it up to set one', async () => {
    await s.mount();
    const f = join(s.mnt, 'lower');
    assert.doesNotMatch(await flagsOf(f), /[iaA]/);
    assert.ok(!fs.existsSync(join(s.upper, 'lower')), 'reading flags copies nothing up');
    await sh(`chattr +A ${f}`);
    assert.match(await flagsOf(f), /A/);
    assert.match(await flagsOf(join(s.upper, 'lower')), /A/);
    assert.doesNotMatch(await flagsOf(join(s.lower, 'lower')), /A/);
  });

  it('refuses immutable to an unprivileged owner, and any flag to someone else', async () => {
    await s.mount();
    const f = join(s.mnt, 'f');
    await sh(`touch ${f} && chown 1000:1000 ${f}`);
    const as = (uid: number, flag: string): Promise<{ code: number | null; stderr: string }> =>
      run('setpriv', [`--reuid=${uid}`, `--regid=${uid}`, '--clear-groups', 'chattr', flag, f]);
    assert.match((await as(1000, '+i')).stderr, /Operation not permitted/);
    assert.match((await as(1001, '+A')).stderr, /Operation not permitted/);
    assert.equal((await as(1000, '+A')).code, 0, 'the owner sets an ordinary flag');
    assert.doesNotMatch(await flagsOf(f), /i/);
  });

  it('moves the ctime when a flag is set, as stat shows at once (generic/277)', async () => {
    await s.mount();
    const f = join(s.mnt, 'f');
    fs.writeFileSync(f, 'x');
    const before = fs.statSync(f).ctimeMs;
    await new Promise((r) => setTimeout(r, 20));
    await sh(`chattr +A ${f}`);
    assert.ok(fs.statSync(f).ctimeMs > before, 'a new ctime');
    assert.equal(fs.statSync(f).ctimeMs, fs.statSync(join(s.upper, 'f')).ctimeMs, "the upper file's");
  });
});
