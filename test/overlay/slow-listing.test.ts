/**
 * A lower that answers slowly (here: every stat of an entry delayed by fault injection) must not
 * make a listing cost one delay per entry, and a listing whose caller was killed must be
 * answered at once rather than leave the caller in state D until every entry is checked; a
 * signal the caller handles must not make its listing fail (EINTR) or come back short.
 */
import assert from 'assert/strict';
import { join } from 'path';
import { OVSHIFT, Scratch } from '../helpers/ovshift';
import { Background, python, run, sleep } from '../helpers/proc';
import { makeTree } from '../helpers/tree';

const ENTRIES = 20;
const NAMES = Array.from({ length: ENTRIES }, (_, i) => `f${String(i).padStart(2, '0')}`);

/** How long the child took to be reaped after `since`; gives up (Infinity) after `capMs`. */
async function reapedAfter(child: Background, since: number, capMs = 5000): Promise<number> {
  const reaped = await Promise.race([child.exited.then(() => true), sleep(capMs).then(() => false)]);
  return reaped ? Date.now() - since : Infinity;
}

/** Names and d_ino of a directory as readdir(3) returns them, in its order. */
async function dirents(dir: string): Promise<string> {
  const r = await python('import os, sys\nfor e in os.scandir(sys.argv[1]): print(e.name, e.inode())', [dir]);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout;
}

describe('slow lower: listings', function () {
  this.timeout(60000);
  let s: Scratch;
  const children: Background[] = [];

  /** SIGKILLs a child stuck in a listing (after `afterMs`) and checks it is reaped within 2 s. */
  async function killDuringListing(child: Background, afterMs = 300): Promise<void> {
    if (!children.includes(child)) children.push(child);
    await sleep(afterMs);
    const killed = Date.now();
    child.signal('SIGKILL');
    const took = await reapedAfter(child, killed);
    assert.ok(took < 2000, `reaped ${took} ms after SIGKILL`);
  }

  beforeEach(() => {
    s = new Scratch();
    makeTree(s.lower, Object.fromEntries(NAMES.map((n) => [`d/${n}`, n])));
  });

  afterEach(async () => {
    // The mount first: a child stuck in a request is freed once its connection goes.
    await s.dispose();
    for (const c of children.splice(0)) await c.stop();
  });

  it('checks the entries of a listing concurrently: 20 entries whose stat takes 500 ms list in well under 10 s', async () => {
    await s.mount('inject=stat:d/f*:delay=500');
    const start = Date.now();
    const r = await run('ls', ['-1', join(s.mnt, 'd')], { timeoutMs: 30000 });
    const took = Date.now() - start;
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(
      r.stdout.split('\n').filter((l) => l !== ''),
      NAMES,
    );
    // Entry by entry this takes 20 × 500 ms; concurrently, about one delay.
    assert.ok(took < 3000, `listing took ${took} ms`);
  });

  it('lists the same names and inode numbers, in the same order, when the layers are slow', async () => {
    makeTree(s.lower, { 'd/gone': 'g', 'd/sub/x': 'x', 'd/dev': { whiteout: true } });
    makeTree(s.upper, { 'd/up': 'u', 'd/f03': 'copied', 'd/gone': { whiteout: true } });
    await s.mount();
    const fast = await dirents(join(s.mnt, 'd'));
    const add = await run(OVSHIFT, ['ctl', s.mnt, 'inject', 'add', 'stat:**:delay=20;getxattr:**:delay=10;readdir:**:delay=30']);
    assert.equal(add.code, 0, add.stderr);
    const slow = await dirents(join(s.mnt, 'd'));
    assert.equal(slow, fast);
    for (const name of ['up', 'sub', ...NAMES]) assert.match(fast, new RegExp(`^${name} `, 'm'));
    for (const name of ['gone', 'dev']) assert.doesNotMatch(fast, new RegExp(`^${name} `, 'm'));
  });

  it('lists in full, never EINTR, for a caller whose handled signals interrupt the listing (as Go preempts with SIGURG)', async () => {
    await s.mount('inject=stat:d/f*:delay=300;readdir:d:delay=300');
    // readdir(3) passes a getdents EINTR on (perl retries nothing): a handler that returns must
    // leave the listing whole, as on a local filesystem.
    const lister = new Background('perl', [
      '-e',
      `
      $SIG{USR1} = sub {}; $| = 1; print "ready\n";
      for my $round (1 .. 3) {
        opendir(my $d, $ARGV[0]) or die "opendir: $!";
        my @names; $! = 0;
        while (defined(my $e = readdir($d))) { push @names, $e }
        die "readdir: $!" if $!;
        closedir($d);
        print scalar(grep { !/^\\./ } @names), "\\n";
      }`,
      join(s.mnt, 'd'),
    ]);
    children.push(lister);
    await sleep(200);
    let signals = 0;
    while (lister.running && signals < 400) {
      lister.signal('SIGUSR1');
      signals++;
      await sleep(10);
    }
    await Promise.race([lister.exited, sleep(20000)]);
    assert.equal(lister.stderr, '', `${signals} signals`);
    assert.equal(lister.stdout, `ready\n${ENTRIES}\n${ENTRIES}\n${ENTRIES}\n`);
  });

  it('lets a caller go at once when it is killed after a signal it handled interrupted the listing (10 s per entry)', async () => {
    await s.mount('inject=stat:d/f*:delay=10000');
    const lister = new Background('perl', [
      '-e',
      '$SIG{USR1} = sub {}; $| = 1; print "ready\\n"; opendir(my $d, $ARGV[0]) or die; my @n = readdir($d);',
      join(s.mnt, 'd'),
    ]);
    children.push(lister);
    await lister.waitFor('ready', 5000);
    await sleep(300);
    lister.signal('SIGUSR1');
    await sleep(500);
    assert.ok(lister.running, 'a handled signal does not end the listing');
    await killDuringListing(lister, 0);
  });

  it('lets an ls -l killed during the listing go at once (500 ms per entry)', async () => {
    await s.mount('inject=stat:d/f*:delay=500');
    await killDuringListing(new Background('ls', ['-l', join(s.mnt, 'd')]));
  });

  it('answers an interrupted listing without waiting for its checks (10 s per entry)', async () => {
    await s.mount('inject=stat:d/f*:delay=10000');
    await killDuringListing(new Background('ls', ['-l', join(s.mnt, 'd')]));
    // The mount is still whole: without the delay, the listing is all there.
    const clear = await run(OVSHIFT, ['ctl', s.mnt, 'inject', 'clear']);
    assert.equal(clear.code, 0, clear.stderr);
    const r = await run('ls', ['-1', join(s.mnt, 'd')], { timeoutMs: 30000 });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(
      r.stdout.split('\n').filter((l) => l !== ''),
      NAMES,
    );
  });
});
