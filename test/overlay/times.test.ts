/**
 * Times as a user of the mount sees them: atimes move as the mount's noatime, relatime or
 * strictatime asks (xfstests generic/003, generic/120), a write through a shared mapping moves
 * mtime and ctime where the kernel writes the upper file itself (generic/215), and
 * chown(f, -1, -1) moves the ctime (pjdfstest chown/00).
 */
import assert from 'assert/strict';
import * as fs from 'fs';
import { join } from 'path';
import { Scratch } from '../helpers/ovshift';
import { python } from '../helpers/proc';

/**
 * Python: creates FILE through the mount, sets its atime back to 2001 (so relatime would move
 * it), then reads it, maps and reads it, and runs it; prints the atime before and after each.
 */
const READS_PY = `
import mmap, os, subprocess, sys, time
p = sys.argv[1] + '/file'
with open(p, 'w') as f:
    f.write('#!/bin/sh\\nexit 0\\n')
os.chmod(p, 0o755)
def step(what, fn):
    os.utime(p, ns=(1_000_000_000_000_000_000, os.stat(p).st_mtime_ns))
    before = os.stat(p).st_atime_ns
    fn()
    after = os.stat(p).st_atime_ns
    print(what, 'moved' if after != before else 'kept')
def read():
    with open(p, 'rb') as f: f.read()
def mapped():
    with open(p, 'rb') as f:
        m = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ); m[:]; m.close()
step('read', read)
step('mmap', mapped)
step('exec', lambda: subprocess.run([p], check=True))
`;

async function atimeSteps(s: Scratch, options: string): Promise<string[]> {
  await s.mount(options);
  const r = await python(READS_PY, [s.mnt]);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.trim().split('\n');
}

describe('overlay: times', function () {
  this.timeout(60000);
  let s: Scratch;

  beforeEach(() => {
    s = new Scratch();
  });

  afterEach(() => s.dispose());

  for (const passthrough of ['on', 'off']) {
    it(`noatime: reading, mapping or running a file leaves its atime (passthrough=${passthrough})`, async () => {
      assert.deepEqual(await atimeSteps(s, `noatime,passthrough=${passthrough}`), ['read kept', 'mmap kept', 'exec kept']);
    });

    // Through the daemon, a mapping or a run served from pages the kernel kept since the first
    // read reaches no one who could move the atime (as on any FUSE filesystem).
    const kept = passthrough === 'on' ? 'moved' : 'kept';
    it(`relatime (the default): an atime older than the mtime moves at a read (passthrough=${passthrough}; from kept pages: ${kept})`, async () => {
      assert.deepEqual(await atimeSteps(s, `passthrough=${passthrough}`), ['read moved', `mmap ${kept}`, `exec ${kept}`]);
    });
  }

  it('chown(f, -1, -1) moves the ctime, of an upper file and of a lower one (copied up for it), as on a local filesystem', async () => {
    fs.writeFileSync(join(s.lower, 'lower'), 'x');
    await s.mount();
    const r = await python(
      `
import os, sys, time
mnt = sys.argv[1]
open(mnt + '/upper', 'w').close()
before = [os.stat(mnt + '/' + n).st_ctime_ns for n in ('upper', 'lower')]
time.sleep(0.05)
for n in ('upper', 'lower'): os.chown(mnt + '/' + n, -1, -1)
print([os.stat(mnt + '/' + n).st_ctime_ns > b for n, b in zip(('upper', 'lower'), before)])
`,
      [s.mnt],
    );
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), '[True, True]');
    assert.ok(fs.existsSync(join(s.upper, 'lower')));
  });

  it('statx shows the birth time of the object behind a name: the lower file, then its upper copy', async () => {
    fs.writeFileSync(join(s.lower, 'lower'), 'x');
    await s.mount();
    fs.writeFileSync(join(s.mnt, 'upper'), 'u');
    // Birth times (statx, AT_STATX_FORCE_SYNC, STATX_BTIME) of the paths, 'none' where not shown.
    const btimes = async (...paths: string[]): Promise<string[]> => {
      const r = await python(
        `
import ctypes, struct, sys
libc = ctypes.CDLL(None, use_errno=True)
for p in sys.argv[1:]:
    buf = ctypes.create_string_buffer(256)
    assert libc.statx(-100, p.encode(), 0x2000, 0x800, buf) == 0, ctypes.get_errno()
    mask, = struct.unpack_from('<I', buf, 0)
    sec, nsec = struct.unpack_from('<qI', buf, 80)
    print('%d.%09d' % (sec, nsec) if mask & 0x800 else 'none')
`,
        paths,
      );
      assert.equal(r.code, 0, r.stderr);
      return r.stdout.trim().split('\n');
    };
    const [up, upLayer, low, lowLayer] = await btimes(join(s.mnt, 'upper'), join(s.upper, 'upper'), join(s.mnt, 'lower'), join(s.lower, 'lower'));
    assert.notEqual(low, 'none');
    assert.equal(up, upLayer);
    assert.equal(low, lowLayer);
    await new Promise((r) => setTimeout(r, 20));
    fs.appendFileSync(join(s.mnt, 'lower'), 'y');
    const [copied, copy] = await btimes(join(s.mnt, 'lower'), join(s.upper, 'lower'));
    assert.equal(copied, copy, 'the copy is a new object');
    assert.notEqual(copied, low);
  });

  it('strictatime: every read moves the atime, also one soon after another', async () => {
    await s.mount('strictatime');
    const r = await python(
      `
import os, sys, time
p = sys.argv[1] + '/file'
with open(p, 'w') as f: f.write('data')
def read():
    with open(p) as f: f.read()
read()
atimes = [os.stat(p).st_atime_ns]
for _ in range(2):
    time.sleep(0.05)
    read()
    atimes.append(os.stat(p).st_atime_ns)
print(atimes[0] < atimes[1] < atimes[2])
`,
      [s.mnt],
    );
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), 'True');
  });

  // Through the daemon (passthrough=off) a mapped write reaches the upper file, and moves its
  // times, when the kernel writes the page back (at the latest when the file is closed), as on
  // any FUSE filesystem without a writeback cache; passed through, at once, as on the upper.
  for (const [passthrough, whileMapped] of [
    ['on', 'True'],
    ['off', 'False'],
  ]) {
    it(`a write through a shared mapping moves mtime and ctime, seen after the close (passthrough=${passthrough}; while mapped: ${whileMapped})`, async () => {
      await s.mount(`passthrough=${passthrough}`);
      const r = await python(
        `
import mmap, os, sys, time
p = sys.argv[1] + '/file'
with open(p, 'wb') as f: f.write(b'\\0' * 4096)
os.utime(p, (1_000_000_000, 1_000_000_000))
before = os.stat(p)
time.sleep(0.05)
fd = os.open(p, os.O_RDWR)
m = mmap.mmap(fd, 4096)
m[0:5] = b'hello'
mapped = os.stat(p)
m.close()
os.close(fd)
closed = os.stat(p)
print(before.st_mtime_ns == 1_000_000_000 * 10**9, closed.st_mtime_ns > before.st_mtime_ns, closed.st_ctime_ns > before.st_ctime_ns)
print(mapped.st_mtime_ns > before.st_mtime_ns and mapped.st_ctime_ns > before.st_ctime_ns)
`,
        [s.mnt],
      );
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(r.stdout.trim().split('\n'), ['True True True', whileMapped]);
    });
  }
});
