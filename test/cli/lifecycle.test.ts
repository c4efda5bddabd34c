import assert from 'assert/strict';
import { chmodSync, chownSync, existsSync, readFileSync, writeFileSync } from 'fs';
import { spawn } from 'child_process';
import { createServer, type AddressInfo } from 'net';
import { join } from 'path';
import { connectionId } from '../../src/fuse/mount';
import { OVSHIFT, Scratch, controlDirsMadeBy, startDaemon, type Daemon } from '../helpers/ovshift';
import { reachableOvshift } from '../helpers/reachable';
import { run } from '../helpers/proc';
import { waitUntil } from '../helpers/wait';

async function mounted(mnt: string): Promise<boolean> {
  return (await connectionId(mnt)) !== undefined;
}

describe('mount lifecycle', function () {
  this.timeout(30000);
  let s: Scratch;
  const daemons: Daemon[] = [];
  // nobody's daemon, and a user namespace's root (host uid 0), make theirs in /tmp.
  const removeControlDirs = controlDirsMadeBy([65534, 0]);
  after(removeControlDirs);

  beforeEach(() => {
    s = new Scratch();
    writeFileSync(join(s.lower, 'file'), 'from the lower\n');
  });

  afterEach(async () => {
    for (const d of daemons.splice(0)) await d.stop();
    if (await mounted(s.mnt)) await run('umount', ['-l', s.mnt]);
    s.remove();
  });

  it('returns once the mount is ready, leaving a daemon that an external umount ends', async () => {
    const r = await run(OVSHIFT, s.args());
    assert.equal(r.code, 0, r.stderr);
    // Ready means usable right away, with no retry.
    assert.equal(readFileSync(join(s.mnt, 'file'), 'utf8'), 'from the lower\n');
    const ps = await run('pgrep', ['-f', `ovshift.*${s.mnt}$`]);
    const pid = Number(ps.stdout.trim().split('\n')[0]);
    assert.ok(pid > 0, 'a daemon serves the mount');
    assert.equal((await run('umount', [s.mnt])).code, 0);
    await waitUntil(() => !existsSync(`/proc/${pid}`), { what: `daemon ${pid} to exit after the umount`, intervalMs: 50 });
    assert.equal(existsSync(`/proc/${pid}`), false, 'the daemon exited after the umount');
  });

  it('in the foreground, unmounts cleanly on SIGTERM and on SIGINT', async () => {
    for (const sig of ['SIGTERM', 'SIGINT'] as const) {
      const d = await startDaemon(s.args(), s.mnt);
      daemons.push(d);
      assert.ok(await mounted(s.mnt));
      d.child.kill(sig);
      const { code } = await d.exited;
      assert.equal(code, 0, `exit status after ${sig}: ${d.stderr()}`);
      assert.equal(await mounted(s.mnt), false, `unmounted after ${sig}`);
    }
  });

  it('ends with a one-line error on SIGTERM while the mount is still being made', async () => {
    // An NFS "server" that takes the connection and never answers keeps the mount from finishing.
    let contacted!: () => void;
    const inTheMiddle = new Promise<void>((resolve) => (contacted = resolve));
    const silent = createServer(() => contacted());
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const port = (silent.address() as AddressInfo).port;
    try {
      const child = spawn(OVSHIFT, ['-f', '-o', `lowerdir=nfs://127.0.0.1:${port}/x?mountport=${port}`, s.mnt], { stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
      const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
      // Once the daemon waits on the server (a fixed pause lost the race on a loaded machine).
      await inTheMiddle;
      child.kill('SIGTERM');
      assert.equal(await exited, 1, stderr);
      assert.equal(stderr, 'ovshift: interrupted before the mount was ready\n');
      assert.equal(await mounted(s.mnt), false);
    } finally {
      silent.close();
    }
  });

  it('exits 0 when unmounted from outside, with umount or fusermount3 -u', async () => {
    for (const cmd of [
      ['umount', s.mnt],
      ['fusermount3', '-u', s.mnt],
    ]) {
      const d = await startDaemon(s.args(), s.mnt);
      daemons.push(d);
      const r = await run(cmd[0]!, cmd.slice(1));
      assert.equal(r.code, 0, r.stderr);
      assert.equal((await d.exited).code, 0, `${cmd[0]}: ${d.stderr()}`);
    }
  });

  it('leaves a mount that umount clears when the daemon is killed with SIGKILL', async () => {
    const d = await startDaemon(s.args(), s.mnt);
    daemons.push(d);
    d.child.kill('SIGKILL');
    await d.exited;
    const st = await run('stat', [s.mnt]);
    assert.notEqual(st.code, 0);
    assert.match(st.stderr, /Transport endpoint is not connected/);
    assert.equal((await run('umount', [s.mnt])).code, 0);
    assert.equal(await mounted(s.mnt), false);
    // And it can be mounted again at once.
    const again = await startDaemon(s.args(), s.mnt);
    daemons.push(again);
    assert.equal(readFileSync(join(s.mnt, 'file'), 'utf8'), 'from the lower\n');
  });

  it('refuses a missing mountpoint, a missing /dev/fuse, and an unprivileged caller, naming the problem', async () => {
    const missing = await run(OVSHIFT, ['-o', `lowerdir=${s.lower}`, join(s.root, 'nowhere')]);
    assert.equal(missing.code, 1);
    assert.equal(missing.stderr, `ovshift: mountpoint ${join(s.root, 'nowhere')} does not exist\n`);

    // A mount namespace of its own where /dev has no fuse device.
    const nodev = await run('unshare', [
      '-m',
      '--propagation',
      'private',
      'sh',
      '-c',
      `mount -t tmpfs none /dev && exec ${OVSHIFT} -f -o lowerdir=${s.lower} ${s.mnt}`,
    ]);
    assert.equal(nodev.code, 1);
    assert.match(nodev.stderr, /^ovshift: \/dev\/fuse is missing/);
    assert.equal(nodev.stderr.split('\n').length, 2, 'one line');

    // nobody may not mount on a directory it does not own, even through fusermount3.
    chmodSync(s.root, 0o755);
    chmodSync(s.lower, 0o755);
    const denied = await run('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', reachableOvshift(), '-o', `lowerdir=${s.lower}`, s.mnt]);
    assert.equal(denied.code, 1);
    assert.match(denied.stderr, /^ovshift: cannot mount on /);
    assert.equal(await mounted(s.mnt), false);
  });

  it('mounts as an unprivileged user through fusermount3', async function () {
    chmodSync(s.root, 0o755);
    chmodSync(s.lower, 0o755);
    chmodSync(join(s.lower, 'file'), 0o644);
    chownSync(s.mnt, 65534, 65534);
    // A private /dev whose fuse device users may open (0666, as udev sets it up on most systems).
    const script = [
      'set -e',
      'mount -t tmpfs -o mode=0755 none /dev',
      'mknod -m 0666 /dev/null c 1 3; mknod -m 0666 /dev/fuse c 10 229',
      `setpriv --reuid=65534 --regid=65534 --clear-groups ${reachableOvshift()} -o lowerdir=${s.lower},ro ${s.mnt}`,
      `setpriv --reuid=65534 --regid=65534 --clear-groups cat ${s.mnt}/file`,
      `grep " ${s.mnt} " /proc/self/mountinfo | grep -o "fuse.ovshift.*user_id=65534"`,
      `setpriv --reuid=65534 --regid=65534 --clear-groups fusermount3 -u ${s.mnt}`,
      `! grep -q " ${s.mnt} " /proc/self/mountinfo`,
    ].join('\n');
    const r = await run('unshare', ['-m', '--propagation', 'private', 'sh', '-c', script]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^from the lower\nfuse\.ovshift .*user_id=65534\n$/);
  });

  it('mounts inside a user namespace by its root (unshare -Urm)', async () => {
    chmodSync(s.root, 0o755);
    const r = await run('unshare', [
      '-Urm',
      'sh',
      '-c',
      `${reachableOvshift()} -o lowerdir=${s.lower} ${s.mnt} && cat ${s.mnt}/file && stat -c %u ${s.mnt}/file && umount ${s.mnt}`,
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'from the lower\n0\n');
  });

  it('lets go of the layers as soon as it is unmounted: they can be unmounted right after', async () => {
    const layer = s.dir('tmpfs-lower');
    try {
      for (let i = 0; i < 5; i++) {
        assert.equal((await run('mount', ['-t', 'tmpfs', 'ovshift-test', layer])).code, 0);
        writeFileSync(join(layer, 'f'), 'x');
        const d = await startDaemon(['-o', `lowerdir=${layer}`, s.mnt], s.mnt);
        daemons.push(d);
        assert.equal(readFileSync(join(s.mnt, 'f'), 'utf8'), 'x');
        assert.equal((await run('umount', [s.mnt])).code, 0);
        const r = await run('umount', [layer]);
        assert.equal(r.code, 0, `the lower, right after the overlay: ${r.stderr}`);
        await d.exited;
      }
    } finally {
      await run('umount', ['-l', layer]);
    }
  });

  it('answers ovshift ctl for the mount on top when two are stacked on one path', async () => {
    const below = await startDaemon(s.args(), s.mnt);
    daemons.push(below);
    // Its own upper: one upper serves one mount at a time.
    const above = await startDaemon(['-o', `lowerdir=${s.lower},upperdir=${s.dir('upper2')},workdir=${s.dir('work2')},passthrough=off`, s.mnt], s.mnt);
    daemons.unshift(above);
    const r = await run(OVSHIFT, ['ctl', s.mnt, 'status']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /passthrough files off/);
  });

  it('refuses a second mount of an upper in use, in one line naming the workdir', async () => {
    daemons.push(await s.mount());
    const other = s.dir('mnt2');
    const r = await run(OVSHIFT, s.args().slice(0, -1).concat(other));
    assert.notEqual(r.code, 0);
    assert.equal(r.stderr.trim(), `ovshift: workdir ${s.work} is in use by another mount (of the same upper)`);
    assert.ok(!readFileSync('/proc/self/mounts', 'utf8').includes(` ${other} `), 'nothing mounted there');
  });

  it('remounts read-only and back (mount -o remount,ro as mount.fuse3 passes it), other flags and the layers as they were', async () => {
    const d = await s.mount('nosuid,noexec');
    daemons.push(d);
    writeFileSync(join(s.mnt, 'before'), 'b');
    const flagsNow = (): string => {
      const line = readFileSync('/proc/self/mounts', 'utf8')
        .split('\n')
        .find((l) => l.split(' ')[1] === s.mnt);
      return (
        line
          ?.split(' ')[3]
          ?.split(',')
          .filter((f) => !/^(user_id|group_id)=/.test(f))
          .join(',') ?? 'not mounted'
      );
    };
    const before = flagsNow();
    assert.match(before, /^rw,nosuid,.*noexec/);
    const opts = `lowerdir=${s.lower},upperdir=${s.upper},workdir=${s.work}`;
    let r = await run(OVSHIFT, ['ovshift', s.mnt, '-o', `remount,ro,${opts}`]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(flagsNow(), before.replace(/^rw,/, 'ro,'), 'only ro changed');
    assert.throws(() => writeFileSync(join(s.mnt, 'after'), 'a'), { code: 'EROFS' });
    assert.equal(readFileSync(join(s.mnt, 'before'), 'utf8'), 'b');
    // Options other than the mount flags are the running mount's: another lower changes nothing.
    r = await run(OVSHIFT, ['ovshift', s.mnt, '-o', 'remount,rw,exec,lowerdir=/nonexistent']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(flagsNow(), before.replace(',noexec', ''), 'rw and exec again, nosuid kept');
    writeFileSync(join(s.mnt, 'after'), 'a');
    assert.equal(readFileSync(join(s.upper, 'after'), 'utf8'), 'a');
    assert.equal(readFileSync(join(s.mnt, 'file'), 'utf8'), 'from the lower\n');
    // What is not an ovshift mount is refused, in one line naming it.
    r = await run(OVSHIFT, ['ovshift', s.lower, '-o', 'remount,ro']);
    assert.equal(r.code, 1);
    assert.equal(r.stderr, `ovshift: cannot remount ${s.lower}: nothing is mounted there\n`);
  });
});
