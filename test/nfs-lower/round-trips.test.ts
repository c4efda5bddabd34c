/**
 * Round trips to the NFS server per system call, counted by a proxy between ovshift and
 * nfs-ganesha: the kernel revalidates each path component with one LOOKUP request, and each
 * costs at most one NFS call; the bottom layer is never probed for opaque markers or whiteouts.
 */
import assert from 'assert/strict';
import * as fs from 'fs';
import { join } from 'path';
import { NFS3_PROC, NFS_PROGRAM, startRpcCounter, type RpcCounter } from '../helpers/rpc-counter';
import { exportPerSuite, type NfsExport, type NfsLowerMount } from './fixture';
import { sleep } from '../helpers/proc';
import { waitUntil } from '../helpers/wait';

const DEPTHS = [1, 3, 6, 10];
const NAMES = 'abcdefghij'.split('');

function pathAt(depth: number): string {
  return [...NAMES.slice(0, depth - 1), 'file'].join('/');
}

/** A mount of a new area holding a file at each depth, its NFS calls going through a counting proxy. */
async function countedMount(suite: { exp: NfsExport; m: NfsLowerMount }, extra = ''): Promise<{ dir: string; mnt: string; counter: RpcCounter }> {
  const tree: Record<string, string> = {};
  for (const d of DEPTHS) tree[pathAt(d)] = `depth ${d}`;
  const { dir, url } = suite.exp.area(tree);
  const counter = await startRpcCounter(suite.exp.server.port);
  try {
    await suite.m.mount(url.replace(`127.0.0.1:${suite.exp.server.port}/`, `127.0.0.1:${counter.port}/`), extra);
  } catch (err) {
    await counter.stop();
    throw err;
  }
  return { dir, mnt: suite.m.mnt, counter };
}

function describeCalls(counter: RpcCounter): string {
  const names = new Map(Object.entries(NFS3_PROC).map(([k, v]) => [v, k]));
  return [...counter.calls(NFS_PROGRAM)].map(([proc, n]) => `${names.get(proc) ?? proc}×${n}`).join(' ') || 'none';
}

describe('nfs:// lower (NFSv3): NFS round trips per system call', function () {
  this.timeout(60000);
  const suite = exportPerSuite();
  let counter: RpcCounter | undefined;

  afterEach(async () => {
    await counter?.stop();
    counter = undefined;
  });

  async function mountCounted(extra = ''): Promise<{ dir: string; mnt: string; counter: RpcCounter }> {
    const counted = await countedMount(suite, extra);
    counter = counted.counter;
    return counted;
  }

  it('stat() at depth d costs d LOOKUPs on a warm mount (revalidate=always), one per component, none for whiteouts or opaque markers', async () => {
    const { mnt, counter } = await mountCounted();
    for (const d of DEPTHS) {
      await fs.promises.stat(join(mnt, pathAt(d)));
      // Past the tick for which the kernel may keep an entry the lower decides.
      await sleep(20);
      counter.reset();
      await fs.promises.stat(join(mnt, pathAt(d)));
      assert.equal(counter.total(NFS_PROGRAM), d, `depth ${d}: ${describeCalls(counter)}`);
      assert.deepEqual(counter.lookedUp(), pathAt(d).split('/'), `depth ${d}: one LOOKUP per component, in order`);
    }
  });

  it('listing a directory with attributes (READDIRPLUS) costs its READDIRPLUS, not a LOOKUP per entry', async () => {
    const tree: Record<string, string> = {};
    for (let i = 0; i < 40; i++) tree[`list/f${i}`] = 'x'.repeat(i);
    const { url } = suite.exp.area(tree);
    counter = await startRpcCounter(suite.exp.server.port);
    await suite.m.mount(url.replace(`127.0.0.1:${suite.exp.server.port}/`, `127.0.0.1:${counter.port}/`));
    const list = join(suite.m.mnt, 'list');
    await fs.promises.stat(list);
    await sleep(20);
    counter.reset();
    const dir = await fs.promises.opendir(list);
    const names: string[] = [];
    for await (const e of dir) names.push(e.name);
    assert.equal(names.length, 40);
    const calls = counter.calls(NFS_PROGRAM);
    assert.ok((calls.get(NFS3_PROC.READDIRPLUS) ?? 0) >= 1, describeCalls(counter));
    assert.ok((calls.get(NFS3_PROC.LOOKUP) ?? 0) <= 1, `the directory's own LOOKUP at most: ${describeCalls(counter)}`);
    // What the listing told the kernel is the server's: sizes as written.
    for (const name of names) assert.equal((await fs.promises.lstat(join(list, name))).size, Number(name.slice(1)));
  });

  it('opening and reading a small file at depth 3 costs its path, one LOOKUP at open with one READ beside it; read again unchanged, no READ', async () => {
    const { mnt, counter } = await mountCounted();
    const file = join(mnt, pathAt(3));
    counter.reset();
    const fh = await fs.promises.open(file);
    let calls: Map<number, number>;
    try {
      // The READ went out with the open's LOOKUP, before any read(): the read waits for no
      // second round trip.
      calls = counter.calls(NFS_PROGRAM);
      assert.equal(calls.get(NFS3_PROC.READ), 1, `after open(), before read(): ${describeCalls(counter)}`);
      assert.equal(await fh.readFile('utf8'), 'depth 3');
    } finally {
      await fh.close();
    }
    calls = counter.calls(NFS_PROGRAM);
    assert.equal(calls.get(NFS3_PROC.READ), 1, describeCalls(counter));
    assert.ok((calls.get(NFS3_PROC.LOOKUP) ?? 0) <= 3 + 1, describeCalls(counter));
    // A GETATTR at most: the kernel's size check before reading, if a tick passed since the LOOKUP.
    assert.ok((calls.get(NFS3_PROC.GETATTR) ?? 0) <= 1, describeCalls(counter));
    assert.ok(counter.total(NFS_PROGRAM) <= 3 + 2 + 1, describeCalls(counter));
    assert.ok(!counter.lookedUp().some((n) => n.startsWith('.wh.')), `no whiteout or opaque probes: ${counter.lookedUp().join(' ')}`);
    await sleep(20);
    counter.reset();
    // The file is what it was: the kernel keeps the pages it read (the LOOKUP at open says so).
    assert.equal(await fs.promises.readFile(file, 'utf8'), 'depth 3');
    calls = counter.calls(NFS_PROGRAM);
    assert.equal(calls.get(NFS3_PROC.READ) ?? 0, 0, describeCalls(counter));
    // The path and the LOOKUP at open; and, when more than a tick passed between that LOOKUP
    // and the read (a loaded machine), the kernel's check of the size it keeps: one GETATTR.
    assert.ok((calls.get(NFS3_PROC.LOOKUP) ?? 0) <= 3 + 1, describeCalls(counter));
    assert.ok((calls.get(NFS3_PROC.GETATTR) ?? 0) <= 1, describeCalls(counter));
    assert.ok(counter.total(NFS_PROGRAM) <= 3 + 1 + 1, describeCalls(counter));
  });
});

