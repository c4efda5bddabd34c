import assert from 'assert/strict';
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import { join } from 'path';
import { parseArgs, splitLowerdir, UsageError } from '../../src/cli/options';
import { connectionId } from '../../src/fuse/mount';
import { OVSHIFT, Scratch, startDaemon, type Daemon } from '../helpers/ovshift';
import { run } from '../helpers/proc';

describe('command line', function () {
  this.timeout(30000);

  describe('parsing', () => {
    it('reads the fuse-overlayfs form, the mount.fuse3 form and long options alike', () => {
      const a = parseArgs(['-f', '-o', 'lowerdir=/a:/b,upperdir=/u,workdir=/w,noatime', '/mnt']);
      const b = parseArgs(['ovshift', '/mnt', '-o', 'rw,lowerdir=/a:/b,upperdir=/u,workdir=/w,noatime,dev,suid']);
      const c = parseArgs(['--lower', '/a', '--lower', '/b', '--upper', '/u', '--work', '/w', '-o', 'noatime', '/mnt']);
      for (const cmd of [a, b, c]) {
        assert.ok(cmd.kind === 'mount');
        assert.deepEqual(cmd.options.lowers, ['/a', '/b']);
        assert.equal(cmd.options.upper, '/u');
        assert.equal(cmd.options.work, '/w');
        assert.equal(cmd.options.mountpoint, '/mnt');
        assert.equal(cmd.options.flags.noatime, true);
      }
      assert.ok(b.kind === 'mount' && b.options.flags.nodev === false && b.options.flags.nosuid === false, 'dev,suid as mount.fuse3 passes them');
    });

    it('unescapes colons and commas in lowerdir', () => {
      assert.deepEqual(splitLowerdir('/a\\:b:/c'), ['/a:b', '/c']);
      const cmd = parseArgs(['-o', 'lowerdir=/x\\,y:/z', '/m']);
      assert.ok(cmd.kind === 'mount');
      assert.deepEqual(cmd.options.lowers, ['/x,y', '/z']);
    });

    it('names unknown and malformed options', () => {
      assert.throws(() => parseArgs(['-o', 'lowerdir=/a,bogus=1', '/m']), (e: Error) => e instanceof UsageError && /"bogus=1"/.test(e.message));
      assert.throws(() => parseArgs(['--frobnicate', '/m']), /unknown option --frobnicate/);
      assert.throws(() => parseArgs(['-o', 'upperdir=/u', '/m']), /no lower layer/);
      assert.throws(() => parseArgs(['-o', 'lowerdir=/a,upperdir=/u', '/m']), /upperdir given without workdir/);
      assert.throws(() => parseArgs(['-o', 'lowerdir=/a,redirect_dir=maybe', '/m']), /redirect_dir=maybe: expected on or off/);
      assert.throws(() => parseArgs(['-o', 'lowerdir=/a::/b', '/m']), /empty layer/);
    });
  });

  describe('running', () => {
    let s: Scratch;
    const daemons: Daemon[] = [];

    beforeEach(() => {
      s = new Scratch();
      fs.writeFileSync(join(s.lower, 'f'), 'lower');
    });

    afterEach(async () => {
      for (const d of daemons.splice(0)) await d.stop();
      if ((await connectionId(s.mnt)) !== undefined) await run('umount', ['-l', s.mnt]);
      s.remove();
    });

    it('prints help with examples, and a usage error with status 2', async () => {
      const help = await run(OVSHIFT, ['--help']);
      assert.equal(help.code, 0);
      assert.match(help.stdout, /Usage:/);
      assert.match(help.stdout, /Examples:/);
      const bad = await run(OVSHIFT, ['-o', 'lowerdir=/x,nope', '/m']);
      assert.equal(bad.code, 2);
      assert.equal(bad.stderr, 'ovshift: unknown option "nope" (see ovshift --help)\n');
    });

    it('refuses layouts that cannot work, naming the problem in one line', async () => {
      const inside = s.dir('lower/inner');
      const otherFs = s.dir('otherfs');
      execFileSync('mount', ['-t', 'tmpfs', 'ovshift-test-work', otherFs]);
      try {
        const cases: Array<[string[], RegExp]> = [
          [['-o', `lowerdir=${s.lower}`, inside], /mountpoint .*inner is inside lower layer .*: serving it would deadlock/],
          [['-o', `lowerdir=${s.mnt}/x`, s.mnt], /lower layer .*mnt\/x does not exist/],
          [['-o', `lowerdir=${s.lower}`, s.lower], /mountpoint .* is inside lower layer/],
          [['-o', `lowerdir=${s.lower},upperdir=${inside},workdir=${s.work}`, s.mnt], /upperdir .*inner is inside lower layer/],
          [['-o', `lowerdir=${inside},upperdir=${s.lower},workdir=${s.work}`, s.mnt], /lower layer .*inner is inside upperdir/],
          [['-o', `lowerdir=${s.lower},upperdir=${s.upper},workdir=${otherFs}`, s.mnt], /workdir .*otherfs is on another filesystem than upperdir/],
          [['-o', `lowerdir=${s.lower},upperdir=${s.upper},workdir=${s.upper}/w`, s.mnt], /workdir .* does not exist|must not contain each other/],
          [['-o', `lowerdir=${join(s.root, 'missing')}`, s.mnt], /lower layer .*missing does not exist/],
        ];
        for (const [args, want] of cases) {
          const r = await run(OVSHIFT, args);
          assert.equal(r.code, 1, `${args.join(' ')}: ${r.stderr}`);
          assert.match(r.stderr, want);
          assert.equal(r.stderr.trim().split('\n').length, 1, 'one line');
          assert.equal(await connectionId(args[args.length - 1]!), undefined, 'nothing mounted');
        }
      } finally {
        execFileSync('umount', [otherFs]);
      }
    });

    it('works as mount -t fuse.ovshift and from an fstab line', async () => {
      const opts = `lowerdir=${s.lower},upperdir=${s.upper},workdir=${s.work}`;
      let r = await run('mount', ['-t', 'fuse.ovshift', 'ovshift', s.mnt, '-o', opts]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(fs.readFileSync(join(s.mnt, 'f'), 'utf8'), 'lower');
      assert.equal((await run('umount', [s.mnt])).code, 0);
      const fstab = join(s.root, 'fstab');
      fs.writeFileSync(fstab, `demo-root ${s.mnt} fuse.ovshift ${opts},noatime 0 0\n`);
      r = await run('mount', ['-T', fstab, s.mnt]);
      assert.equal(r.code, 0, r.stderr);
      const line = fs.readFileSync('/proc/self/mounts', 'utf8').split('\n').find((l) => l.includes(` ${s.mnt} `)) ?? '';
      assert.match(line, /^demo-root .* fuse\.ovshift .*noatime/);
      assert.equal((await run('umount', [s.mnt])).code, 0);
    });

    it('without an upperdir, uses a private size-limited tmpfs that disappears with the daemon', async () => {
      const d = await startDaemon(['--lower', s.lower, '-o', 'upper_size=4m', s.mnt], s.mnt);
      daemons.push(d);
      fs.writeFileSync(join(s.mnt, 'new'), 'in the tmpfs');
      fs.appendFileSync(join(s.mnt, 'f'), '+');
      assert.equal(fs.readFileSync(join(s.lower, 'f'), 'utf8'), 'lower', 'the lower never changes');
      assert.throws(() => fs.writeFileSync(join(s.mnt, 'big'), Buffer.alloc(8 * 1024 * 1024)), { code: 'ENOSPC' });
      // The daemon reaches its upper through a descriptor of a detached tmpfs.
      const fds = fs.readdirSync(`/proc/${d.pid}/fd`).filter((n) => {
        try { return fs.readlinkSync(`/proc/${d.pid}/fd/${n}`) === '/upper'; } catch { return false; }
      });
      assert.equal(fds.length, 1);
      assert.equal((await run('stat', ['-f', '-L', '-c', '%T', `/proc/${d.pid}/fd/${fds[0]}`])).stdout.trim(), 'tmpfs');
      assert.equal(fs.readFileSync('/proc/self/mounts', 'utf8').includes('ovshift-upper'), false, 'not mounted anywhere visible');
      d.child.kill('SIGKILL');
      await d.exited;
      await run('umount', [s.mnt]);
      const d2 = await startDaemon(['--lower', s.lower, s.mnt], s.mnt);
      daemons.push(d2);
      assert.deepEqual(fs.readdirSync(s.mnt), ['f'], 'a new mount starts from an empty upper');
      assert.equal(fs.readFileSync(join(s.mnt, 'f'), 'utf8'), 'lower');
    });

    it('serves a read-only merged view with -o ro and no upper', async () => {
      const lower2 = s.dir('lower2');
      fs.writeFileSync(join(lower2, 'g'), 'second');
      const d = await startDaemon(['-o', `ro,lowerdir=${s.lower}:${lower2}`, s.mnt], s.mnt);
      daemons.push(d);
      assert.deepEqual(fs.readdirSync(s.mnt).sort(), ['f', 'g']);
      assert.throws(() => fs.writeFileSync(join(s.mnt, 'x'), ''), { code: 'EROFS' });
      assert.throws(() => fs.appendFileSync(join(s.mnt, 'f'), ''), { code: 'EROFS' });
    });
  });
});
