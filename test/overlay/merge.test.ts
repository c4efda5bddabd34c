import assert from 'assert/strict';
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import { join } from 'path';
import { Scratch, startDaemon, type Daemon } from '../helpers/ovshift';
import { python } from '../helpers/proc';
import { ls, makeTree, read } from '../helpers/tree';

describe('overlay: lookup and listing through the layers', function () {
  this.timeout(30000);
  let s: Scratch;
  let d: Daemon | undefined;
  let lower2: string;

  beforeEach(() => {
    s = new Scratch();
    lower2 = s.dir('lower2');
  });

  afterEach(async () => {
    await d?.stop();
    d = undefined;
    s.remove();
  });

  async function mountTwoLowers(): Promise<Daemon> {
    return startDaemon(['-o', `lowerdir=${s.lower}:${lower2},upperdir=${s.upper},workdir=${s.work}`, s.mnt], s.mnt);
  }

  it('merges directories and lets a higher layer hide what is below it', async () => {
    makeTree(lower2, {
      'etc/a': 'a from lower2',
      'etc/b': 'b from lower2',
      'dir/x': 'x in lower2',
      'file-or-dir/inner': 'hidden',
      only2: 'only in lower2',
    });
    makeTree(s.lower, { 'etc/b': 'b from lower1', 'etc/c': 'c from lower1', 'file-or-dir': 'a file on top', 'dir/y': 'y' });
    makeTree(s.upper, { 'etc/c': 'c from upper', 'etc/d': 'd from upper' });
    d = await mountTwoLowers();
    assert.deepEqual(ls(join(s.mnt, 'etc')), ['a', 'b', 'c', 'd']);
    assert.equal(read(join(s.mnt, 'etc/a')), 'a from lower2');
    assert.equal(read(join(s.mnt, 'etc/b')), 'b from lower1');
    assert.equal(read(join(s.mnt, 'etc/c')), 'c from upper');
    assert.deepEqual(ls(join(s.mnt, 'dir')), ['x', 'y']);
    assert.ok(fs.statSync(join(s.mnt, 'file-or-dir')).isFile(), 'a non-directory above hides the directory below');
    assert.equal(read(join(s.mnt, 'file-or-dir')), 'a file on top');
    assert.deepEqual(ls(s.mnt), ['dir', 'etc', 'file-or-dir', 'only2']);
  });

  it('hides whited-out names: 0/0 devices in the upper and in lowers, and .wh. files', async () => {
    makeTree(lower2, { a: '2', b: '2', c: '2', 'sub/d': '2' });
    makeTree(s.lower, { b: { whiteout: true }, 'sub/.wh.d': '' });
    makeTree(s.upper, { a: { whiteout: true }, '.wh.c': '' });
    d = await mountTwoLowers();
    assert.deepEqual(ls(s.mnt), ['sub']);
    assert.deepEqual(ls(join(s.mnt, 'sub')), []);
    for (const n of ['a', 'b', 'c', 'sub/d']) assert.throws(() => fs.statSync(join(s.mnt, n)), { code: 'ENOENT' });
  });

  it('stops merging at opaque directories (xattr or .wh..wh..opq marker)', async () => {
    makeTree(lower2, { 'x/old': '2', 'y/old': '2' });
    makeTree(s.upper, { 'x/new': 'u', 'y/new': 'u', 'y/.wh..wh..opq': '' });
    fs.writeFileSync(join(s.lower, 'keep'), '');
    fs.mkdirSync(join(s.lower, 'x'));
    execFileSync('setfattr', ['-n', 'trusted.overlay.opaque', '-v', 'y', join(s.upper, 'x')]);
    d = await mountTwoLowers();
    assert.deepEqual(ls(join(s.mnt, 'x')), ['new']);
    assert.deepEqual(ls(join(s.mnt, 'y')), ['new']);
    assert.throws(() => fs.statSync(join(s.mnt, 'x/old')), { code: 'ENOENT' });
  });

  it('lists merged directories without duplicates, with the right d_type, hiding overlay names', async () => {
    makeTree(lower2, { 'm/f': '', 'm/d': { dir: true }, 'm/l': { symlink: 'f' }, 'm/gone': '' });
    makeTree(s.lower, { 'm/f': 'again', 'm/p': { fifo: true } });
    makeTree(s.upper, { 'm/f': 'top', 'm/gone': { whiteout: true }, 'm/new': '' });
    d = await mountTwoLowers();
    const r = await python(
      `
import os, sys, json
print(json.dumps(sorted((e.name, 'd' if e.is_dir(follow_symlinks=False) else 'l' if e.is_symlink() else 'f' if e.is_file(follow_symlinks=False) else 'o') for e in os.scandir(sys.argv[1]))))
`,
      [join(s.mnt, 'm')],
    );
    assert.deepEqual(JSON.parse(r.stdout), [
      ['d', 'd'],
      ['f', 'f'],
      ['l', 'l'],
      ['new', 'f'],
      ['p', 'o'],
    ]);
  });

  it('keeps directory offsets stable: telldir/seekdir return to the same entry', async () => {
    for (let i = 0; i < 300; i++) fs.writeFileSync(join(s.lower, `lower-${i}`), '');
    for (let i = 0; i < 300; i++) fs.writeFileSync(join(s.upper, `upper-${i}`), '');
    d = await s.mount();
    const r = await python(
      `
import ctypes, ctypes.util, sys
libc = ctypes.CDLL(ctypes.util.find_library('c'), use_errno=True)
class Dirent(ctypes.Structure):
    _fields_ = [('d_ino', ctypes.c_uint64), ('d_off', ctypes.c_int64), ('d_reclen', ctypes.c_ushort),
                ('d_type', ctypes.c_ubyte), ('d_name', ctypes.c_char * 256)]
libc.opendir.restype = ctypes.c_void_p
libc.readdir.restype = ctypes.POINTER(Dirent)
libc.readdir.argtypes = [ctypes.c_void_p]
libc.telldir.restype = ctypes.c_long
libc.telldir.argtypes = [ctypes.c_void_p]
libc.seekdir.argtypes = [ctypes.c_void_p, ctypes.c_long]
libc.rewinddir.argtypes = [ctypes.c_void_p]
d = libc.opendir(sys.argv[1].encode())
names, marks = [], {}
while True:
    pos = libc.telldir(d)
    e = libc.readdir(d)
    if not e: break
    names.append(e.contents.d_name.decode()); marks[len(names) - 1] = pos
ok = True
for i in (5, 299, 450, 601):
    libc.seekdir(d, marks[i])
    e = libc.readdir(d)
    ok = ok and e.contents.d_name.decode() == names[i]
libc.rewinddir(d)
again = []
while True:
    e = libc.readdir(d)
    if not e: break
    again.append(e.contents.d_name.decode())
print(len(names), len(set(names)), ok, again == names)
`,
      [s.mnt],
    );
    assert.equal(r.stdout.trim(), '602 602 True True', r.stderr);
  });

  it('lists a directory changing during a long listing as a local filesystem would: no duplicates, and unchanged entries all seen', async () => {
    for (let i = 0; i < 1000; i++) fs.writeFileSync(join(s.lower, `f${i}`), '');
    d = await s.mount();
    const r = await python(
      `
import os, sys
it = os.scandir(sys.argv[1])
seen = []
for i, e in enumerate(it):
    seen.append(e.name)
    if i == 100:
        os.unlink(os.path.join(sys.argv[1], 'f999'))
        open(os.path.join(sys.argv[1], 'added'), 'w').close()
stable = set('f%d' % i for i in range(999))
print(len(seen) == len(set(seen)), stable <= set(seen))
`,
      [s.mnt],
    );
    assert.equal(r.stdout.trim(), 'True True', r.stderr);
    assert.equal(fs.existsSync(join(s.lower, 'f999')), true, 'the lower keeps its file');
  });
});
