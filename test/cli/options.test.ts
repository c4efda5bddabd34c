import assert from 'assert/strict';
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import { join } from 'path';
import { OptionValueError, parseArgs, splitLowerdir, splitOptions, UsageError, type CliOptions, type MountFlags } from '../../src/cli/options';
import { connectionId } from '../../src/fuse/mount';
import { OVSHIFT, Scratch, startDaemon, type Daemon } from '../helpers/ovshift';
import { FRONT_END, stopOvshiftServers } from '../helpers/ovshift-server';
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
      assert.throws(
        () => parseArgs(['-o', 'lowerdir=/a,bogus=1', '/m']),
        (e: Error) => e instanceof UsageError && /"bogus=1"/.test(e.message),
      );
      assert.throws(() => parseArgs(['--frobnicate', '/m']), /unknown option --frobnicate/);
      assert.throws(() => parseArgs(['-o', 'upperdir=/u', '/m']), /no lower layer/);
      assert.throws(() => parseArgs(['-o', 'lowerdir=/a,upperdir=/u', '/m']), /upperdir given without workdir/);
      assert.throws(() => parseArgs(['-o', 'lowerdir=/a,redirect_dir=maybe', '/m']), /redirect_dir=maybe: expected on or off/);
      assert.throws(() => parseArgs(['-o', 'lowerdir=/a::/b', '/m']), /empty layer/);
    });

    it('keeps commas inside double quotes and drops the quotes (an SELinux label as containers-storage passes it)', () => {
      const label = 'system_u:object_r:container_file_t:s0:c1,c2';
      assert.deepEqual(splitOptions(`lowerdir=/a,context="${label}",ro`), ['lowerdir=/a', `context=${label}`, 'ro']);
      assert.deepEqual(splitOptions('lowerdir="/x,y":/z,rw'), ['lowerdir=/x,y:/z', 'rw']);
      const cmd = parseArgs(['-o', `lowerdir=/a,context="${label}",fscontext="${label}",defcontext="${label}",rootcontext="${label}",ro`, '/m']);
      assert.ok(cmd.kind === 'mount' && cmd.options.flags.readOnly);
      assert.throws(
        () => parseArgs(['-o', 'lowerdir=/a,context="system_u:c1,c2', '/m']),
        (e: Error) => {
          assert.ok(e instanceof OptionValueError);
          assert.equal(e.message, 'option context="system_u:c1,c2: the double quote is never closed');
          return true;
        },
      );
    });

    it('reads the -o string podman 4.3 (containers-storage) gives its mount program', () => {
      const label = 'system_u:object_r:container_file_t:s0:c100,c200';
      const cmd = parseArgs([
        '-o',
        [
          'lowerdir=/s/l/AAA:/s/l/BBB',
          'upperdir=/s/c/diff',
          'workdir=/s/c/work',
          'nodev',
          'volatile',
          `context="${label}"`,
          'uidmapping=:0:100000:65536',
          'gidmapping=:0:100000:1:1:100001:65535',
          'xattr_permissions=2',
        ].join(','),
        '/s/c/merged',
      ]);
      assert.ok(cmd.kind === 'mount');
      assert.deepEqual(cmd.options.lowers, ['/s/l/AAA', '/s/l/BBB']);
      assert.equal(cmd.options.volatile, true);
      assert.equal(cmd.options.flags.nodev, true);
      assert.equal(cmd.options.uidmapping, ':0:100000:65536');
      assert.equal(cmd.options.gidmapping, ':0:100000:1:1:100001:65535');
      const squashed = parseArgs(['-o', 'lowerdir=/a,upperdir=/u,workdir=/w,squash_to_uid=1000,squash_to_gid=1000', '/m']);
      assert.ok(squashed.kind === 'mount' && squashed.options.squashToUid === '1000' && squashed.options.squashToGid === '1000');
    });

    it('takes every fuse-overlayfs 1.10 option, with its effect where ovshift has one', () => {
      const opts = (extra: string): CliOptions => {
        const cmd = parseArgs(['-o', `lowerdir=/a,${extra}`, '/m']);
        assert.ok(cmd.kind === 'mount', extra);
        return cmd.options;
      };
      assert.equal(opts('volatile').volatile, true);
      assert.equal(opts('fsync=0').fsync, false);
      assert.equal(opts('fsync=1').fsync, true);
      assert.equal(opts('').fsync && !opts('').volatile, true, 'syncing by default');
      assert.equal(opts('static_nlink').staticNlink, true);
      assert.equal(opts('noxattrs=1').noXattrs, true);
      assert.equal(opts('noxattrs=0').noXattrs, false);
      const t = opts('timeout=2.5');
      assert.deepEqual([t.upperTimeout, t.lowerTimeout], [2.5, 2.5]);
      assert.equal(opts('redirect_dir=off').redirectDir, false);
      assert.equal(opts('squash_to_root').squashToRoot, true);
      assert.equal(opts('').acl, true, 'ACLs enforced by default');
      assert.equal(opts('noacl').acl, false);
      assert.equal(opts('noacl,acl').acl, true);
      for (const noEffect of [
        'threaded=0',
        'threaded=1',
        'threaded=8',
        'fast_ino=0',
        'fast_ino=1',
        'writeback=0',
        'writeback=1',
        'plugins=/usr/libexec/fuse-overlayfs/a.so:/b.so',
        'xattr_permissions=0',
        'xattr_permissions=1',
        'xattr_permissions=2',
        'context=system_u:object_r:container_file_t:s0',
        'splice_read',
        'splice_write',
        'splice_move',
        'kernel_cache',
        'max_write',
        'max_write=131072',
        'default_permissions',
        'allow_other',
        'lazytime',
        'debug',
      ]) {
        const o = opts(noEffect);
        assert.equal(o.volatile || o.staticNlink || o.noXattrs || !o.fsync, false, noEffect);
      }
      for (const flag of ['-d', '--debug', '-s']) {
        const cmd = parseArgs([flag, '-o', 'lowerdir=/a', '/m']);
        assert.ok(cmd.kind === 'mount' && cmd.options.foreground === (flag !== '-s'), flag);
      }
    });

    it("refuses a fuse-overlayfs option's bad value in one line naming it", () => {
      const cases: Array<[string, string]> = [
        ['fsync=2', 'option fsync=2: expected 0 or 1'],
        ['fsync=yes', 'option fsync=yes: expected 0 or 1'],
        ['noxattrs=on', 'option noxattrs=on: expected 0 or 1'],
        ['fast_ino=-1', 'option fast_ino=-1: expected 0 or 1'],
        ['writeback=2', 'option writeback=2: expected 0 or 1'],
        ['xattr_permissions=3', 'option xattr_permissions=3: expected 0, 1 or 2'],
        ['threaded=-1', 'option threaded=-1: expected a number from 0 to 2147483647'],
        ['threaded=2147483648', 'option threaded=2147483648: expected a number from 0 to 2147483647'],
        ['max_write=1M', 'option max_write=1M: expected bytes from 0 to 4294967295'],
        ['timeout=1e9', 'option timeout=1e9: expected seconds from 0 to 31536000'],
        ['uidmapping=:', 'option uidmapping: empty mapping, expected LAYER:VIEW:COUNT[:LAYER:VIEW:COUNT…]'],
        ['gidmapping=::0:1:1', 'option gidmapping: range :0:1 has "" where a decimal number belongs'],
      ];
      for (const [opt, message] of cases) {
        assert.throws(
          () => parseArgs(['-o', `lowerdir=/a,${opt}`, '/m']),
          (e: Error) => {
            assert.ok(e instanceof OptionValueError, opt);
            assert.equal(e.message, message);
            return true;
          },
        );
      }
      for (const key of ['fsync', 'noxattrs', 'context', 'fscontext', 'defcontext', 'rootcontext', 'plugins', 'threaded', 'xattr_permissions', 'timeout']) {
        assert.throws(() => parseArgs(['-o', `lowerdir=/a,${key}`, '/m']), { message: `option ${key} needs a value (${key}=…)` });
      }
    });

    it('mounts suid by default as root (as fuse-overlayfs), and always nosuid,nodev as anyone else', () => {
      const flags = (argv: string[]): MountFlags => {
        const cmd = parseArgs([...argv, '/m']);
        assert.ok(cmd.kind === 'mount');
        return cmd.options.flags;
      };
      const geteuid = process.geteuid;
      try {
        process.geteuid = () => 0;
        assert.deepEqual([flags(['-o', 'lowerdir=/a']).nosuid, flags(['-o', 'lowerdir=/a']).nodev], [false, true]);
        assert.equal(flags(['-o', 'lowerdir=/a,nosuid']).nosuid, true);
        assert.equal(flags(['-o', 'lowerdir=/a,dev']).nodev, false);
        process.geteuid = () => 1000;
        for (const asked of ['', ',suid', ',dev', ',suid,dev']) {
          const f = flags(['-o', `lowerdir=/a${asked}`]);
          assert.deepEqual([f.nosuid, f.nodev], [true, true], asked);
        }
      } finally {
        process.geteuid = geteuid;
      }
    });

    it('takes numeric options at both ends of their ranges', () => {
      const cmd = parseArgs([
        '-o',
        [
          'lowerdir=/a:/b',
          'upper_timeout=31536000',
          'lower_timeout=0.004',
          'upper_size=1p',
          'squash_to_uid=4294967294',
          'squash_to_gid=0',
          'uidmapping=0:4294901759:65536',
          'inject=stat@2:**:delay=3600000:count=1000000000;read@1:**:EIO:p=0;open:**:delay=0ms:p=1',
        ].join(','),
        '/m',
      ]);
      assert.ok(cmd.kind === 'mount');
      assert.equal(cmd.options.upperTimeout, 31536000);
      assert.equal(cmd.options.lowerTimeout, 0.004);
      for (const size of ['4k', '4096', '16M', '2g', '1T', '1%', '100%']) {
        const c = parseArgs(['-o', `lowerdir=/a,upper_size=${size},upper_timeout=0`, '/m']);
        assert.ok(c.kind === 'mount' && c.options.upperSize === size && c.options.upperTimeout === 0);
      }
    });

    it('refuses a number outside its range in one line naming the option and the range', () => {
      const cases: Array<[string, string]> = [
        ['upper_timeout=31536001', 'option upper_timeout=31536001: expected seconds from 0 to 31536000'],
        ['lower_timeout=1e9', 'option lower_timeout=1e9: expected seconds from 0 to 31536000'],
        ['lower_timeout=-1', 'option lower_timeout=-1: expected seconds from 0 to 31536000'],
        ['lower_timeout=', 'option lower_timeout needs a value (lower_timeout=…)'],
        ['upper_size=0', 'option upper_size=0: expected a size from 4k to 1p (k, m, g, t, p: powers of 1024), or 1% to 100% of RAM'],
        ['upper_size=4095', 'option upper_size=4095: expected a size from 4k to 1p (k, m, g, t, p: powers of 1024), or 1% to 100% of RAM'],
        ['upper_size=1025t', 'option upper_size=1025t: expected a size from 4k to 1p (k, m, g, t, p: powers of 1024), or 1% to 100% of RAM'],
        ['upper_size=101%', 'option upper_size=101%: expected a size from 4k to 1p (k, m, g, t, p: powers of 1024), or 1% to 100% of RAM'],
        ['upper_size=1.5g', 'option upper_size=1.5g: expected a size from 4k to 1p (k, m, g, t, p: powers of 1024), or 1% to 100% of RAM'],
        ['squash_to_uid=4294967295', 'option squash_to_uid=4294967295: expected an id from 0 to 4294967294'],
        ['squash_to_gid=-1', 'option squash_to_gid=-1: expected an id from 0 to 4294967294'],
        ['uidmapping=0:0:4294967296', 'option uidmapping: range 0:0:4294967296 goes past 4294967294 on the layer side'],
        ['gidmapping=0:1:0', 'option gidmapping: range 0:1:0 has count 0'],
        [
          'inject=stat:**:delay=99999999999',
          'option inject: fault rule "stat:**:delay=99999999999": delay=99999999999: expected milliseconds from 0 to 3600000',
        ],
        ['inject=stat:**:delay=3600001ms', 'option inject: fault rule "stat:**:delay=3600001ms": delay=3600001ms: expected milliseconds from 0 to 3600000'],
        ['inject=stat:**:delay=', 'option inject: fault rule "stat:**:delay=": delay=: expected milliseconds from 0 to 3600000'],
        ['inject=stat:**:EIO:count=0', 'option inject: fault rule "stat:**:EIO:count=0": count=0: expected a count from 1 to 1000000000'],
        [
          'inject=stat:**:EIO:count=1000000001',
          'option inject: fault rule "stat:**:EIO:count=1000000001": count=1000000001: expected a count from 1 to 1000000000',
        ],
        ['inject=stat:**:EIO:p=1.01', 'option inject: fault rule "stat:**:EIO:p=1.01": p=1.01: expected a probability from 0 to 1'],
        ['inject=stat:**:EIO:p=', 'option inject: fault rule "stat:**:EIO:p=": p=: expected a probability from 0 to 1'],
        ['inject=stat@0:**:EIO', 'option inject: fault rule "stat@0:**:EIO": layer 0: expected a lower layer number from 1 to 1'],
        ['inject=stat@2:**:EIO', 'option inject: fault rule "stat@2:**:EIO": layer 2: expected a lower layer number from 1 to 1'],
      ];
      for (const [opt, message] of cases) {
        assert.throws(
          () => parseArgs(['-o', `lowerdir=/a,${opt}`, '/m']),
          (e: Error) => {
            assert.ok(e instanceof UsageError, opt);
            assert.equal(e.message, message);
            assert.equal(e instanceof OptionValueError, !message.includes('needs a value'), `${opt}: a refused value, not a misused command line`);
            return true;
          },
        );
      }
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

    // mount(8) runs mount.fuse3 with a fixed PATH, where only an installed ovshift is found: the
    // tests name this checkout's front end by its path (type fuse, PROGRAM#SOURCE) instead.
    describe('through mount(8)', () => {
      after(stopOvshiftServers);

      it('works as mount -t fuse PROGRAM#SOURCE and from an fstab line', async () => {
        const opts = `lowerdir=${s.lower},upperdir=${s.upper},workdir=${s.work}`;
        let r = await run('mount', ['-t', 'fuse', `${FRONT_END}#ovshift`, s.mnt, '-o', opts]);
        assert.equal(r.code, 0, r.stderr);
        assert.equal(fs.readFileSync(join(s.mnt, 'f'), 'utf8'), 'lower');
        assert.equal((await run('umount', [s.mnt])).code, 0);
        const fstab = join(s.root, 'fstab');
        fs.writeFileSync(fstab, `${FRONT_END}#demo-root ${s.mnt} fuse ${opts},noatime 0 0\n`);
        r = await run('mount', ['-T', fstab, s.mnt]);
        assert.equal(r.code, 0, r.stderr);
        const line =
          fs
            .readFileSync('/proc/self/mounts', 'utf8')
            .split('\n')
            .find((l) => l.includes(` ${s.mnt} `)) ?? '';
        assert.match(line, /^demo-root .* fuse\.ovshift .*noatime/);
        assert.equal((await run('umount', [s.mnt])).code, 0);
      });

      it('works as mount -t fuse.ovshift, with this checkout linked as ovshift in a private mount namespace', async () => {
        // A tmpfs over /usr/local/bin in that namespace only: the system's installed command is left alone.
        const bin = s.dir('bin');
        const opts = `lowerdir=${s.lower},upperdir=${s.upper},workdir=${s.work}`;
        const script = [
          'set -e',
          `mount -t tmpfs ovshift-test-bin ${bin}`,
          `ln -s ${FRONT_END} ${bin}/ovshift`,
          `mount --bind ${bin} /usr/local/bin`,
          `mount -t fuse.ovshift ovshift ${s.mnt} -o ${opts}`,
          `cat ${s.mnt}/f; echo`,
          `grep " ${s.mnt} " /proc/self/mounts`,
          `umount ${s.mnt}`,
        ].join('\n');
        const r = await run('unshare', ['-m', '--propagation', 'private', 'sh', '-c', script]);
        assert.equal(r.code, 0, r.stderr);
        assert.match(r.stdout, /^lower\novshift \S+ fuse\.ovshift /);
      });
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
        try {
          return fs.readlinkSync(`/proc/${d.pid}/fd/${n}`) === '/upper';
        } catch {
          return false;
        }
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
