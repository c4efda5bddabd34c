/**
 * Locks on files of an NFSv4.1 lower, shared with every client of the server: three ovshift
 * mounts of one nfs-ganesha export stand for three hosts (each its own daemon and upper), and
 * processes working on the exported directory itself for programs on the file server. NFSv4
 * keeps locks in the protocol (LOCK, LOCKU, LOCKT): a waiter polls with backoff.
 */
import assert from 'assert/strict';
import * as fs from 'fs';
import { join } from 'path';
import { getLock, Locker, tryLock, type LockKind } from '../helpers/lockers';
import { OVSHIFT } from '../helpers/ovshift';
import { run } from '../helpers/proc';
import { waitUntil } from '../helpers/wait';
import { NfsExport, NfsLowerMount } from './fixture';
import { EAGAIN, busyHost, sharedLockCases, type Fleet } from './lock-cases';

const LEASE_SECONDS = 5;
const GRACE_SECONDS = 10;

describe('nfs:// lower (NFSv4.1): locks shared by every host and the server', function () {
  this.timeout(90000);
  let exp: NfsExport;
  let hosts: NfsLowerMount[] = [];
  const lockers: Locker[] = [];

  before(async () => {
    // A short lease, so that lease behaviour shows within a test; a grace period after each
    // restart, so that held locks can be reclaimed.
    exp = await NfsExport.start({ vers: '4.1', leaseSeconds: LEASE_SECONDS, graceSeconds: GRACE_SECONDS });
  });
  after(async () => {
    await exp?.stop();
  });
  afterEach(async function () {
    if (this.currentTest?.state === 'failed' || process.env.SHOW_HOSTS) hosts.forEach((h, i) => console.log(`host ${i}:`, h.daemon?.stderr().slice(-3000)));
    exp.server.thaw();
    await Promise.all(lockers.splice(0).map((l) => l.stop()));
    await Promise.all(hosts.splice(0).map((h) => h.remove()));
  });

  /** Three hosts mounting one area of the export; its directory on the server. */
  async function fleet(tree: Record<string, string>, options = ''): Promise<Fleet> {
    const { dir, url } = exp.area(tree);
    hosts = [new NfsLowerMount(), new NfsLowerMount(), new NfsLowerMount()];
    await Promise.all(hosts.map((h) => h.mount(url, options, { ...process.env, DEBUG: 'ovshift:nfs4,ovshift:locks' })));
    return { dir, on: (host, name) => join(hosts[host]!.mnt, name) };
  }

  function locker(path: string, kind: LockKind): Locker {
    const l = new Locker(path, kind);
    lockers.push(l);
    return l;
  }

  sharedLockCases({ fleet: (tree) => fleet(tree), locker });

  it("a waiting lock on host B is had soon after A's unlock; meanwhile B's daemon serves 2,000 other operations", async () => {
    const { on } = await fleet({ mbox: 'mail\n', 'etc/conf': 'c', 'etc/other': 'o' });
    const a = locker(on(0, 'mbox'), 'posix');
    await a.locked();
    const b = locker(on(1, 'mbox'), 'posix');
    await b.proc.waitFor('waiting ');
    await busyHost(hosts[1]!.mnt);
    assert.ok(!b.holds, 'B still waits for A');
    const unlocking = await a.release();
    const locked = await b.locked(10000);
    assert.ok(locked >= unlocking, 'had after the unlock');
  });

  it('a waiting lock interrupted by a signal answers EINTR and is never had later', async () => {
    const { on } = await fleet({ mbox: 'mail\n' });
    const a = locker(on(0, 'mbox'), 'posix');
    await a.locked();
    const b = locker(on(1, 'mbox'), 'posix');
    await b.proc.waitFor('waiting ');
    await new Promise((r) => setTimeout(r, 300));
    await b.interrupt();
    assert.match(b.proc.stdout, /interrupted/);
    await a.release();
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(await tryLock(on(2, 'mbox'), 'posix'), 'ok', 'nobody holds it after the unlock');
  });

  it('an idle mount keeps its locks past the lease time: the session renews the lease', async () => {
    const { on } = await fleet({ mbox: 'mail\n' });
    const a = locker(on(0, 'mbox'), 'posix');
    await a.locked();
    await new Promise((r) => setTimeout(r, 3 * LEASE_SECONDS * 1000));
    assert.equal(await tryLock(on(1, 'mbox'), 'posix'), EAGAIN, "host A's lock outlived three lease times");
    await a.release();
    assert.equal(await tryLock(on(1, 'mbox'), 'posix'), 'ok');
  });

  it('a lock held across a restart of the server is reclaimed in its grace period; one taken meanwhile by another is reported lost', async () => {
    const { on, dir } = await fleet({ mbox: 'mail\n', other: 'x' });
    const a = locker(on(0, 'mbox'), 'posix');
    await a.locked();
    const a2 = locker(on(0, 'other'), 'flock');
    await a2.locked();
    await exp.server.restart();
    // F_GETLK takes nothing: host A's locks show from host B once A has reclaimed them.
    await waitUntil(async () => (await getLock(on(1, 'mbox'))) === 'type 1 start 0 len 0', { timeoutMs: 30000, what: "host A's lock on mbox, reclaimed" });
    assert.equal(await tryLock(on(2, 'other'), 'posix'), EAGAIN, "host A's flock on other, reclaimed");
    await a.release();
    await waitUntil(async () => (await tryLock(on(1, 'mbox'), 'posix')) === 'ok', { timeoutMs: 30000, what: 'mbox free after the grace period' });

    // The server goes away; while it is down, a process on the server takes the lock host B held.
    const b = locker(on(1, 'mbox'), 'posix');
    await b.locked();
    await exp.server.halt();
    const mine = locker(join(dir, 'mbox'), 'posix');
    await mine.locked();
    await exp.server.resume();
    await waitUntil(() => /lost a lock on "mbox"/.test(hosts[1]!.daemon!.stderr()), { timeoutMs: 40000, what: 'the lost-lock line on stderr' });
  });

  it('a host frozen past its lease loses its locks to others, and is told so when it comes back', async () => {
    const { on } = await fleet({ mbox: 'mail\n' });
    const a = locker(on(0, 'mbox'), 'posix');
    await a.locked();
    // Host A's daemon stops answering anything, its lease renewals included.
    const pid = hosts[0]!.daemon!.pid;
    process.kill(pid, 'SIGSTOP');
    try {
      await waitUntil(async () => (await tryLock(on(1, 'mbox'), 'posix')) === 'ok', {
        timeoutMs: 8 * LEASE_SECONDS * 1000,
        intervalMs: 500,
        what: "host A's lease to expire and its lock to go",
      });
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    await waitUntil(() => /lost a lock on "mbox"/.test(hosts[0]!.daemon!.stderr()), { timeoutMs: 20000, what: "host A's lost-lock line" });
    const status = await run(OVSHIFT, ['ctl', hosts[0]!.mnt, 'status']);
    assert.match(status.stdout, /^locks nfs lowers: the server, as NFSv4\.1 byte-range locks \(LOCK\/LOCKU\/LOCKT\); 1 lost /m, status.stderr);
  });

  it('ovshift ctl status says where locks go', async () => {
    await fleet({ mbox: 'mail\n' });
    const status = await run(OVSHIFT, ['ctl', hosts[0]!.mnt, 'status']);
    assert.match(status.stdout, /^locks nfs lowers: the server, as NFSv4\.1 byte-range locks \(LOCK\/LOCKU\/LOCKT\)$/m, status.stderr);
    assert.match(status.stdout, /^lowers .* over NFSv4\.1$/m);
  });

  it('reads through an open file stay right while another host locks, writes on the server, unlocks (seed 000)', async () => {
    const { dir, on } = await fleet({ mbox: 'x'.repeat(5000) });
    const fd = fs.openSync(on(1, 'mbox'), 'r');
    try {
      assert.equal(fs.readFileSync(fd, 'utf8').length, 5000);
      const delivery = locker(join(dir, 'mbox'), 'posix');
      await delivery.locked();
      fs.appendFileSync(join(dir, 'mbox'), 'From someone\nnew mail\n');
      const reader = locker(on(1, 'mbox'), 'posix');
      await reader.proc.waitFor('waiting ');
      await delivery.release();
      await reader.locked(10000);
      const tail = Buffer.alloc(100);
      const n = fs.readSync(fd, tail, 0, 100, 5000);
      assert.equal(tail.subarray(0, n).toString(), 'From someone\nnew mail\n');
    } finally {
      fs.closeSync(fd);
    }
  });
});
