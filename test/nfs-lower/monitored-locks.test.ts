/**
 * Monitored NLM locks: with the host's rpc.statd running, a host's locks on an nfs:// lower go
 * as monitored LOCKs (the server's statd watches the host and frees its locks when it reboots;
 * this host's statd watches the server), and `ovshift ctl MNT status` says so. Without statd,
 * unmonitored NM_LOCKs, also said.
 */
import assert from 'assert/strict';
import { join } from 'path';
import { Locker, tryLock } from '../helpers/lockers';
import { OVSHIFT } from '../helpers/ovshift';
import { run } from '../helpers/proc';
import { NLM_PROGRAM, startRpcCounter, type RpcCounter } from '../helpers/rpc-counter';
import { startStatd, type Statd } from '../helpers/statd';
import { startHostPortmapper } from '../nfs/server';
import { NfsExport, NfsLowerMount } from './fixture';

const NLM = { LOCK: 2, NM_LOCK: 22 };

describe('nfs:// lower: monitored locks with the host’s rpc.statd', function () {
  this.timeout(90000);
  let exp: NfsExport;
  let statd: Statd | undefined;
  let portmapper: { stop(): Promise<void> } | undefined;
  let counter: RpcCounter | undefined;
  const hosts: NfsLowerMount[] = [];
  const lockers: Locker[] = [];

  before(async () => {
    exp = await NfsExport.start({ ownPortmapper: true });
    portmapper = await startHostPortmapper();
  });
  after(async () => {
    await portmapper?.stop();
    await exp?.stop();
  });
  afterEach(async () => {
    await Promise.all(lockers.splice(0).map((l) => l.stop()));
    await Promise.all(hosts.splice(0).map((h) => h.remove()));
    await counter?.stop();
    counter = undefined;
    await statd?.stop();
    statd = undefined;
  });

  /** Two hosts; host A reaches the server's NLM through a proxy counting its calls. */
  async function twoHosts(): Promise<{ dir: string; on: (host: number, name: string) => string }> {
    const { dir, url } = exp.area({ mbox: 'mail\n' });
    counter = await startRpcCounter(exp.server.nlmPort);
    const urls = [url.replace(`nlmport=${exp.server.nlmPort}`, `nlmport=${counter.port}`), url];
    for (const u of urls) {
      const h = new NfsLowerMount();
      hosts.push(h);
      await h.mount(u, '', { ...process.env, DEBUG: 'ovshift:nlm' });
    }
    return { dir, on: (host, name) => join(hosts[host]!.mnt, name) };
  }

  async function lockStatus(host: number): Promise<string> {
    const status = await run(OVSHIFT, ['ctl', hosts[host]!.mnt, 'status']);
    return /^locks (.*)$/m.exec(status.stdout)?.[1] ?? `(no locks line: ${status.stdout} ${status.stderr})`;
  }

  it('statd listens on loopback addresses only', async () => {
    statd = await startStatd();
    const addresses = await statd.listening();
    assert.ok(addresses.length > 0, 'statd listens somewhere');
    for (const a of addresses) assert.match(a, /^(127\.0\.0\.1|\[::1\]):\d+$/);
  });

  it('with rpc.statd: monitored LOCKs that still conflict across hosts; statd watches the server; status says monitored', async () => {
    statd = await startStatd();
    const { dir, on } = await twoHosts();
    assert.match(await lockStatus(0), /decided at the first lock/);
    const a = new Locker(on(0, 'mbox'), 'posix');
    lockers.push(a);
    await a.locked();
    assert.equal(await tryLock(on(1, 'mbox'), 'posix'), 'errno 11', 'host B');
    assert.equal(await tryLock(join(dir, 'mbox'), 'posix'), 'errno 11', 'the server');
    const calls = counter!.calls(NLM_PROGRAM);
    assert.equal(calls.get(NLM.LOCK), 1, 'one monitored LOCK');
    assert.equal(calls.get(NLM.NM_LOCK), undefined, 'no NM_LOCK');
    assert.equal(await lockStatus(0), "nfs lowers: the server's lock manager, NLM 4, monitored (this host's rpc.statd watches the server)");
    // statd records a host under its canonical name: 127.0.0.1's is localhost.
    assert.ok(
      statd.monitored().some((h) => /^(localhost|127\.0\.0\.1)$/.test(h)),
      `statd watches the server: ${statd.monitored().join(', ')}`,
    );
    await a.release();
    assert.equal(await tryLock(on(1, 'mbox'), 'posix'), 'ok', 'host B after the unlock');
  });

  it('without rpc.statd: unmonitored NM_LOCKs; status says unmonitored and why', async () => {
    const { on } = await twoHosts();
    const a = new Locker(on(0, 'mbox'), 'posix');
    lockers.push(a);
    await a.locked();
    assert.equal(await tryLock(on(1, 'mbox'), 'posix'), 'errno 11', 'host B');
    const calls = counter!.calls(NLM_PROGRAM);
    assert.equal(calls.get(NLM.NM_LOCK), 1);
    assert.equal(calls.get(NLM.LOCK), undefined);
    assert.equal(await lockStatus(0), "nfs lowers: the server's lock manager, NLM 4, unmonitored (NM_LOCK): no rpc.statd on this host");
  });
});
