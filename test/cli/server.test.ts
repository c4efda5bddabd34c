/**
 * The installed `ovshift` command: a native front end (build/Release/ovshift) that asks a
 * long-lived mount server, one per user, namespace and installation, to make each mount, and
 * starts that server when none runs. What a container engine sees: the command returns with
 * the mount ready, or with one line and a status; nothing of it holds the engine's pipes.
 */
import assert from 'assert/strict';
import { chmodSync, chownSync, existsSync, readFileSync, rmSync, statSync, writeFileSync } from 'fs';
import { join } from 'path';
import { connectionId } from '../../src/fuse/mount';
import { allowFuseDevice, disallowFuseDevice } from '../helpers/fuse-device';
import { controlDirsMadeBy, Scratch } from '../helpers/ovshift';
import { FRONT_END, runningServers, serverDirs, startedServersOfThisBuild, stopOvshiftServers, waitGone } from '../helpers/ovshift-server';
import { run, sleep } from '../helpers/proc';
import { reachableFrontEnd } from '../helpers/reachable';
import { createUser, removeUser, type TestUser } from '../helpers/users';

async function mounted(mnt: string): Promise<boolean> {
  return (await connectionId(mnt)) !== undefined;
}

/** The server process holding `mnt`'s FUSE connection: the one whose pid file names it. */
function serverOf(dirs = serverDirs()): number[] {
  return runningServers(dirs).map((s) => s.pid);
}

