import assert from 'assert/strict';
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import { join, resolve } from 'path';
import { Scratch, controlDirsMadeBy, type Daemon } from '../helpers/ovshift';
import { reachableOvshift } from '../helpers/reachable';
import { run } from '../helpers/proc';
import { makeTree } from '../helpers/tree';

const MAP = 'uidmapping=0:100000:65536,gidmapping=0:100000:65536';
const USERNS = resolve(__dirname, '..', '..', '..', 'test', 'helpers', 'userns.py');

function owner(p: string): string {
  const st = fs.lstatSync(p);
  return `${st.uid}:${st.gid}`;
}

/** Runs a command as a real unprivileged caller with these ids. */
function as(uid: number, gid: number, cmd: string[]): ReturnType<typeof run> {
  return run('setpriv', [`--reuid=${uid}`, `--regid=${gid}`, '--clear-groups', ...cmd]);
}

/** vfs_cap_data revision 3: magic|flags, permitted lo/hi, inheritable lo/hi, rootid. */
function capV3(rootid: number): string {
  const b = Buffer.alloc(24);
  b.writeUInt32LE(0x03000001, 0);
  b.writeUInt32LE(1 << 10, 4); // CAP_NET_BIND_SERVICE
  b.writeUInt32LE(rootid, 20);
  return `0x${b.toString('hex')}`;
}

