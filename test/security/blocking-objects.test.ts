/**
 * Whoever can change a layer behind the daemon's back must not be able to make it wait: a FIFO
 * put where a file or directory was would keep an open waiting for its other end forever (on
 * the daemon's only thread, for a local layer: every user of the mount would hang), and a lease
 * on a layer file makes an open wait out the lease break. The daemon opens layer objects
 * without blocking, refuses what is neither a file nor a directory, and waits out a lease
 * break while serving everything else (src/layers/safe-open.ts).
 */
import assert from 'assert/strict';
import { spawn } from 'child_process';
import * as fs from 'fs';
import { join } from 'path';
import { Scratch } from '../helpers/ovshift';
import { run, sh } from '../helpers/proc';
import { makeTree } from '../helpers/tree';

const CALL_MS = 10000;

describe('security: objects that would make an open wait (FIFOs, leases) in the layers', function () {
  this.timeout(60000);
  let s: Scratch | undefined;

  afterEach(async () => {
    await s?.dispose();
    s = undefined;
  });

  it('a FIFO put in place of an upper file or directory is never waited on', async () => {
    s = new Scratch();
    await s.mount();
    await sh(`echo a > ${s.mnt}/f && mkdir ${s.mnt}/d && stat ${s.mnt}/f ${s.mnt}/d >/dev/null`);
    // Behind the mount's back, while the kernel still holds both names (upper entries: 60 s).
    await sh(`rm ${s.upper}/f && rmdir ${s.upper}/d && mkfifo ${s.upper}/f ${s.upper}/d`);
    // Opening it, or asking its flags (as removing a name does: immutable or append-only forbid
    // it), must not wait for a FIFO's writer.
    const lsattr = await run('lsattr', [join(s.mnt, 'f')], { timeoutMs: CALL_MS });
    const cat = await run('cat', [join(s.mnt, 'f')], { timeoutMs: CALL_MS });
    const rmdir = await run('rmdir', [join(s.mnt, 'd')], { timeoutMs: CALL_MS });
    const unlink = await run('unlink', [join(s.mnt, 'f')], { timeoutMs: CALL_MS });
    for (const r of [lsattr, cat, rmdir, unlink]) assert.equal(r.signal, null, 'returned');
    // Neither the node's file nor a file at all: not opened (as a device with nothing behind it).
    assert.match(lsattr.stderr, /No such device or address/);
    assert.match(cat.stderr, /No such device or address/);
    // Removing acts on the name, whatever it now is; rmdir of a FIFO fails as rmdir does.
    assert.match(rmdir.stderr, /Not a directory/);
    assert.equal(unlink.code, 0, unlink.stderr);
    assert.deepEqual(fs.readdirSync(s.upper), ['d']);
    fs.writeFileSync(join(s.mnt, 'after'), 'still serving');
    assert.equal(fs.readFileSync(join(s.mnt, 'after'), 'utf8'), 'still serving');
  });

  it('a FIFO put in place of a lower file the kernel holds is never waited on, nor copied up', async () => {
    s = new Scratch();
    makeTree(s.lower, { f: 'lower\n' });
    await s.mount('revalidate=cached');
    await sh(`stat ${s.mnt}/f >/dev/null`);
    await sh(`rm ${s.lower}/f && mkfifo ${s.lower}/f`);
    const cat = await run('cat', [join(s.mnt, 'f')], { timeoutMs: CALL_MS });
    const append = await run('sh', ['-c', `echo x >> ${s.mnt}/f`], { timeoutMs: CALL_MS });
    for (const r of [cat, append]) assert.equal(r.signal, null, 'returned');
    assert.notEqual(cat.code, 0, 'nothing read');
    assert.notEqual(append.code, 0, 'nothing written');
    assert.deepEqual(fs.readdirSync(s.upper), [], 'nothing copied up');
    assert.ok(fs.lstatSync(join(s.lower, 'f')).isFIFO());
  });

  it('an open that must break a lease waits for it without keeping the daemon from others', async () => {
    s = new Scratch();
    // Made on the host: no open through the mount holds the file when the lease is taken.
    fs.writeFileSync(join(s.upper, 'leased'), 'a\n');
    fs.writeFileSync(join(s.upper, 'other'), 'b\n');
    await s.mount();
    // A reader on the host holds a read lease on the upper file; told of a writer (SIGIO), it
    // lets go 3 s later, as a lease holder flushing its cache would.
    const holder = spawn(
      '/usr/bin/python3',
      [
        '-c',
        `
import fcntl, os, signal, sys, time
fd = os.open(sys.argv[1], os.O_RDONLY)
fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_RDLCK)
broken = []
signal.signal(signal.SIGIO, lambda *a: broken.append(time.time()))
print('held', flush=True)
while not broken: time.sleep(0.01)
time.sleep(3)
fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)
print('released at', time.time(), flush=True)
time.sleep(5)
`,
        join(s.upper, 'leased'),
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    try {
      let out = '';
      holder.stdout.on('data', (d: Buffer) => (out += d.toString()));
      for (let i = 0; i < 200 && !out.includes('held'); i++) await new Promise((r) => setTimeout(r, 50));
      assert.match(out, /held/, 'the lease was taken');
      const write = run('sh', ['-c', `echo more >> ${s.mnt}/leased`], { timeoutMs: 30000 });
      await new Promise((r) => setTimeout(r, 300));
      // While that open waits, the daemon answers others.
      assert.equal(await fs.promises.readFile(join(s.mnt, 'other'), 'utf8'), 'b\n');
      await fs.promises.writeFile(join(s.mnt, 'new'), 'n');
      const othersDone = Date.now() / 1000;
      const w = await write;
      assert.equal(w.code, 0, w.stderr);
      for (let i = 0; i < 100 && !out.includes('released at'); i++) await new Promise((r) => setTimeout(r, 50));
      const releasedAt = Number(/released at (\S+)/.exec(out)?.[1]);
      assert.ok(releasedAt > 0, 'the write waited for the lease to be let go');
      assert.ok(othersDone < releasedAt, 'other requests were answered before the lease was let go');
      assert.equal(fs.readFileSync(join(s.mnt, 'leased'), 'utf8'), 'a\nmore\n');
    } finally {
      holder.kill('SIGKILL');
    }
  });
});
