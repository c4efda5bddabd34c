import assert from 'assert/strict';
import * as fs from 'fs';
import { join } from 'path';
import { OVSHIFT, Scratch, startDaemon, type Daemon } from '../helpers/ovshift';
import { python, run, sleep } from '../helpers/proc';
import { waitUntil } from '../helpers/wait';
import { ls, makeTree, read } from '../helpers/tree';

/** The contract: a change on the lower shows at the next access after it completes, at most one tick late. */
function tick(): Promise<void> {
  return sleep(12);
}

function statOrCode(path: string): string {
  try {
    return fs.statSync(path).isDirectory() ? 'dir' : 'file';
  } catch (err) {
    return (err as NodeJS.ErrnoException).code ?? 'error';
  }
}

async function status(mnt: string): Promise<string> {
  return (await run(OVSHIFT, ['ctl', mnt, 'status'])).stdout;
}

async function injectHits(mnt: string): Promise<string> {
  return (await run(OVSHIFT, ['ctl', mnt, 'inject', 'list'])).stdout;
}

describe('lower changes pushed by the kernel (watch=on, the default)', function () {
  this.timeout(60000);
  let s: Scratch;
  const extra: Daemon[] = [];

  beforeEach(() => {
    s = new Scratch();
  });

  afterEach(async () => {
    for (const d of extra.splice(0).reverse()) await d.stop();
    await s.dispose();
  });

  /** Mounts lowers `lowers` (topmost first) with this scratch's upper at its mountpoint. */
  async function mountLowers(lowers: string[], options = '', env?: NodeJS.ProcessEnv): Promise<Daemon> {
    const d = await startDaemon(['-o', `lowerdir=${lowers.join(':')},upperdir=${s.upper},workdir=${s.work}${options ? `,${options}` : ''}`, s.mnt], s.mnt, {
      env,
    });
    extra.push(d);
    return d;
  }

  it('lets the kernel keep what a lower decided, names and absences alike: asking the lower again would fail, nothing asks', async () => {
    makeTree(s.lower, { 'd/f': 'content' });
    for (const [watch, asks] of [
      ['on', false],
      ['off', true],
    ] as const) {
      const d = await s.mount(`watch=${watch}`);
      assert.equal(statOrCode(join(s.mnt, 'd/f')), 'file');
      assert.equal(statOrCode(join(s.mnt, 'd/missing')), 'ENOENT');
      // Any lookup reaching the lower fails from now on.
      assert.equal((await run(OVSHIFT, ['ctl', s.mnt, 'inject', 'add', 'stat:**:EIO'])).code, 0);
      await sleep(50);
      assert.equal(statOrCode(join(s.mnt, 'd/f')), asks ? 'EIO' : 'file', `watch=${watch}: a known name`);
      assert.equal(statOrCode(join(s.mnt, 'd/missing')), asks ? 'EIO' : 'ENOENT', `watch=${watch}: a known absence`);
      assert.match(await injectHits(s.mnt), asks ? /\(hits [1-9]\d*\)/ : /\(hits 0\)/);
      await d.stop();
    }
  });

  it('shows each kind of lower change within a tick: new, removed, replaced and renamed names, data, mode, directories', async () => {
    makeTree(s.lower, { 'etc/keep': 'k', 'etc/old': 'o', 'etc/mode': 'm', 'dir/inner': 'i', data: 'short' });
    await s.mount();
    assert.equal(statOrCode(join(s.mnt, 'etc/new')), 'ENOENT');
    assert.deepEqual(ls(join(s.mnt, 'etc')), ['keep', 'mode', 'old']);
    assert.equal(read(join(s.mnt, 'data')), 'short');
    assert.equal(fs.statSync(join(s.mnt, 'etc/mode')).mode & 0o777, 0o644);
    assert.equal(read(join(s.mnt, 'dir/inner')), 'i');

    fs.writeFileSync(join(s.lower, 'etc/new'), 'appeared');
    fs.unlinkSync(join(s.lower, 'etc/old'));
    fs.chmodSync(join(s.lower, 'etc/mode'), 0o600);
    fs.appendFileSync(join(s.lower, 'data'), ' and longer');
    fs.renameSync(join(s.lower, 'dir'), join(s.lower, 'moved'));
    await tick();
    assert.equal(read(join(s.mnt, 'etc/new')), 'appeared');
    assert.equal(statOrCode(join(s.mnt, 'etc/old')), 'ENOENT');
    assert.deepEqual(ls(join(s.mnt, 'etc')), ['keep', 'mode', 'new']);
    assert.equal(fs.statSync(join(s.mnt, 'etc/mode')).mode & 0o777, 0o600);
    assert.equal(fs.statSync(join(s.mnt, 'data')).size, 'short and longer'.length);
    assert.equal(read(join(s.mnt, 'data')), 'short and longer');
    assert.equal(statOrCode(join(s.mnt, 'dir/inner')), 'ENOENT');
    assert.equal(read(join(s.mnt, 'moved/inner')), 'i');
  });

  it('shows a change made through another name of a hard-linked lower file', async () => {
    makeTree(s.lower, { a: 'version 1' });
    fs.linkSync(join(s.lower, 'a'), join(s.lower, 'b'));
    await s.mount();
    assert.equal(read(join(s.mnt, 'b')), 'version 1');
    fs.writeFileSync(join(s.lower, 'a'), 'version 2, longer');
    await tick();
    assert.equal(fs.statSync(join(s.mnt, 'b')).size, 'version 2, longer'.length);
    assert.equal(read(join(s.mnt, 'b')), 'version 2, longer');
  });

  it('follows what an upper lower layer hides: a whiteout, a .wh. file, an opaque directory appearing', async () => {
    const top = s.dir('lower-top');
    makeTree(s.lower, { x: 'x below', y: 'y below', 'dir/z': 'z below', 'dir2/w': 'w below' });
    makeTree(top, { 'dir/a': 'a above', 'dir2/b': 'b above' });
    await mountLowers([top, s.lower]);
    assert.equal(read(join(s.mnt, 'x')), 'x below');
    assert.equal(read(join(s.mnt, 'y')), 'y below');
    assert.equal(read(join(s.mnt, 'dir/z')), 'z below');
    assert.equal(read(join(s.mnt, 'dir2/w')), 'w below');
    makeTree(top, { x: { whiteout: true }, '.wh.y': '', 'dir2/.wh..wh..opq': '' });
    fs.writeFileSync(join(s.lower, 'dir2/late'), 'also below');
    await python('import os, sys\nos.setxattr(sys.argv[1], "trusted.overlay.opaque", b"y")', [join(top, 'dir')]);
    await tick();
    assert.equal(statOrCode(join(s.mnt, 'x')), 'ENOENT');
    assert.equal(statOrCode(join(s.mnt, 'y')), 'ENOENT');
    assert.equal(statOrCode(join(s.mnt, 'dir/z')), 'ENOENT');
    assert.deepEqual(ls(join(s.mnt, 'dir')), ['a']);
    assert.equal(statOrCode(join(s.mnt, 'dir2/w')), 'ENOENT');
    assert.deepEqual(ls(join(s.mnt, 'dir2')), ['b']);
  });

  it('never keeps an answer built from lower reads that a change reported meanwhile overtook', async () => {
    // The lookup of x reads the top lower (no x), then waits 300 ms in the second one; x is
    // created in the top lower meanwhile. That lookup answers ENOENT, but that absence must
    // not be kept: the next lookup finds x.
    const top = s.dir('lower-top');
    await mountLowers([top, s.lower], 'inject=stat@2:x:delay=300:count=1');
    const racing = fs.promises.stat(join(s.mnt, 'x')).then(
      () => 'file',
      (err: NodeJS.ErrnoException) => err.code,
    );
    await sleep(100);
    fs.writeFileSync(join(top, 'x'), 'created during the lookup');
    assert.equal(await racing, 'ENOENT');
    await tick();
    assert.equal(read(join(s.mnt, 'x')), 'created during the lookup');
  });

  it('invalidates everything after a change storm overflows the kernel queue, and goes on watching', async () => {
    makeTree(s.lower, { 'cached/a': 'a', 'cached/data': 'old data', storm: { dir: true } });
    const d = await s.mount('', { env: { DEBUG: 'ovshift:watch' } });
    assert.equal(read(join(s.mnt, 'cached/a')), 'a');
    assert.equal(statOrCode(join(s.mnt, 'cached/missing')), 'ENOENT');
    assert.equal(read(join(s.mnt, 'cached/data')), 'old data');
    const queued = Number(fs.readFileSync('/proc/sys/fs/fanotify/max_queued_events', 'utf8'));
    // Stopped, the daemon reads no events: the storm fills the queue, and what follows is lost.
    process.kill(d.pid, 'SIGSTOP');
    try {
      await python(
        'import os, sys\nfor i in range(int(sys.argv[2])): open(os.path.join(sys.argv[1], "f%d" % i), "w").close()',
        [join(s.lower, 'storm'), String(queued + 100)],
        {
          timeoutMs: 50000,
        },
      );
      fs.unlinkSync(join(s.lower, 'cached/a'));
      fs.writeFileSync(join(s.lower, 'cached/missing'), 'appeared');
      fs.writeFileSync(join(s.lower, 'cached/data'), 'new data, rewritten');
    } finally {
      process.kill(d.pid, 'SIGCONT');
    }
    await waitUntil(() => /event queue overflowed/.test(d.stderr()) && /invalidating every entry and inode/.test(d.stderr()), {
      what: 'the daemon to read the overflow',
      timeoutMs: 20000,
    });
    await tick();
    assert.equal(statOrCode(join(s.mnt, 'cached/a')), 'ENOENT');
    assert.equal(read(join(s.mnt, 'cached/missing')), 'appeared');
    assert.equal(read(join(s.mnt, 'cached/data')), 'new data, rewritten');
    assert.equal(ls(join(s.mnt, 'storm')).length, queued + 100);
    // Still watched, still kept: a later change shows within a tick.
    assert.match(await status(s.mnt), /^lower changes pushed by the kernel \(fanotify\)$/m);
    fs.writeFileSync(join(s.lower, 'cached/later'), 'later');
    await tick();
    assert.equal(read(join(s.mnt, 'cached/later')), 'later');
  });

  it('falls back to checking at each lookup where a lower cannot be watched (a FUSE lower), and says why', async () => {
    // The inner mount (watch=off: it polls its own lower) is a FUSE filesystem: the outer
    // mount's lower changes on it without the kernel reporting anything to the outer daemon.
    const inner = s.dir('inner-mnt');
    const innerUpper = s.dir('inner-upper');
    const innerWork = s.dir('inner-work');
    makeTree(s.lower, { f: 'one', 'd/x': 'x' });
    extra.push(await startDaemon(['-o', `lowerdir=${s.lower},upperdir=${innerUpper},workdir=${innerWork},watch=off`, inner], inner));
    const local = s.dir('lower-local');
    makeTree(local, { l: 'local' });
    await mountLowers([inner, local]);
    assert.match(
      await status(s.mnt),
      /^lower changes polled at each lookup \(lower layer 1 \([^)]*inner-mnt\): a network or FUSE filesystem: changes made elsewhere are not reported\)$/m,
    );
    assert.equal(read(join(s.mnt, 'f')), 'one');
    assert.equal(statOrCode(join(s.mnt, 'd/new')), 'ENOENT');
    fs.writeFileSync(join(s.lower, 'f'), 'two, longer');
    fs.writeFileSync(join(s.lower, 'd/new'), 'new');
    fs.writeFileSync(join(local, 'l'), 'local, changed');
    // One tick for each of the two mounts the change goes through.
    await tick();
    await tick();
    assert.equal(read(join(s.mnt, 'f')), 'two, longer');
    assert.equal(read(join(s.mnt, 'd/new')), 'new');
    assert.equal(read(join(s.mnt, 'l')), 'local, changed');
  });
});