describe('uid/gid shift', function () {
  this.timeout(60000);
  let s: Scratch;
  let d: Daemon | undefined;

  beforeEach(() => {
    s = new Scratch();
    makeTree(s.lower, { 'etc/passwd': 'root', 'home/user/.profile': 'p', stray: 's', 'shared/.keep': '' });
    fs.chownSync(join(s.lower, 'home/user'), 1000, 1000);
    fs.chownSync(join(s.lower, 'home/user/.profile'), 1000, 1000);
    fs.chownSync(join(s.lower, 'stray'), 70000, 70001);
    fs.chmodSync(join(s.lower, 'home'), 0o755);
    fs.chmodSync(join(s.lower, 'shared'), 0o2777);
    fs.chownSync(join(s.lower, 'shared'), 0, 100);
  });

  // The daemon started by a user namespace's root (host uid 100000) makes its own in /tmp.
  after(controlDirsMadeBy([100000]));

  afterEach(async () => {
    await d?.stop();
    d = undefined;
    s.remove();
  });

  it('shows layer owners as view owners, unmapped ones as the overflow id', async () => {
    d = await s.mount(MAP);
    assert.equal(owner(join(s.mnt, 'etc/passwd')), '100000:100000');
    assert.equal(owner(join(s.mnt, 'home/user/.profile')), '101000:101000');
    assert.equal(owner(s.mnt), '100000:100000');
    const overflow = fs.readFileSync('/proc/sys/kernel/overflowuid', 'utf8').trim();
    assert.equal(owner(join(s.mnt, 'stray')), `${overflow}:${overflow}`);
  });

  it('stores what view callers create with layer ids, and what callers without a mapping create with the overflow id', async () => {
    d = await s.mount(MAP);
    fs.chmodSync(join(s.upper), 0o755);
    let r = await as(101000, 101000, ['sh', '-c', `echo mine > ${s.mnt}/home/user/new && mkdir ${s.mnt}/home/user/dir`]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(owner(join(s.mnt, 'home/user/new')), '101000:101000');
    assert.equal(owner(join(s.upper, 'home/user/new')), '1000:1000', 'the upper holds layer ids');
    assert.equal(owner(join(s.upper, 'home/user/dir')), '1000:1000');
    // Set-group-ID directory: the new file takes the directory's group.
    r = await as(101000, 101000, ['touch', `${s.mnt}/shared/f`]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(owner(join(s.upper, 'shared/f')), '1000:100');
    assert.equal(owner(join(s.mnt, 'shared/f')), '101000:100100');
    // A caller whose ids are outside the mapping creates as the overflow id, as fuse-overlayfs
    // stores it (the set-group-ID directory still gives its group).
    r = await as(1234, 1234, ['sh', '-c', `echo x > ${s.mnt}/shared/unmapped`]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(owner(join(s.upper, 'shared/unmapped')), '65534:100');
    assert.equal(owner(join(s.mnt, 'shared/unmapped')), '165534:100100');
  });

  it('maps chown targets from view to layer, and refuses ids without a mapping (EOVERFLOW, nothing changed)', async () => {
    d = await s.mount(MAP);
    fs.chownSync(join(s.mnt, 'etc/passwd'), 100005, 100006);
    assert.equal(owner(join(s.upper, 'etc/passwd')), '5:6');
    assert.equal(owner(join(s.mnt, 'etc/passwd')), '100005:100006');
    assert.throws(() => fs.chownSync(join(s.mnt, 'etc/passwd'), 5, 6), { code: 'EOVERFLOW' });
    assert.equal(owner(join(s.upper, 'etc/passwd')), '5:6');
    assert.equal(owner(join(s.lower, 'etc/passwd')), '0:0', 'copy-up kept the layer ids; the lower is untouched');
  });

  it('translates POSIX ACL entries both ways (setfacl/getfacl), unmapped ones read as the overflow id', async () => {
    execFileSync('setfacl', ['-m', 'u:70000:r,g:500:rw', join(s.lower, 'stray')]);
    d = await s.mount(MAP);
    const f = join(s.mnt, 'etc/passwd');
    execFileSync('setfacl', ['-m', 'u:100500:rw,g:100600:r', f]);
    const shown = execFileSync('getfacl', ['-n', '--omit-header', f], { encoding: 'utf8' });
    assert.match(shown, /user:100500:rw-/);
    assert.match(shown, /group:100600:r--/);
    const stored = execFileSync('getfacl', ['-n', '--omit-header', join(s.upper, 'etc/passwd')], { encoding: 'utf8' });
    assert.match(stored, /user:500:rw-/);
    assert.match(stored, /group:600:r--/);
    const refused = await run('setfacl', ['-m', 'u:1234:r', f]);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /Value too large/);
    const lowerAcl = execFileSync('getfacl', ['-n', '--omit-header', join(s.mnt, 'stray')], { encoding: 'utf8' });
    assert.match(lowerAcl, /user:65534:r--/);
    assert.match(lowerAcl, /group:100500:rw-/);
  });

  it('translates a v3 security.capability root id, and hides one whose root has no mapping', async () => {
    // (A v3 capability rooted at 0 is stored as v2 by the kernel; 1000 stays v3.)
    execFileSync('setfattr', ['-n', 'security.capability', '-v', capV3(1000), join(s.lower, 'etc/passwd')]);
    execFileSync('setfattr', ['-n', 'security.capability', '-v', capV3(70000), join(s.lower, 'stray')]);
    d = await s.mount(MAP);
    const seen = execFileSync('getfattr', ['--absolute-names', '-e', 'hex', '-n', 'security.capability', join(s.mnt, 'etc/passwd')], { encoding: 'utf8' });
    assert.match(seen, new RegExp(capV3(101000)));
    const hidden = await run('getfattr', ['--absolute-names', '-n', 'security.capability', join(s.mnt, 'stray')]);
    assert.notEqual(hidden.code, 0);
  });

  it('answers getxattr and stat of an open upper file from the file itself, translated the same, also after a rename', async () => {
    fs.writeFileSync(join(s.upper, 'held'), 'upper bytes');
    execFileSync('setfattr', ['-n', 'security.capability', '-v', capV3(1000), join(s.upper, 'held')]);
    d = await s.mount(MAP);
    const fd = fs.openSync(join(s.mnt, 'held'), 'r');
    try {
      fs.renameSync(join(s.mnt, 'held'), join(s.mnt, 'moved'));
      const seen = execFileSync('getfattr', ['--absolute-names', '-e', 'hex', '-n', 'security.capability', join(s.mnt, 'moved')], { encoding: 'utf8' });
      assert.match(seen, new RegExp(capV3(101000)));
      assert.equal(fs.statSync(join(s.mnt, 'moved')).size, 'upper bytes'.length);
      assert.equal(fs.fstatSync(fd).uid, fs.statSync(join(s.upper, 'moved')).uid + 100000);
      const none = await run('getfattr', ['--absolute-names', '-n', 'user.none', join(s.mnt, 'moved')]);
      assert.notEqual(none.code, 0);
    } finally {
      fs.closeSync(fd);
    }
  });

  it('leaves permission checks to the kernel on the shown owners, and clears set-id bits on a write by a non-owner', async () => {
    fs.writeFileSync(join(s.lower, 'tool'), 'binary');
    fs.chmodSync(join(s.lower, 'tool'), 0o6777);
    fs.writeFileSync(join(s.lower, 'private'), 'secret');
    fs.chmodSync(join(s.lower, 'private'), 0o600);
    d = await s.mount(MAP);
    const owns = await as(100000, 100000, ['cat', join(s.mnt, 'private')]);
    assert.equal(owns.stdout, 'secret', 'the view owner may read');
    const other = await as(101000, 101000, ['cat', join(s.mnt, 'private')]);
    assert.notEqual(other.code, 0, 'another view user may not');
    const w = await as(101000, 101000, ['sh', '-c', `echo x >> ${s.mnt}/tool`]);
    assert.equal(w.code, 0, w.stderr);
    assert.equal(fs.statSync(join(s.mnt, 'tool')).mode & 0o7777, 0o777);
  });

  it('shows the same as fuse-overlayfs for the same mapping string', async () => {
    d = await s.mount(MAP);
    const fo = s.dir('fo-mnt');
    const foUpper = s.dir('fo-upper');
    const foWork = s.dir('fo-work');
    execFileSync('fuse-overlayfs', ['-o', `lowerdir=${s.lower},upperdir=${foUpper},workdir=${foWork},${MAP}`, fo]);
    try {
      for (const rel of ['', 'etc/passwd', 'home/user', 'home/user/.profile', 'stray', 'shared']) {
        assert.equal(owner(join(s.mnt, rel)), owner(join(fo, rel)), rel || '/');
      }
    } finally {
      execFileSync('umount', [fo]);
    }
  });

  it('works mounted inside a user namespace by its root, with callers in namespace ids', async () => {
    // The namespace maps its ids 0..65535 onto host 100000..; the lower is stored that way.
    for (const p of ['', 'etc', 'etc/passwd']) fs.chownSync(join(s.lower, p), 100000, 100000);
    fs.chownSync(join(s.lower, 'home/user'), 101000, 101000);
    for (const p of [s.root, s.upper, s.work, s.mnt]) fs.chownSync(p, 100000, 100000);
    fs.chmodSync(s.root, 0o755);
    const script = [
      'set -e',
      `${reachableOvshift()} -o lowerdir=${s.lower},upperdir=${s.upper},workdir=${s.work},uidmapping=1000:2000:1,gidmapping=1000:2000:1 ${s.mnt}`,
      `stat -c %u:%g ${s.mnt}/etc/passwd ${s.mnt}/home/user`,
      `setpriv --reuid=2000 --regid=2000 --clear-groups touch ${s.mnt}/home/user/by-ns-user`,
      `stat -c %u:%g ${s.upper}/home/user/by-ns-user`,
      `umount ${s.mnt}`,
    ].join('\n');
    const r = await run('python3', [USERNS, '100000', '65536', '--', 'sh', '-c', script]);
    assert.equal(r.code, 0, r.stderr);
    // Namespace root (0) is outside the mapping given: the overflow id; 1000 shows as 2000.
    assert.equal(r.stdout, '65534:65534\n2000:2000\n1000:1000\n');
    assert.equal(owner(join(s.upper, 'home/user/by-ns-user')), '101000:101000', "on the host: the namespace's 1000");
  });
});
