/**
 * Locks on files of an nfs:// lower shared with every client of the server: three ovshift
 * mounts of one nfs-ganesha export stand for three hosts (each its own daemon and upper), and
 * processes working on the exported directory itself for programs on the file server. The
 * server runs as on a host of its own (its own portmapper), and an rpc.statd runs, so the locks
 * are monitored ones, as on a fleet's hosts (monitored-locks.test.ts covers their absence).
 */
import assert from 'assert/strict';
import * as fs from 'fs';
import { join } from 'path';
import { getLock, Locker, tryLock, type LockKind } from '../helpers/lockers';
import { NLM_PROGRAM, startRpcCounter, type RpcCounter } from '../helpers/rpc-counter';
import { OVSHIFT } from '../helpers/ovshift';
import { startStatd, type Statd } from '../helpers/statd';
import { startHostPortmapper } from '../nfs/server';
import { run } from '../helpers/proc';
import { waitUntil } from '../helpers/wait';
import { NfsExport, NfsLowerMount } from './fixture';
import { EAGAIN, busyHost, sharedLockCases, type Fleet } from './lock-cases';

/** NLM 4 procedures (RFC 1813 appendix II, and NM_LOCK). */
const NLM = { LOCK: 2, CANCEL: 3, GRANTED_RES: 15, NM_LOCK: 22 };