/** NFSv4 operation numbers used below. */
const V4 = { GETATTR: 9, GETFH: 10, LOOKUP: 15, OPEN: 18, PUTFH: 22, READ: 25, CLOSE: 4 };

describe('nfs:// lower (NFSv4.1): one COMPOUND per lookup', function () {
  this.timeout(60000);
  const suite = exportPerSuite({ vers: '4.1' });
  let counter: RpcCounter | undefined;

  afterEach(async () => {
    await counter?.stop();
    counter = undefined;
  });

  async function mountCounted(): Promise<{ mnt: string; counter: RpcCounter }> {
    const counted = await countedMount(suite);
    counter = counted.counter;
    return counted;
  }

  it('stat() at depth d costs d COMPOUNDs, each PUTFH + LOOKUP + GETFH + GETATTR: one per FUSE LOOKUP, no whiteout probes', async () => {
    const { mnt, counter } = await mountCounted();
    for (const d of DEPTHS) {
      await fs.promises.stat(join(mnt, pathAt(d)));
      await sleep(20);
      counter.reset();
      await fs.promises.stat(join(mnt, pathAt(d)));
      const compounds = counter.compounds();
      assert.equal(counter.total(NFS_PROGRAM), d, `depth ${d}: ${JSON.stringify(compounds)}`);
      for (const ops of compounds) assert.deepEqual(ops, [V4.PUTFH, V4.LOOKUP, V4.GETFH, V4.GETATTR], `depth ${d}`);
      assert.deepEqual(counter.lookedUp(), pathAt(d).split('/'), `depth ${d}: one LOOKUP per component, in order`);
    }
  });

  it('opening and reading a small file at depth 3: its path, then one COMPOUND to look it up, open and read it, and its CLOSE', async () => {
    const { mnt, counter } = await mountCounted();
    const file = join(mnt, pathAt(3));
    await fs.promises.stat(file);
    await sleep(20);
    counter.reset();
    assert.equal(await fs.promises.readFile(file, 'utf8'), 'depth 3');
    // The CLOSE follows the release, which the kernel sends after close(2) returns.
    await waitUntil(() => counter.compounds().some((ops) => ops.includes(V4.CLOSE)), { timeoutMs: 5000, what: 'the CLOSE' });
    const compounds = counter.compounds();
    const count = (op: number): number => compounds.filter((ops) => ops.includes(op)).length;
    assert.equal(count(V4.OPEN), 1, JSON.stringify(compounds));
    // The open's lookup of the name, its OPEN and the first READ go as one COMPOUND; the
    // file's read is answered from that READ.
    assert.deepEqual(
      compounds.find((ops) => ops.includes(V4.OPEN)),
      [V4.PUTFH, V4.LOOKUP, V4.GETFH, V4.GETATTR, V4.OPEN, V4.READ],
    );
    assert.equal(count(V4.READ), 1, JSON.stringify(compounds));
    assert.equal(count(V4.CLOSE), 1, JSON.stringify(compounds));
    assert.ok(count(V4.LOOKUP) <= 3 + 1, JSON.stringify(compounds));
    // The path, LOOKUP + OPEN + READ, CLOSE; and a GETATTR if a tick passed before the read.
    assert.ok(compounds.length <= 3 + 1 + 1 + 1, JSON.stringify(compounds));
    assert.ok(!counter.lookedUp().some((n) => n.startsWith('.wh.')), counter.lookedUp().join(' '));
    // Read again unchanged: the kernel keeps the pages it read, and the open reads nothing.
    await sleep(20);
    counter.reset();
    assert.equal(await fs.promises.readFile(file, 'utf8'), 'depth 3');
    await waitUntil(() => counter.compounds().some((ops) => ops.includes(V4.CLOSE)), { timeoutMs: 5000, what: 'the second CLOSE' });
    const again = counter.compounds();
    assert.deepEqual(
      again.find((ops) => ops.includes(V4.OPEN)),
      [V4.PUTFH, V4.LOOKUP, V4.GETFH, V4.GETATTR, V4.OPEN],
    );
    assert.ok(!again.some((ops) => ops.includes(V4.READ)), JSON.stringify(again));
  });
});
