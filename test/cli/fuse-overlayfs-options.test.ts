/**
 * Every option fuse-overlayfs 1.10 documents or containers-storage (podman 4.3) passes to its
 * mount program, through real mounts: what a user of the mount observes, side by side with
 * fuse-overlayfs on the same tree where both have the behaviour.
 */
import assert from 'assert/strict';
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import { randomBytes } from 'crypto';
import { join, resolve } from 'path';
import { connectionId } from '../../src/fuse/mount';
import { OVSHIFT, Scratch, controlDirsMadeBy, startDaemon, type Daemon } from '../helpers/ovshift';
import { run, type RunResult } from '../helpers/proc';
import { reachableOvshift } from '../helpers/reachable';
import { hasFuseOverlayfs } from '../helpers/fuse-overlayfs';

const LABEL = 'system_u:object_r:container_file_t:s0:c1,c2';
/** As containers-storage writes the maps: a ':' before every range. */
const MAP = 'uidmapping=:0:100000:65536,gidmapping=:0:100000:65536';
const NOBODY = 65534;
const USERNS = resolve(__dirname, '..', '..', '..', 'test', 'helpers', 'userns.py');

function owner(p: string): string {
  const st = fs.lstatSync(p);
  return `${st.uid}:${st.gid}`;
}

/** Runs a command as a caller with these ids and no supplementary groups. */
function as(uid: number, cmd: string[]): Promise<RunResult> {
  return run('setpriv', [`--reuid=${uid}`, `--regid=${uid}`, '--clear-groups', ...cmd]);
}

/** The flags field of a mount's line in /proc/self/mountinfo ("rw,nosuid,nodev,…"). */
function mountFlagsOf(mnt: string): string[] {
  const line = fs
    .readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .find((l) => l.split(' ')[4] === mnt);
  assert.ok(line, `${mnt} is not mounted`);
  return line.split(' ')[5]!.split(',');
}

/**
 * A small ext4 on a loop device, for an upper whose syncs can be counted: with a 10-minute
 * journal commit interval, no lazy init and no forced allocation on replace, nothing reaches
 * the device while a test runs unless something syncs.
 */
class LoopDisk {
  private constructor(
    readonly dir: string,
    private readonly device: string,
  ) {}

  static async make(root: string, name: string): Promise<LoopDisk> {
    const image = join(root, `${name}.img`);
    const dir = join(root, name);
    fs.mkdirSync(dir);
    fs.writeFileSync(image, '');
    fs.truncateSync(image, 64 * 1024 * 1024);
    execFileSync('mkfs.ext4', ['-q', '-F', '-E', 'lazy_itable_init=0,lazy_journal_init=0', image], { timeout: 20000 });
    execFileSync('mount', ['-o', 'loop,commit=600,noatime,noauto_da_alloc', image, dir], { timeout: 20000 });
    const device = execFileSync('findmnt', ['-n', '-o', 'SOURCE', dir], { encoding: 'utf8' }).trim();
    return new LoopDisk(dir, device);
  }

  /** Write and flush requests the device has completed (/sys/block/loopN/stat fields 5 and 16). */
  requests(): number {
    const fields = fs
      .readFileSync(`/sys/block/${this.device.replace('/dev/', '')}/stat`, 'utf8')
      .trim()
      .split(/\s+/)
      .map(Number);
    return fields[4]! + fields[15]!;
  }

  async unmount(): Promise<void> {
    if ((await run('umount', [this.dir])).code !== 0) await run('umount', ['-l', this.dir]);
  }
}

/**
 * Requests reaching the disk while fsync, fdatasync and a directory fsync run through the mount
 * on freshly written data. Up to `rounds` tries, the fewest counted: an unrelated sync(1)
 * elsewhere on the host may land in one, never in all.
 */