describe('ovshift front end and mount server', function () {
  this.timeout(60000);
  let s: Scratch;
  const extra: string[] = [];
  const removeControlDirs = controlDirsMadeBy([65534]);

  beforeEach(() => {
    s = new Scratch();
    writeFileSync(join(s.lower, 'file'), 'from the lower\n');
  });

  afterEach(async () => {
    for (const m of [s.mnt, ...extra.splice(0)]) {
      while (await mounted(m)) await run('umount', ['-l', m]);
    }
    s.remove();
  });

  after(async () => {
    await stopOvshiftServers();
    removeControlDirs();
  });

  it("returns with the mount ready, holding none of the caller's pipes, and serves many mounts from one server", async () => {
    const mnts = [s.mnt, s.dir('mnt2'), s.dir('mnt3')];
    extra.push(...mnts.slice(1));
    for (const [i, mnt] of mnts.entries()) {
      // run() waits for the pipes to close: a server that kept them would hang it to its timeout.
      const r = await run(FRONT_END, ['-o', `lowerdir=${s.lower},upperdir=${s.dir(`u${i}`)},workdir=${s.dir(`w${i}`)}`, mnt], { timeoutMs: 15000 });
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stderr, '');
      assert.equal(readFileSync(join(mnt, 'file'), 'utf8'), 'from the lower\n', 'usable at once');
      writeFileSync(join(mnt, `own-${i}`), `${i}\n`);
    }
    assert.equal(readFileSync(join(s.dir('u1'), 'own-1'), 'utf8'), '1\n', 'each mount has its own upper');
    assert.equal(existsSync(join(s.dir('u0'), 'own-1')), false);
    const servers = startedServersOfThisBuild();
    assert.equal(servers.length, 1, `one server for the three mounts: ${JSON.stringify(servers)}`);
    // An unmount ends that mount only.
    assert.equal((await run('umount', [mnts[1]!])).code, 0);
    assert.equal(await mounted(mnts[1]!), false);
    assert.equal(readFileSync(join(mnts[2]!, 'own-2'), 'utf8'), '2\n', 'the others serve on');
    assert.equal(readFileSync(join(mnts[0]!, 'file'), 'utf8'), 'from the lower\n');
  });

  it('keeps serving its other mounts while one waits on a slow lower', async () => {
    const slow = s.dir('slow');
    extra.push(slow);
    assert.equal((await run(FRONT_END, s.args())).code, 0);
    assert.equal((await run(FRONT_END, ['-o', `lowerdir=${s.lower},inject=read:**:delay=8000`, slow])).code, 0);
    assert.equal(startedServersOfThisBuild().length, 1, 'one server serves both');
    let stuckDone = false;
    const stuck = run('cat', [join(slow, 'file')], { timeoutMs: 30000 }).finally(() => (stuckDone = true));
    await sleep(300);
    // Order, not speed: the other mount answers all of these while the slow read still waits.
    for (let i = 0; i < 20; i++) {
      writeFileSync(join(s.mnt, `f${i}`), `${i}\n`);
      assert.equal(readFileSync(join(s.mnt, 'file'), 'utf8'), 'from the lower\n');
    }
    assert.equal(stuckDone, false, 'the other mount was served while the slow read was still waiting');
    assert.equal((await stuck).stdout, 'from the lower\n', 'the slow read completes');
  });

  it('with OVSHIFT_SERVER=off, gives the mount a process of its own', async () => {
    const r = await run(FRONT_END, s.args(), { env: { ...process.env, OVSHIFT_SERVER: 'off' } });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(readFileSync(join(s.mnt, 'file'), 'utf8'), 'from the lower\n');
    const daemon = await run('pgrep', ['-f', `bin/ovshift -o lowerdir=${s.lower},upperdir=${s.upper}`]);
    const pid = Number(daemon.stdout.trim().split('\n')[0]);
    assert.ok(pid > 0, `a daemon of its own: ${daemon.stdout}`);
    assert.ok(!startedServersOfThisBuild().some((p) => p.pid === pid), 'not a server');
    assert.equal((await run('umount', [s.mnt])).code, 0);
    assert.ok(await waitGone(pid, 5000), 'the daemon ends with its mount');
  });

  it("resolves relative paths against the caller's directory and takes OVSHIFT_OPTIONS", async () => {
    const r = await run(FRONT_END, ['-o', 'lowerdir=lower,upperdir=upper,workdir=work', 'mnt'], {
      cwd: s.root,
      env: { ...process.env, OVSHIFT_OPTIONS: 'ro' },
    });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(readFileSync(join(s.mnt, 'file'), 'utf8'), 'from the lower\n');
    assert.throws(() => writeFileSync(join(s.mnt, 'new'), 'x'), /EROFS/, 'OVSHIFT_OPTIONS=ro reached the server');
  });

  it("makes a private upper in the caller's TMPDIR, not in that of whoever started the server", async () => {
    await stopOvshiftServers();
    const first = s.dir('tmp-first');
    const other = s.dir('mnt2');
    extra.push(other);
    assert.equal((await run(FRONT_END, s.args(), { env: { ...process.env, TMPDIR: first } })).code, 0);
    rmSync(first, { recursive: true });
    const r = await run(FRONT_END, ['-o', `lowerdir=${s.lower}`, other], { env: { ...process.env, TMPDIR: s.dir('tmp-second') } });
    assert.equal(r.code, 0, r.stderr);
    writeFileSync(join(other, 'new'), 'in the private upper\n');
    assert.equal(readFileSync(join(other, 'new'), 'utf8'), 'in the private upper\n');
    assert.equal(startedServersOfThisBuild().length, 1, 'the same server made both');
  });

  it('refuses bad command lines and layouts with one line and the usual status, mounting nothing', async () => {
    const cases: Array<[string[], number, RegExp]> = [
      [['-o', `lowerdir=${s.lower},bogus`, s.mnt], 2, /^ovshift: unknown option "bogus"/],
      [['-o', `lowerdir=${join(s.root, 'nowhere')}`, s.mnt], 1, /^ovshift: lower layer .*nowhere does not exist$/],
      [['-o', `lowerdir=${s.lower},upper_timeout=1e9`, s.mnt], 1, /^ovshift: option upper_timeout=1e9: expected seconds/],
      [['-o', `lowerdir=${s.lower}`], 2, /^ovshift: no mountpoint given/],
    ];
    for (const [args, status, message] of cases) {
      const r = await run(FRONT_END, args);
      assert.equal(r.code, status, `${args.join(' ')}: ${r.stderr}`);
      assert.equal(r.stderr.split('\n').length, 2, `one line: ${r.stderr}`);
      assert.match(r.stderr.trim(), message);
      assert.equal(await mounted(s.mnt), false);
    }
  });

  it('leaves help, version, ctl and foreground runs to the Node command line', async () => {
    const help = await run(FRONT_END, ['--help']);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /^Usage:\n  ovshift /);
    assert.match((await run(FRONT_END, ['-V'])).stdout, /^ovshift \d+\.\d+\.\d+\n$/);
    // -o debug is found by the server, which hands the run back: the front end's process serves.
    const fg = await run(
      'sh',
      [
        '-c',
        `${FRONT_END} -o lowerdir=${s.lower},debug ${s.mnt} 2>/dev/null & pid=$!
      for i in $(seq 100); do grep -q " ${s.mnt} " /proc/self/mounts && break; sleep 0.05; done
      ${FRONT_END} ctl ${s.mnt} status; kill $pid; wait $pid; echo "exit $?"`,
      ],
      { timeoutMs: 20000 },
    );
    assert.match(fg.stdout, /^nodes \d+$/m, fg.stderr);
    assert.match(fg.stdout, /^exit 0$/m, 'the foreground process ended the mount on SIGTERM');
    assert.equal(await mounted(s.mnt), false);
  });

  it('starts exactly one server when many callers find none at once', async () => {
    // Our own mount namespace: a server of its own, started by the callers racing here.
    const n = 8;
    const script = [
      'set -e',
      `for i in $(seq ${n}); do mkdir -p ${s.root}/r$i/u ${s.root}/r$i/w ${s.root}/r$i/m; done`,
      `for i in $(seq ${n}); do ${FRONT_END} -o lowerdir=${s.lower},upperdir=${s.root}/r$i/u,workdir=${s.root}/r$i/w ${s.root}/r$i/m & done`,
      'wait',
      `for i in $(seq ${n}); do cat ${s.root}/r$i/m/file; done | sort | uniq -c`,
      `ls ${serverDirs()[0]} | grep -c "^server-.*-$(stat -L -c %i /proc/self/ns/mnt)-.*\\.pid$"`,
    ].join('\n');
    const before = new Set(serverOf());
    const r = await run('unshare', ['-m', '--propagation', 'private', 'sh', '-c', script], { timeoutMs: 40000 });
    try {
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, `      ${n} from the lower\n1\n`);
    } finally {
      // The namespace lives on in its server: end it, which unmounts what it serves there.
      for (const pid of serverOf().filter((p) => !before.has(p))) {
        process.kill(pid, 'SIGTERM');
        assert.ok(await waitGone(pid, 10000), 'the server ends on SIGTERM');
      }
    }
  });

  it('SIGTERM to the server unmounts every mount, removes its socket and pid file, and exits', async () => {
    const other = s.dir('mnt2');
    extra.push(other);
    for (const args of [s.args(), ['-o', `lowerdir=${s.lower}`, other]]) {
      const r = await run(FRONT_END, args);
      assert.equal(r.code, 0, r.stderr);
    }
    const [server] = startedServersOfThisBuild();
    assert.ok(server, 'a server runs');
    const sock = server.pidFile.replace(/\.pid$/, '.sock');
    assert.equal(statSync(sock).mode & 0o777, 0o600);
    process.kill(server.pid, 'SIGTERM');
    assert.ok(await waitGone(server.pid, 10000));
    assert.equal(await mounted(s.mnt), false);
    assert.equal(await mounted(other), false);
    assert.equal(existsSync(sock), false);
    assert.equal(existsSync(server.pidFile), false);
    // The next mount starts a new one.
    assert.equal((await run(FRONT_END, s.args())).code, 0);
    assert.equal(readFileSync(join(s.mnt, 'file'), 'utf8'), 'from the lower\n');
  });

  it('a killed server is replaced at the next mount; its own mounts answer ENOTCONN until unmounted', async () => {
    assert.equal((await run(FRONT_END, s.args())).code, 0);
    const [server] = startedServersOfThisBuild();
    assert.ok(server);
    process.kill(server.pid, 'SIGKILL');
    assert.ok(await waitGone(server.pid, 10000));
    assert.throws(() => readFileSync(join(s.mnt, 'file')), /ENOTCONN/);
    assert.equal((await run('umount', [s.mnt])).code, 0);
    const r = await run(FRONT_END, s.args());
    assert.equal(r.code, 0, r.stderr);
    assert.equal(readFileSync(join(s.mnt, 'file'), 'utf8'), 'from the lower\n');
    const [next] = startedServersOfThisBuild();
    assert.ok(next && next.pid !== server.pid, 'a new server');
  });

  it('exits by itself once it has served no mount for OVSHIFT_SERVER_IDLE seconds', async () => {
    await stopOvshiftServers();
    const env = { ...process.env, OVSHIFT_SERVER_IDLE: '1' };
    assert.equal((await run(FRONT_END, s.args(), { env })).code, 0);
    const [server] = startedServersOfThisBuild();
    assert.ok(server);
    await sleep(1500);
    assert.ok(existsSync(`/proc/${server.pid}`), 'a server with a mount stays');
    assert.equal((await run('umount', [s.mnt])).code, 0);
    assert.ok(await waitGone(server.pid, 5000), 'gone about a second after its last mount');
    assert.equal(existsSync(server.pidFile), false);
  });

  describe('as an unprivileged user', () => {
    let user: TestUser | undefined;
    before(async () => {
      user = await createUser();
      await allowFuseDevice(user.uid);
    });
    after(async () => {
      // The uid was new to this run: the directory its server made, and what runs from it, are
      // this test's (its front end ran from a staged copy: another build than this checkout's).
      const dir = user && join(process.env.XDG_RUNTIME_DIR || '/tmp', `ovshift-${user.uid}`);
      await stopOvshiftServers(dir ? runningServers([dir]) : []);
      if (user) await disallowFuseDevice(user.uid);
      await removeUser(user);
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    it("runs a server of the user's own in a private directory; the mount is nosuid and the user's", async () => {
      chmodSync(s.root, 0o755);
      chownSync(s.mnt, user!.uid, user!.gid);
      const front = reachableFrontEnd();
      const r = await user!.sh(`${front} -o lowerdir=${s.lower},ro ${s.mnt} && cat ${s.mnt}/file`);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, 'from the lower\n');
      const info =
        readFileSync('/proc/self/mountinfo', 'utf8')
          .split('\n')
          .find((l) => l.includes(` ${s.mnt} `)) ?? '';
      assert.match(info, /nosuid/);
      assert.match(info, new RegExp(`user_id=${user!.uid}`));
      const dir = join(process.env.XDG_RUNTIME_DIR || '/tmp', `ovshift-${user!.uid}`);
      const st = statSync(dir);
      assert.deepEqual([st.uid, st.mode & 0o777], [user!.uid, 0o700]);
      const mine = runningServers([dir]);
      assert.equal(mine.length, 1, "the user's own server");
      assert.equal(Number(readFileSync(`/proc/${mine[0]!.pid}/status`, 'utf8').match(/^Uid:\s+(\d+)/m)![1]), user!.uid, 'running as the user');
      assert.equal((await user!.sh(`fusermount3 -u ${s.mnt}`)).code, 0);
    });
  });
});