describe('nfs:// lower: locks shared by every host and the server (NLM)', function () {
  this.timeout(90000);
  let exp: NfsExport;
  let statd: Statd | undefined;
  let portmapper: { stop(): Promise<void> } | undefined;
  let hosts: NfsLowerMount[] = [];
  const lockers: Locker[] = [];
  let counter: RpcCounter | undefined;

  before(async () => {
    // The server as on a host of its own: its NLM registration is not this host's, so the
    // server's GRANTED callbacks reach the hosts' NLM service, not the server itself.
    exp = await NfsExport.start({ ownPortmapper: true });
    portmapper = await startHostPortmapper();
    statd = await startStatd();
  });
  after(async () => {
    await statd?.stop();
    await portmapper?.stop();
    await exp?.stop();
  });
  afterEach(async function () {
    if (this.currentTest?.state === 'failed') hosts.forEach((h, i) => console.log(`host ${i}:`, h.daemon?.stderr().slice(-1500)));
    await Promise.all(lockers.splice(0).map((l) => l.stop()));
    await Promise.all(hosts.splice(0).map((h) => h.remove()));
    await counter?.stop();
    counter = undefined;
  });

  /**
   * Three hosts mounting one area of the export; its directory on the server. With `counted`,
   * host B reaches the server's NLM through a proxy counting its calls (`counter`).
   */
  async function fleet(tree: Record<string, string>, options = '', counted = false): Promise<Fleet> {
    const { dir, url } = exp.area(tree);
    if (counted) counter = await startRpcCounter(exp.server.nlmPort);
    const urlOfB = counter === undefined ? url : url.replace(`nlmport=${exp.server.nlmPort}`, `nlmport=${counter.port}`);
    hosts = [new NfsLowerMount(), new NfsLowerMount(), new NfsLowerMount()];
    await Promise.all(hosts.map((h, i) => h.mount(i === 1 ? urlOfB : url, options, { ...process.env, DEBUG: 'ovshift:nlm,ovshift:locks' })));
    return { dir, on: (host, name) => join(hosts[host]!.mnt, name) };
  }

  /** How many calls of each NLM procedure host B made. */
  function callsOfB(): { lock: number; cancel: number; grantedRes: number } {
    const calls = counter!.calls(NLM_PROGRAM);
    const n = (proc: number): number => calls.get(proc) ?? 0;
    return { lock: n(NLM.LOCK) + n(NLM.NM_LOCK), cancel: n(NLM.CANCEL), grantedRes: n(NLM.GRANTED_RES) };
  }

  function locker(path: string, kind: LockKind): Locker {
    const l = new Locker(path, kind);
    lockers.push(l);
    return l;
  }

  sharedLockCases({ fleet: (tree) => fleet(tree), locker });

  it("a waiting lock on host B is granted by the server's callback after A's unlock; meanwhile B's daemon serves 2,000 other operations", async () => {
    const { on } = await fleet({ mbox: 'mail\n', 'etc/conf': 'c', 'etc/other': 'o' }, '', true);
    const a = locker(on(0, 'mbox'), 'posix');
    await a.locked();
    const b = locker(on(1, 'mbox'), 'posix');
    await b.proc.waitFor('waiting ');
    await busyHost(hosts[1]!.mnt);
    assert.ok(!b.holds, 'B still waits for A');
    const unlocking = await a.release();
    const locked = await b.locked();
    assert.ok(locked >= unlocking, 'granted after the unlock');
    // B's daemon, the first here to wait, took the NLM callbacks of this host: the server queued
    // its LOCK (no retries while the 2,000 operations ran) and called back at A's unlock.
    assert.deepEqual(callsOfB(), { lock: 2, cancel: 0, grantedRes: 1 }, 'the queued LOCK, and one to confirm the grant');
  });

  it('a waiting lock interrupted by a signal answers EINTR, its request is cancelled on the server and never granted later', async () => {
    const { on } = await fleet({ mbox: 'mail\n' }, '', true);
    const a = locker(on(0, 'mbox'), 'posix');
    await a.locked();
    const b = locker(on(1, 'mbox'), 'posix');
    await b.proc.waitFor('waiting ');
    await new Promise((r) => setTimeout(r, 300));
    await b.interrupt();
    assert.match(b.proc.stdout, /interrupted/);
    await waitUntil(() => callsOfB().cancel === 1, { timeoutMs: 5000, what: 'host B to send CANCEL' });
    await a.release();
    assert.equal(await tryLock(on(2, 'mbox'), 'posix'), 'ok', 'nobody holds it after the unlock');
    await new Promise((r) => setTimeout(r, 300));
    assert.deepEqual(callsOfB(), { lock: 1, cancel: 1, grantedRes: 0 }, 'the server offered B nothing after the unlock');
  });

  it("with the server's NLM holding this host's registration (a server on the same host), a waiter retries and is granted after the unlock", async () => {
    const sameHost = await NfsExport.start();
    try {
      const { url } = sameHost.area({ mbox: 'mail\n' });
      counter = await startRpcCounter(sameHost.server.nlmPort);
      hosts = [new NfsLowerMount(), new NfsLowerMount()];
      await hosts[0]!.mount(url);
      await hosts[1]!.mount(url.replace(`nlmport=${sameHost.server.nlmPort}`, `nlmport=${counter.port}`));
      const a = locker(join(hosts[0]!.mnt, 'mbox'), 'posix');
      await a.locked();
      const b = locker(join(hosts[1]!.mnt, 'mbox'), 'posix');
      await b.proc.waitFor('waiting ');
      await waitUntil(() => callsOfB().lock >= 3, { timeoutMs: 5000, what: 'host B to retry its LOCK' });
      const unlocking = await a.release();
      assert.ok((await b.locked()) >= unlocking, 'granted after the unlock');
      assert.equal(callsOfB().grantedRes, 0, 'no callback reached B');
    } finally {
      await Promise.all(lockers.splice(0).map((l) => l.stop()));
      await Promise.all(hosts.splice(0).map((h) => h.remove()));
      await sameHost.stop();
    }
  });

  it('seed 000: readers on two hosts wait for the lock a delivery on the server holds, then read every new byte, never zeros', async () => {
    const { dir, on } = await fleet({ mbox: 'x'.repeat(5000) });
    const fds = [0, 1].map((h) => fs.openSync(on(h, 'mbox'), 'r'));
    try {
      for (const fd of fds) assert.equal(fs.readFileSync(fd, 'utf8').length, 5000);
      const delivery = locker(join(dir, 'mbox'), 'posix');
      await delivery.locked();
      fs.appendFileSync(join(dir, 'mbox'), 'From someone\nnew mail\n');
      const readers = [0, 1].map((h) => locker(on(h, 'mbox'), 'posix'));
      await Promise.all(readers.map((r) => r.proc.waitFor('waiting ')));
      assert.ok(
        readers.every((r) => !r.holds),
        'the readers wait for the delivery',
      );
      await delivery.release();
      // Whichever reader's host asks first gets the lock; the other waits for it in turn.
      const first = await Promise.race(readers.map((r, i) => r.locked().then(() => i)));
      for (const h of [first, 1 - first]) {
        await readers[h]!.locked();
        const tail = Buffer.alloc(100);
        const n = fs.readSync(fds[h]!, tail, 0, 100, 5000);
        assert.equal(tail.subarray(0, n).toString(), 'From someone\nnew mail\n', `host ${h}`);
        if (h === first) {
          assert.ok(!readers[1 - first]!.holds, 'one reader at a time');
          await readers[h]!.release();
        }
      }
    } finally {
      for (const fd of fds) fs.closeSync(fd);
    }
  });

  it('a lock held across a restart of the server is taken again by its host; one taken meanwhile by another is reported lost', async () => {
    const { on } = await fleet({ mbox: 'mail\n', other: 'x' });
    const a = locker(on(0, 'mbox'), 'posix');
    await a.locked();
    const a2 = locker(on(0, 'other'), 'flock');
    await a2.locked();
    await exp.server.restart();
    // F_GETLK takes nothing: host A's lock shows from host B once A has taken it again.
    await waitUntil(async () => (await getLock(on(1, 'mbox'))) === 'type 1 start 0 len 0', { timeoutMs: 30000, what: "host A's lock on mbox, taken again" });
    assert.equal(await tryLock(on(2, 'other'), 'posix'), EAGAIN, "host A's flock on other, taken again");
    await a.release();
    assert.equal(await tryLock(on(1, 'mbox'), 'posix'), 'ok');

    // The server goes away; while host A cannot reach it, a process on the server takes the lock.
    const b = locker(on(1, 'mbox'), 'posix');
    await b.locked();
    await exp.server.halt();
    const mine = locker(join(exp.root, 'area' + exp.areas, 'mbox'), 'posix');
    await mine.locked();
    await exp.server.resume();
    await waitUntil(() => /lost a lock on "mbox"/.test(hosts[1]!.daemon!.stderr()), { timeoutMs: 30000, what: 'the lost-lock line on stderr' });
  });

  it('a waiter queued on the server when the server restarts asks the restarted server at once, and is granted after the unlock', async () => {
    const { dir, on } = await fleet({ mbox: 'mail\n' }, '', true);
    // Held by a process on the server: a lock outside ganesha, there before and after its restart.
    const server = locker(join(dir, 'mbox'), 'posix');
    await server.locked();
    const b = locker(on(1, 'mbox'), 'posix');
    await b.proc.waitFor('waiting ');
    await waitUntil(() => callsOfB().lock === 1, { timeoutMs: 5000, what: "host B's queued LOCK" });
    await exp.server.restart();
    // Not at its 30 s recheck: the lost connection sends it to the restarted server now.
    await waitUntil(() => callsOfB().lock >= 2, { timeoutMs: 10000, what: 'host B to ask the restarted server' });
    assert.ok(!b.holds, 'B still waits for the process on the server');
    const unlocking = await server.release();
    assert.ok((await b.locked()) >= unlocking, 'granted after the unlock');
  });

  it("when the daemon holding the host's NLM registration goes, a waiter in another daemon asks again at once and is granted after the unlock", async () => {
    const { dir, on } = await fleet({ mbox: 'mail\n', other: 'o' }, '', true);
    // Host A's daemon waits first (a blocking lock, had at once): it takes the registration.
    const a = locker(on(0, 'other'), 'posix');
    await a.locked();
    await a.release();
    const server = locker(join(dir, 'mbox'), 'posix');
    await server.locked();
    const b = locker(on(1, 'mbox'), 'posix');
    await b.proc.waitFor('waiting ');
    await waitUntil(() => callsOfB().lock === 1, { timeoutMs: 5000, what: "host B's queued LOCK" });
    await hosts[0]!.remove();
    // Not at its 30 s recheck: told by A's daemon as it left, B asks again and registers.
    await waitUntil(() => callsOfB().lock >= 2, { timeoutMs: 10000, what: 'host B to ask again' });
    const unlocking = await server.release();
    assert.ok((await b.locked(10000)) >= unlocking, 'granted after the unlock');
  });

  it('ovshift ctl status says where locks go; with locks=local they stay in each daemon', async () => {
    const { on } = await fleet({ mbox: 'mail\n' }, 'locks=local');
    const status = await run(OVSHIFT, ['ctl', hosts[0]!.mnt, 'status']);
    assert.match(status.stdout, /^locks this daemon only \(locks=local\)$/m, status.stderr);
    const a = locker(on(0, 'mbox'), 'posix');
    await a.locked();
    assert.equal(await tryLock(on(1, 'mbox'), 'posix'), 'ok', 'host B does not see the lock');
    await a.release();
    const shared = new NfsLowerMount();
    hosts.push(shared);
    await shared.mount(exp.url());
    const sharedStatus = await run(OVSHIFT, ['ctl', shared.mnt, 'status']);
    assert.match(
      sharedStatus.stdout,
      /^locks nfs lowers: the server's lock manager, NLM 4, monitored or not as decided at the first lock \(monitored when rpc.statd runs on this host\)$/m,
      sharedStatus.stderr,
    );
  });
});