function requestsDuringSyncs(disk: LoopDisk, mnt: string, rounds: number): number {
  let fewest = Infinity;
  for (let i = 0; i < rounds && fewest > 0; i++) {
    const file = join(mnt, `data-${i}`);
    fs.writeFileSync(file, randomBytes(64 * 1024));
    const before = disk.requests();
    const fd = fs.openSync(file, 'r+');
    fs.fsyncSync(fd);
    fs.fdatasyncSync(fd);
    fs.closeSync(fd);
    const dir = fs.openSync(mnt, 'r');
    fs.fsyncSync(dir);
    fs.closeSync(dir);
    fewest = Math.min(fewest, disk.requests() - before);
  }
  return fewest;
}

describe('fuse-overlayfs options', function () {
  this.timeout(60000);
  let s: Scratch;
  const daemons: Daemon[] = [];
  const fuseOverlayfsMounts: string[] = [];
  const disks: LoopDisk[] = [];

  beforeEach(() => {
    s = new Scratch('ovshift-fovl-opts-');
    fs.writeFileSync(join(s.lower, 'file'), 'lower\n');
  });

  afterEach(async () => {
    for (const d of daemons.splice(0)) await d.stop();
    for (const mnt of fuseOverlayfsMounts.splice(0)) {
      if ((await run('umount', [mnt])).code !== 0) await run('umount', ['-l', mnt]);
    }
    for (const disk of disks.splice(0)) await disk.unmount();
    if ((await connectionId(s.mnt)) !== undefined) await run('umount', ['-l', s.mnt]);
    s.remove();
  });

  after(controlDirsMadeBy([NOBODY]));

  async function ovshift(options: string, layers = { upper: s.upper, work: s.work }, mnt = s.mnt): Promise<Daemon> {
    const d = await startDaemon(['-o', `lowerdir=${s.lower},upperdir=${layers.upper},workdir=${layers.work}${options ? `,${options}` : ''}`, mnt], mnt);
    daemons.push(d);
    return d;
  }

  /** fuse-overlayfs on the same lower, with its own upper, work dir and mountpoint under `name`. */
  function fuseOverlayfs(name: string, options: string, base = s.root): string {
    const dir = (sub: string): string => {
      const p = join(base, `${name}-${sub}`);
      fs.mkdirSync(p, { recursive: true });
      return p;
    };
    const mnt = dir('mnt');
    execFileSync('fuse-overlayfs', ['-o', `lowerdir=${s.lower},upperdir=${dir('upper')},workdir=${dir('work')}${options ? `,${options}` : ''}`, mnt], {
      stdio: 'ignore',
      timeout: 10000,
    });
    fuseOverlayfsMounts.push(mnt);
    return mnt;
  }

  async function disk(name: string): Promise<{ disk: LoopDisk; upper: string; work: string }> {
    const d = await LoopDisk.make(s.root, name);
    disks.push(d);
    const upper = join(d.dir, 'upper');
    const work = join(d.dir, 'work');
    fs.mkdirSync(upper);
    fs.mkdirSync(work);
    return { disk: d, upper, work };
  }

  it("volatile and fsync=0: fsync, fdatasync and a directory fsync succeed and nothing reaches the upper's disk; without them, it does", async () => {
    for (const [options, syncs] of [
      ['', true],
      ['volatile', false],
      ['fsync=0', false],
      ['fsync=1,volatile', false],
      ['fsync=1', true],
    ] as const) {
      const { disk: upperDisk, upper, work } = await disk(`disk-${disks.length}`);
      const d = await ovshift(options, { upper, work });
      const requests = requestsDuringSyncs(upperDisk, s.mnt, syncs ? 1 : 3);
      if (syncs) assert.ok(requests > 0, `-o ${options || '(none)'}: the syncs reached the disk`);
      else assert.equal(requests, 0, `-o ${options}: no sync reached the disk`);
      await d.stop();
    }
    if (!hasFuseOverlayfs()) return;
    for (const [options, syncs] of [
      ['', true],
      ['volatile', false],
    ] as const) {
      const { disk: upperDisk } = await disk(`fovl-disk-${disks.length}`);
      const mnt = fuseOverlayfs('fovl', options, upperDisk.dir);
      const requests = requestsDuringSyncs(upperDisk, mnt, syncs ? 1 : 3);
      assert.equal(requests > 0, syncs, `fuse-overlayfs -o ${options || '(none)'}`);
    }
  });

  it('static_nlink: every directory shows one link, as with fuse-overlayfs', async () => {
    for (const sub of ['dir/a', 'dir/b']) fs.mkdirSync(join(s.lower, sub), { recursive: true });
    const dirs = ['', 'dir', 'dir/a'];
    const d = await ovshift('');
    assert.equal(fs.statSync(join(s.mnt, 'dir')).nlink, 4, "without it: the layer's count");
    await d.stop();
    await ovshift('static_nlink');
    assert.deepEqual(
      dirs.map((p) => fs.statSync(join(s.mnt, p)).nlink),
      [1, 1, 1],
    );
    assert.equal(fs.statSync(join(s.mnt, 'file')).nlink, 1);
    if (!hasFuseOverlayfs()) return;
    const fovl = fuseOverlayfs('fovl', 'static_nlink');
    assert.deepEqual(
      dirs.map((p) => fs.statSync(join(fovl, p)).nlink),
      [1, 1, 1],
    );
  });

  it('noxattrs=1: extended attributes are not supported through the mount (EOPNOTSUPP), as with fuse-overlayfs; noxattrs=0 leaves them', async () => {
    execFileSync('setfattr', ['-n', 'user.kept', '-v', 'yes', join(s.lower, 'file')]);
    const probe = async (mnt: string): Promise<string[]> => {
      const f = join(mnt, 'file');
      const results = [
        await run('getfattr', ['--absolute-names', '-n', 'user.kept', f]),
        await run('getfattr', ['--absolute-names', '-d', f]),
        await run('setfattr', ['-n', 'user.new', '-v', '1', f]),
      ];
      return results.map((r) => (r.code === 0 ? 'ok' : /Operation not supported/.test(r.stderr) ? 'EOPNOTSUPP' : r.stderr.trim()));
    };
    let d = await ovshift('noxattrs=0');
    assert.deepEqual(await probe(s.mnt), ['ok', 'ok', 'ok']);
    await d.stop();
    fs.rmSync(s.upper, { recursive: true });
    fs.mkdirSync(s.upper);
    d = await ovshift('noxattrs=1');
    assert.deepEqual(await probe(s.mnt), ['EOPNOTSUPP', 'EOPNOTSUPP', 'EOPNOTSUPP']);
    const removed = await run('setfattr', ['-x', 'user.kept', join(s.mnt, 'file')]);
    assert.match(removed.stderr, /Operation not supported/, 'removal too (fuse-overlayfs 1.10 still removes)');
    assert.equal(execFileSync('getfattr', ['--absolute-names', '--only-values', '-n', 'user.kept', join(s.lower, 'file')], { encoding: 'utf8' }), 'yes');
    if (!hasFuseOverlayfs()) return;
    assert.deepEqual(await probe(fuseOverlayfs('fovl', 'noxattrs=1')), ['EOPNOTSUPP', 'EOPNOTSUPP', 'EOPNOTSUPP']);
  });

  it('noacl: an ACL is stored and shown but not enforced, as by fuse-overlayfs with noacl', async () => {
    fs.chmodSync(join(s.lower, 'file'), 0o644);
    const check = async (mnt: string): Promise<void> => {
      const f = join(mnt, 'file');
      execFileSync('setfacl', ['-m', 'u:1234:---', f]);
      assert.match(execFileSync('getfacl', ['-n', '--omit-header', f], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }), /user:1234:---/);
      const read = await as(1234, ['cat', f]);
      assert.equal(read.stdout, 'lower\n', `${mnt}: the mode bits decide`);
    };
    await ovshift('noacl');
    await check(s.mnt);
    if (hasFuseOverlayfs()) await check(fuseOverlayfs('fovl', 'noacl'));
  });

  it('context= with a quoted comma (and fscontext=, defcontext=, rootcontext=) mounts, and no label is applied, as fuse-overlayfs ignores it', async () => {
    const labels = ['context', 'fscontext', 'defcontext', 'rootcontext'].map((k) => `${k}="${LABEL}"`).join(',');
    await ovshift(labels);
    assert.equal(fs.readFileSync(join(s.mnt, 'file'), 'utf8'), 'lower\n');
    const line = fs
      .readFileSync('/proc/self/mountinfo', 'utf8')
      .split('\n')
      .find((l) => l.split(' ')[4] === s.mnt);
    assert.doesNotMatch(line ?? '', /context/);
    if (!hasFuseOverlayfs()) return;
    const fovl = fuseOverlayfs('fovl', `context="${LABEL}"`);
    assert.equal(fs.readFileSync(join(fovl, 'file'), 'utf8'), 'lower\n');
  });

  it('the whole -o string podman 4.3 passes (nodev, volatile, context, uidmapping=:…, xattr_permissions=2) mounts and maps', async () => {
    fs.mkdirSync(join(s.lower, 'etc'));
    await ovshift(`nodev,volatile,context="${LABEL}",${MAP},xattr_permissions=2`);
    assert.equal(owner(join(s.mnt, 'file')), '100000:100000');
    assert.ok(mountFlagsOf(s.mnt).includes('nodev'));
    fs.writeFileSync(join(s.mnt, 'etc/hostname'), 'c1\n');
    fs.chownSync(join(s.mnt, 'etc/hostname'), 100000, 100000);
    assert.equal(owner(join(s.upper, 'etc/hostname')), '0:0');
  });

  it('uidmapping=:0:100000:65536 (a leading colon) maps as 0:100000:65536, as with fuse-overlayfs', async () => {
    fs.writeFileSync(join(s.lower, 'user-file'), '');
    fs.chownSync(join(s.lower, 'user-file'), 1000, 1001);
    await ovshift(MAP);
    assert.deepEqual([owner(join(s.mnt, 'file')), owner(join(s.mnt, 'user-file'))], ['100000:100000', '101000:101001']);
    if (!hasFuseOverlayfs()) return;
    const fovl = fuseOverlayfs('fovl', MAP);
    assert.deepEqual([owner(join(fovl, 'file')), owner(join(fovl, 'user-file'))], ['100000:100000', '101000:101001']);
  });

  it('a create by a caller with no mapping is stored as the overflow id, shows as 65534 in the container, as with fuse-overlayfs', async () => {
    fs.mkdirSync(join(s.lower, 'etc'));
    fs.mkdirSync(join(s.lower, 'tmp'));
    fs.chmodSync(join(s.lower, 'tmp'), 0o1777);
    const create = async (mnt: string): Promise<void> => {
      // podman, as host root (unmapped here), makes /etc/mtab in the container's root.
      fs.symlinkSync('/proc/mounts', join(mnt, 'etc/mtab'));
      const r = await as(1234, ['sh', '-c', `echo x > ${mnt}/tmp/by-1234 && mkdir ${mnt}/tmp/dir-1234`]);
      assert.equal(r.code, 0, r.stderr);
    };
    const made = ['etc/mtab', 'tmp/by-1234', 'tmp/dir-1234'];
    await ovshift(MAP);
    await create(s.mnt);
    assert.deepEqual(
      made.map((p) => owner(join(s.upper, p))),
      made.map(() => `${NOBODY}:${NOBODY}`),
      'stored as the overflow id',
    );
    assert.deepEqual(
      made.map((p) => owner(join(s.mnt, p))),
      made.map(() => '165534:165534'),
      'the overflow id, mapped like any layer id',
    );
    // The container's user namespace maps its 0..65535 onto host 100000..: there, 65534.
    const inside = await run('python3', [USERNS, '100000', '65536', '--', 'stat', '-c', '%u:%g', ...made.map((p) => join(s.mnt, p))]);
    assert.equal(inside.code, 0, inside.stderr);
    assert.equal(inside.stdout, '65534:65534\n'.repeat(made.length));
    if (!hasFuseOverlayfs()) return;
    const fovl = fuseOverlayfs('fovl', MAP);
    await create(fovl);
    assert.deepEqual(
      made.map((p) => owner(join(s.root, 'fovl-upper', p))),
      made.map(() => `${NOBODY}:${NOBODY}`),
    );
    assert.deepEqual(
      made.map((p) => owner(join(fovl, p))),
      made.map(() => '165534:165534'),
    );
  });

  it('a chown to an id with no mapping fails with EOVERFLOW and changes nothing (fuse-overlayfs would store 65534)', async () => {
    await ovshift(MAP);
    assert.throws(() => fs.chownSync(join(s.mnt, 'file'), 1234, 1234), { code: 'EOVERFLOW' });
    assert.throws(() => fs.chownSync(join(s.mnt, 'file'), 100000, 99999), { code: 'EOVERFLOW' });
    assert.equal(owner(join(s.mnt, 'file')), '100000:100000');
    assert.equal(fs.existsSync(join(s.upper, 'file')), false, 'not even copied up');
  });

  it('mounted by root, suid by default: a setuid-root binary copied in runs as root for any user, as with fuse-overlayfs; not with nosuid', async () => {
    const idAs = async (mnt: string): Promise<string> => {
      fs.copyFileSync('/usr/bin/id', join(mnt, 'id'));
      fs.chmodSync(join(mnt, 'id'), 0o4755);
      const r = await as(NOBODY, [join(mnt, 'id'), '-u']);
      assert.equal(r.code, 0, r.stderr);
      return r.stdout.trim();
    };
    let d = await ovshift('');
    assert.equal(mountFlagsOf(s.mnt).includes('nosuid'), false);
    assert.ok(mountFlagsOf(s.mnt).includes('nodev'), 'nodev, as fuse-overlayfs as root');
    assert.equal(await idAs(s.mnt), '0');
    await d.stop();
    fs.rmSync(join(s.upper, 'id'));
    d = await ovshift('nosuid');
    assert.ok(mountFlagsOf(s.mnt).includes('nosuid'));
    assert.equal(await idAs(s.mnt), String(NOBODY));
    if (!hasFuseOverlayfs()) return;
    const fovl = fuseOverlayfs('fovl', '');
    assert.equal(await idAs(fovl), '0');
  });

  it('mounted by another user, always nosuid and nodev, even when asked for suid and dev', async () => {
    fs.copyFileSync('/usr/bin/id', join(s.lower, 'id'));
    fs.chmodSync(join(s.lower, 'id'), 0o4755);
    fs.chmodSync(s.lower, 0o755);
    fs.chownSync(s.mnt, NOBODY, NOBODY);
    const asNobody = `setpriv --reuid=${NOBODY} --regid=${NOBODY} --clear-groups`;
    // A private /dev whose fuse device users may open, as udev sets it up on most systems.
    const script = [
      'set -e',
      'mount -t tmpfs -o mode=0755 none /dev',
      'mknod -m 0666 /dev/null c 1 3; mknod -m 0666 /dev/fuse c 10 229',
      `${asNobody} ${reachableOvshift()} -o lowerdir=${s.lower},ro,suid,dev ${s.mnt}`,
      `grep " ${s.mnt} " /proc/self/mountinfo | cut -d" " -f6`,
      `${asNobody} ${s.mnt}/id -u`,
      `${asNobody} fusermount3 -u ${s.mnt}`,
    ].join('\n');
    const r = await run('unshare', ['-m', '--propagation', 'private', 'sh', '-c', script]);
    assert.equal(r.code, 0, r.stderr);
    const [flags, euid] = r.stdout.trim().split('\n');
    assert.deepEqual(
      ['nosuid', 'nodev'].filter((f) => flags!.split(',').includes(f)),
      ['nosuid', 'nodev'],
      flags,
    );
    assert.equal(euid, String(NOBODY));
  });

  it("timeout=SECS is the kernel cache time for every entry, as fuse-overlayfs's", async () => {
    // With the lower's changes polled (watch=off), what the kernel keeps is as stale as
    // fuse-overlayfs's; watched (the default), a change invalidates it at once.
    const polled = await ovshift('timeout=30,watch=off');
    const f = join(s.mnt, 'file');
    assert.equal(fs.statSync(f).size, 6);
    fs.appendFileSync(join(s.lower, 'file'), 'more\n');
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(fs.statSync(f).size, 6, 'the kernel keeps the attributes for 30 s');
    await polled.stop();
    await ovshift('timeout=30');
    assert.equal(fs.statSync(f).size, 11);
    fs.appendFileSync(join(s.lower, 'file'), 'more\n');
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(fs.statSync(f).size, 16, 'watched: the change invalidates the kept attributes');
    if (!hasFuseOverlayfs()) return;
    fs.writeFileSync(join(s.lower, 'file'), 'lower\n');
    const fovl = fuseOverlayfs('fovl', 'timeout=30');
    assert.equal(fs.statSync(join(fovl, 'file')).size, 6);
    fs.appendFileSync(join(s.lower, 'file'), 'more\n');
    assert.equal(fs.statSync(join(fovl, 'file')).size, 6);
  });

  it('accepts the options without effect here in one mount, which then behaves as without them (no override_stat xattrs)', async () => {
    const noEffect = [
      'noacl',
      'threaded=1',
      'fast_ino=1',
      'writeback=1',
      'plugins=/nonexistent/plugin.so',
      'xattr_permissions=2',
      'splice_read',
      'splice_write',
      'splice_move',
      'kernel_cache',
      'max_write=131072',
      'max_write',
      `fscontext="${LABEL}"`,
    ];
    const d = await startDaemon(['--debug', '-o', `lowerdir=${s.lower},upperdir=${s.upper},workdir=${s.work},${noEffect.join(',')}`, s.mnt], s.mnt);
    daemons.push(d);
    fs.writeFileSync(join(s.mnt, 'new'), 'upper\n');
    fs.chmodSync(join(s.mnt, 'new'), 0o640);
    fs.chownSync(join(s.mnt, 'new'), 12, 34);
    const st = fs.statSync(join(s.upper, 'new'));
    assert.deepEqual([st.uid, st.gid, st.mode & 0o7777], [12, 34, 0o640], 'real owner and mode in the upper');
    const xattrs = execFileSync('getfattr', ['--absolute-names', '-d', '-m', '-', join(s.upper, 'new'), s.upper], { encoding: 'utf8' });
    assert.doesNotMatch(xattrs, /override_stat/);
    assert.match(d.stderr(), /ovshift:/, '--debug logs');
  });

  it('refuses a bad value of a fuse-overlayfs option with one line naming it, before mounting', async () => {
    for (const [opt, message] of [
      ['fsync=2', 'option fsync=2: expected 0 or 1'],
      ['xattr_permissions=5', 'option xattr_permissions=5: expected 0, 1 or 2'],
      ['noxattrs=true', 'option noxattrs=true: expected 0 or 1'],
      [`context="${LABEL}`, `option context="${LABEL}: the double quote is never closed`],
    ]) {
      const r = await run(OVSHIFT, ['-o', `lowerdir=${s.lower},upperdir=${s.upper},workdir=${s.work},${opt}`, s.mnt]);
      assert.equal(r.code, 1, opt);
      assert.equal(r.stderr, `ovshift: ${message}\n`);
      assert.equal(await connectionId(s.mnt), undefined, 'nothing mounted');
    }
  });
});
