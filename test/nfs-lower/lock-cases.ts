/**
 * The lock cases every nfs:// version must pass alike, whatever carries the locks to the server
 * (NLM for NFSv3, the protocol itself for NFSv4): defined inside a suite that supplies its
 * three hosts (`fleet`) and its lock-holding processes (`locker`).
 */
import assert from 'assert/strict';
import { join } from 'path';
import { getLock, tryLock, type Locker, type LockKind } from '../helpers/lockers';
import { python } from '../helpers/proc';

export const EAGAIN = 'errno 11';

export interface Fleet {
  /** The area's directory on the server. */
  dir: string;
  /** A name's path through host `host`'s mount. */
  on: (host: number, name: string) => string;
}

export interface LockSuite {
  fleet(tree: Record<string, string>): Promise<Fleet>;
  locker(path: string, kind: LockKind): Locker;
}

export function sharedLockCases(suite: LockSuite): void {
  for (const kind of ['flock', 'posix'] as const) {
    it(`${kind}: a lock taken on host A holds off hosts B and C and the server; after A unlocks, B gets it`, async () => {
      const { dir, on } = await suite.fleet({ mbox: 'mail\n' });
      const a = suite.locker(on(0, 'mbox'), kind);
      await a.locked();
      assert.equal(await tryLock(on(1, 'mbox'), kind), EAGAIN, 'host B');
      assert.equal(await tryLock(on(2, 'mbox'), kind), EAGAIN, 'host C');
      // ganesha takes OFD locks on its file: a server process's fcntl lock conflicts; flock(2)
      // there is another lock family (as for the kernel's NFS client, which maps flock to fcntl).
      assert.equal(await tryLock(join(dir, 'mbox'), 'posix'), EAGAIN, 'the server');
      await a.release();
      assert.equal(await tryLock(on(1, 'mbox'), kind), 'ok', 'host B after the unlock');
    });
  }

  it('a process on the server holding an fcntl lock holds off every host, for flock and fcntl alike', async () => {
    const { dir, on } = await suite.fleet({ mbox: 'mail\n' });
    const server = suite.locker(join(dir, 'mbox'), 'posix');
    await server.locked();
    for (const host of [0, 1, 2]) {
      assert.equal(await tryLock(on(host, 'mbox'), 'posix'), EAGAIN, `host ${host} fcntl`);
      assert.equal(await tryLock(on(host, 'mbox'), 'flock'), EAGAIN, `host ${host} flock`);
    }
    await server.release();
    assert.equal(await tryLock(on(2, 'mbox'), 'posix'), 'ok');
  });

  it("F_GETLK on host B reports host A's lock", async () => {
    const { on } = await suite.fleet({ mbox: 'mail\n' });
    assert.equal(await getLock(on(1, 'mbox')), 'type 2 start 0 len 0', 'nothing in the way yet');
    const a = suite.locker(on(0, 'mbox'), 'posix');
    await a.locked();
    assert.equal(await getLock(on(1, 'mbox')), 'type 1 start 0 len 0');
  });
}

/** 2,000 operations through the mount at `mnt` (stat, read, list, write), done one after another. */
export async function busyHost(mnt: string): Promise<void> {
  const busy = await python(
    `
import os, sys
m = sys.argv[1]
for i in range(500):
    os.stat(m + '/etc/conf')
    assert open(m + '/etc/other').read() == 'o'
    assert sorted(os.listdir(m + '/etc'))[:2] == ['conf', 'other']
    with open(m + '/note%d' % (i % 7), 'w') as f: f.write(str(i))
print('done')
`,
    [mnt],
    { timeoutMs: 60000 },
  );
  assert.equal(busy.stdout.trim(), 'done', busy.stderr);
}
