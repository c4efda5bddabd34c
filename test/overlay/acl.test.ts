/**
 * POSIX ACLs as on a local filesystem: the kernel enforces them (FUSE_POSIX_ACL), a directory's
 * default ACL is inherited by what is made in it and takes the place of the umask, also where
 * the new object replaces a whiteout (built in the work directory), with set-group-ID
 * directories (xfstests generic/444), and setting an ACL as a user outside the file's group
 * clears set-group-ID.
 */
import assert from 'assert/strict';
import * as fs from 'fs';
import { join } from 'path';
import { Scratch } from '../helpers/ovshift';
import { run, sh, type RunResult } from '../helpers/proc';

/** Runs `cmd` as uid `uid` with group `gid` and no supplementary groups, umask 022. */
function as(uid: number, gid: number, cmd: string): Promise<RunResult> {
  return run('setpriv', [`--reuid=${uid}`, `--regid=${gid}`, '--clear-groups', 'sh', '-c', `umask 022; ${cmd}`]);
}

function modeOf(path: string): string {
  return (fs.statSync(path).mode & 0o7777).toString(8);
}

async function aclOf(path: string): Promise<string[]> {
  const r = await run('getfacl', ['-n', '--omit-header', '--absolute-names', path]);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.split('\n').filter((l) => l.length > 0);
}

describe('overlay: POSIX ACLs', function () {
  this.timeout(60000);
  let s: Scratch;

  beforeEach(() => {
    s = new Scratch();
    fs.writeFileSync(join(s.lower, 'file'), 'lower\n', { mode: 0o644 });
    fs.mkdirSync(join(s.lower, 'dir'), { mode: 0o755 });
    fs.writeFileSync(join(s.lower, 'dir', 'gone'), 'x');
  });

  afterEach(() => s.dispose());

  it('are enforced: a named user denied cannot read what the mode lets others read, one granted can read what the mode denies', async () => {
    await s.mount();
    const file = join(s.mnt, 'file');
    assert.equal((await as(1234, 1234, `cat ${file}`)).stdout, 'lower\n', 'the mode lets others read');
    await sh(`setfacl -m u:1234:--- ${file}`);
    const denied = await as(1234, 1234, `cat ${file}`);
    assert.notEqual(denied.code, 0);
    assert.match(denied.stderr, /Permission denied/);
    await sh(`chmod 600 ${file} && setfacl -m u:1235:r ${file}`);
    assert.equal((await as(1235, 1235, `cat ${file}`)).stdout, 'lower\n');
    assert.notEqual((await as(1236, 1236, `cat ${file}`)).code, 0, 'still no one else');
  });

  it('noacl: only the mode bits count', async () => {
    await s.mount('noacl');
    const file = join(s.mnt, 'file');
    await sh(`setfacl -m u:1234:--- ${file}`);
    assert.equal((await as(1234, 1234, `cat ${file}`)).stdout, 'lower\n');
  });

  it('without a default ACL the umask applies; with one, the new file and directory inherit it and the umask does not', async () => {
    await s.mount();
    // The default ACL takes its base entries from the mode at the time (755), before the chmod.
    await sh(`mkdir ${s.mnt}/plain ${s.mnt}/inherits && setfacl -d -m u:1234:rwx ${s.mnt}/inherits && chmod 777 ${s.mnt}/plain ${s.mnt}/inherits`);
    const made = await as(1000, 1000, `mkdir ${s.mnt}/plain/d ${s.mnt}/inherits/d && touch ${s.mnt}/plain/f ${s.mnt}/inherits/f`);
    assert.equal(made.code, 0, made.stderr);
    assert.equal(modeOf(join(s.mnt, 'plain/d')), '755');
    assert.equal(modeOf(join(s.mnt, 'plain/f')), '644');
    assert.equal(modeOf(join(s.mnt, 'inherits/d')), '775');
    assert.equal(modeOf(join(s.mnt, 'inherits/f')), '664');
    assert.ok((await aclOf(join(s.mnt, 'inherits/f'))).includes('user:1234:rwx\t#effective:rw-'), 'the named entry, limited by the mask');
    const dirAcl = await aclOf(join(s.mnt, 'inherits/d'));
    assert.ok(dirAcl.includes('user:1234:rwx') && dirAcl.includes('default:user:1234:rwx'), dirAcl.join(' / '));
  });

  it('a file or directory made where a lower one was removed (a whiteout) inherits the default ACL too', async () => {
    await s.mount();
    const dir = join(s.mnt, 'dir');
    await sh(`setfacl -d -m u:1234:rwx ${dir} && chmod 777 ${dir} && rm ${dir}/gone`);
    const made = await as(1000, 1000, `touch ${dir}/gone && rm ${dir}/gone && mkdir ${dir}/gone`);
    assert.equal(made.code, 0, made.stderr);
    assert.equal(modeOf(join(dir, 'gone')), '775');
    assert.ok((await aclOf(join(dir, 'gone'))).includes('default:user:1234:rwx'));
    await sh(`rmdir ${dir}/gone`);
    assert.equal((await as(1000, 1000, `touch ${dir}/gone`)).code, 0);
    assert.equal(modeOf(join(dir, 'gone')), '664');
    assert.ok((await aclOf(join(dir, 'gone'))).includes('user:1234:rwx\t#effective:rw-'));
  });

  it('a directory made in a set-group-ID directory with a default ACL is set-group-ID and group-writable (generic/444)', async () => {
    await s.mount();
    const dir = join(s.mnt, 'sgid');
    await sh(`mkdir ${dir} && setfacl -d -m u:101:rwx ${dir} && chown 100:100 ${dir} && chmod 2755 ${dir}`);
    assert.equal((await as(100, 100, `mkdir ${dir}/sub1`)).code, 0);
    assert.equal((await as(100, 101, `mkdir ${dir}/sub2`)).code, 0);
    assert.equal(modeOf(join(dir, 'sub1')), '2775');
    assert.equal(modeOf(join(dir, 'sub2')), '2775');
  });

  it('setting an access ACL as the owner outside the file group clears set-group-ID', async () => {
    await s.mount();
    const file = join(s.mnt, 'sgidfile');
    await sh(`touch ${file} && chown 1234:0 ${file} && chmod 2775 ${file}`);
    const set = await as(1234, 1234, `setfacl -m u:1235:r ${file}`);
    assert.equal(set.code, 0, set.stderr);
    assert.equal(modeOf(file), '775');
  });
});
