/**
 * The control socket (`ovshift ctl`) is reachable by the daemon's own user only: root's lives
 * in /run/ovshift (0700) as a 0600 socket; an unprivileged daemon's in its own 0700
 * `ovshift-UID` directory, which it refuses to use when someone else could have put it there
 * or could reach into it. Only that directory keeps others out between the bind and the
 * chmod to 0600: the umask is process-wide, and a server's other mounts may be creating files.
 */
import assert from 'assert/strict';
import { chmodSync, chownSync, lchownSync, lstatSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'fs';
import { join } from 'path';
import { connectionId } from '../../src/fuse/mount';
import { allowFuseDevice, disallowFuseDevice } from '../helpers/fuse-device';
import { OVSHIFT, Scratch, startDaemon, type Daemon } from '../helpers/ovshift';
import { reachableOvshift } from '../helpers/reachable';
import { Background, run, sleep, type RunResult } from '../helpers/proc';
import { createUser, removeUser, type TestUser } from '../helpers/users';
import { waitUntil } from '../helpers/wait';

/** Connects to a unix socket, asks `status`, prints the reply; on failure prints the errno name, exit 3. */
const CONNECT = `const s = require('net').connect(process.argv[1]);
s.on('connect', () => s.write('status\\n'));
s.on('data', (d) => process.stdout.write(d));
s.on('end', () => process.exit(0));
s.on('error', (e) => { console.log(e.code); process.exit(3); });`;

function connectAs(user: TestUser | undefined, socket: string): Promise<RunResult> {
  const cmd = [process.execPath, '-e', CONNECT, socket];
  return user ? user.run(cmd, { timeoutMs: 10000 }) : run(cmd[0]!, cmd.slice(1), { timeoutMs: 10000 });
}

function assertPrivate(path: string, kind: 'directory' | 'socket', uid: number, perm: number): void {
  const st = lstatSync(path);
  assert.ok(kind === 'directory' ? st.isDirectory() : st.isSocket(), `${path} is a ${kind}`);
  assert.equal(st.uid, uid, `${path} owner`);
  assert.equal((st.mode & 0o7777).toString(8), perm.toString(8), `${path} mode`);
}

/** The one socket in a control directory that a single daemon uses. */
function onlySocket(dir: string): string {
  const socks = readdirSync(dir).filter((n) => n.endsWith('.sock'));
  assert.equal(socks.length, 1, `one socket in ${dir}: ${socks.join(' ')}`);
  return join(dir, socks[0]!);
}

describe('security: control socket', function () {
  this.timeout(30000);
  let owner: TestUser;
  let other: TestUser;
  let s: Scratch;
  /** A /tmp-like XDG_RUNTIME_DIR for the unprivileged daemons of one test. */
  let xdg: string;
  const daemons: Daemon[] = [];

  before(async () => {
    owner = await createUser();
    other = await createUser();
    await allowFuseDevice(owner.uid);
  });

  after(async () => {
    if (owner) await disallowFuseDevice(owner.uid);
    await removeUser(owner);
    await removeUser(other);
  });

  beforeEach(() => {
    s = new Scratch('ovshift-ctl-');
    writeFileSync(join(s.lower, 'file'), 'from the lower\n');
    xdg = s.dir('xdg');
    chmodSync(xdg, 0o1777);
    chownSync(s.mnt, owner.uid, owner.gid);
    rmSync(`/tmp/ovshift-${owner.uid}`, { recursive: true, force: true });
  });

  afterEach(async () => {
    for (const d of daemons.splice(0)) await d.stop();
    // A daemon started without -f (the refusal tests, on code that does not refuse) ends
    // when its mount goes.
    if ((await connectionId(s.mnt)) !== undefined) await run('umount', ['-l', s.mnt]);
    await s.dispose();
    rmSync(`/tmp/ovshift-${owner.uid}`, { recursive: true, force: true });
  });

  async function startAsOwner(runtimeDir: string): Promise<Daemon> {
    const d = await startDaemon(['-o', `lowerdir=${s.lower},ro`, s.mnt], s.mnt, {
      uid: owner.uid,
      gid: owner.gid,
      env: { XDG_RUNTIME_DIR: runtimeDir },
      command: reachableOvshift(),
    });
    daemons.push(d);
    return d;
  }

  it("of a root daemon: /run/ovshift 0700 and the socket 0600, both root's; another user cannot connect", async () => {
    await s.mount();
    const socket = join('/run/ovshift', `mount-${statSync(s.mnt).dev}.sock`);
    assertPrivate('/run/ovshift', 'directory', 0, 0o700);
    assertPrivate(socket, 'socket', 0, 0o600);
    const root = await connectAs(undefined, socket);
    assert.match(root.stdout, /^ok\n/, root.stderr);
    const denied = await connectAs(owner, socket);
    assert.equal(denied.code, 3, denied.stdout + denied.stderr);
    assert.equal(denied.stdout, 'EACCES\n');
  });

  it('of an unprivileged daemon: its own 0700 directory in XDG_RUNTIME_DIR and a 0600 socket; only it connects', async function () {
    await startAsOwner(xdg);
    const dir = join(xdg, `ovshift-${owner.uid}`);
    assertPrivate(dir, 'directory', owner.uid, 0o700);
    const socket = onlySocket(dir);
    assertPrivate(socket, 'socket', owner.uid, 0o600);
    const own = await connectAs(owner, socket);
    assert.match(own.stdout, /^ok\n/, own.stderr);
    const denied = await connectAs(other, socket);
    assert.equal(denied.stdout, 'EACCES\n', denied.stderr);
  });

  it('of an unprivileged daemon without XDG_RUNTIME_DIR: /tmp/ovshift-UID, 0700, its own', async function () {
    await startAsOwner('');
    const dir = `/tmp/ovshift-${owner.uid}`;
    assertPrivate(dir, 'directory', owner.uid, 0o700);
    assertPrivate(onlySocket(dir), 'socket', owner.uid, 0o600);
  });

  const unsafe: Array<{ what: string; make(dir: string): void; problem: RegExp }> = [
    {
      what: 'with mode 0755',
      make: (dir) => {
        mkdirSync(dir, { mode: 0o755 });
        chmodSync(dir, 0o755);
        chownSync(dir, owner.uid, owner.gid);
      },
      problem: /0755/,
    },
    {
      what: 'owned by another user',
      make: (dir) => {
        mkdirSync(dir, { mode: 0o700 });
        chownSync(dir, other.uid, other.gid);
      },
      problem: /owned by uid \d+/,
    },
    {
      what: 'that is a symlink',
      make: (dir) => {
        const target = s.dir('elsewhere');
        chmodSync(target, 0o700);
        chownSync(target, owner.uid, owner.gid);
        symlinkSync(target, dir);
        lchownSync(dir, owner.uid, owner.gid);
      },
      problem: /symlink/,
    },
  ];
  for (const c of unsafe) {
    it(`refuses to start, in one line naming it, on a pre-existing directory ${c.what}`, async function () {
      const dir = join(xdg, `ovshift-${owner.uid}`);
      c.make(dir);
      const before = lstatSync(dir);
      const r = await run(reachableOvshift(), ['-o', `lowerdir=${s.lower},ro`, s.mnt], {
        uid: owner.uid,
        gid: owner.gid,
        cwd: '/',
        env: { ...process.env, XDG_RUNTIME_DIR: xdg },
        timeoutMs: 15000,
      });
      assert.equal(r.code, 1, `exit status; stderr: ${r.stderr}`);
      assert.equal(r.stderr.split('\n').length, 2, `one line: ${r.stderr}`);
      assert.ok(r.stderr.startsWith('ovshift: ') && r.stderr.includes(dir), r.stderr);
      assert.match(r.stderr, c.problem);
      assert.equal(await connectionId(s.mnt), undefined, 'nothing mounted');
      const after = lstatSync(dir);
      assert.deepEqual([after.mode, after.uid], [before.mode, before.uid], 'left as it was');
      assert.deepEqual(readdirSync(join(xdg, `ovshift-${owner.uid}`)), [], 'no socket made in it');
    });
  }

  it('makes the socket 0600 inside its 0700 directory without touching the process-wide umask', async () => {
    const trace = join(s.root, 'trace');
    const strace = new Background('strace', [
      '-f',
      '--seccomp-bpf',
      '-qq',
      '-e',
      'trace=umask,bind,chmod,fchmod,fchmodat',
      '-o',
      trace,
      OVSHIFT,
      '-f',
      ...s.args(),
    ]);
    try {
      const socketOf = (): string => join('/run/ovshift', `mount-${statSync(s.mnt).dev}.sock`);
      await waitUntil(async () => (await connectionId(s.mnt)) !== undefined && lstatSync(socketOf(), { throwIfNoEntry: false }) !== undefined, {
        timeoutMs: 15000,
        intervalMs: 50,
        what: () => `the daemon to come up under strace: ${strace.stderr}`,
      });
      const socket = socketOf();
      assertPrivate(socket, 'socket', 0, 0o600);
      assertPrivate('/run/ovshift', 'directory', 0, 0o700);
      assert.equal((await run('umount', [s.mnt])).code, 0);
      await Promise.race([strace.exited, sleep(10000)]);
      const lines = readFileSync(trace, 'utf8').split('\n');
      const bind = lines.findIndex((l) => / bind\(.*sun_path="([^"]*)"/.test(l) && l.includes(`"${socket}"`));
      assert.ok(bind >= 0, `bind of ${socket} in the trace`);
      // A server's other mounts create files all the while: a umask set for the bind would
      // mask their modes too.
      const umasks = lines.map((l) => / umask\((0\d*)\)/.exec(l)?.[1]).filter((m) => m !== undefined);
      assert.deepEqual([...new Set(umasks.map((m) => parseInt(m, 8)))], [0], "the only umask ever set is the daemon's 0");
      const chmod = lines.findIndex((l) => /chmod/.test(l) && l.includes(socket) && l.includes('0600'));
      assert.ok(chmod > bind, 'the socket is narrowed to 0600 after the bind');
    } finally {
      if (strace.running) {
        if ((await connectionId(s.mnt)) !== undefined) await run('umount', ['-l', s.mnt]);
        await Promise.race([strace.exited, sleep(5000)]);
        await strace.stop();
      }
    }
  });
});
