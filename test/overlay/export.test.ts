/**
 * File handles (name_to_handle_at, open_by_handle_at; what an NFS export of the mount uses):
 * they keep opening the object after the kernel dropped it from its caches, and a handle of a
 * removed object answers ESTALE (xfstests generic/426).
 */
import assert from 'assert/strict';
import * as fs from 'fs';
import { join } from 'path';
import { Scratch } from '../helpers/ovshift';
import { python } from '../helpers/proc';
import { makeTree } from '../helpers/tree';

const HANDLE_CALLS_PY = `
import ctypes, errno, os, sys, time
mnt = sys.argv[1]
libc = ctypes.CDLL(None, use_errno=True)
class FileHandle(ctypes.Structure):
    _fields_ = [('handle_bytes', ctypes.c_uint), ('handle_type', ctypes.c_int), ('f_handle', ctypes.c_ubyte * 128)]
def handle(path):
    h = FileHandle(128, 0)
    mount_id = ctypes.c_int()
    if libc.name_to_handle_at(-100, path.encode(), ctypes.byref(h), ctypes.byref(mount_id), 0) != 0:
        raise OSError(ctypes.get_errno(), 'name_to_handle_at ' + path)
    return h
root = os.open(mnt, os.O_RDONLY | os.O_DIRECTORY)
def open_by(h, flags=os.O_RDONLY):
    fd = libc.open_by_handle_at(root, ctypes.byref(h), flags)
    if fd < 0:
        return errno.errorcode[ctypes.get_errno()]
    return fd
def forget():
    os.sync()
    with open('/proc/sys/vm/drop_caches', 'w') as f: f.write('2')
    time.sleep(0.3)  # the kernel's forgets reach the daemon
`;

const HANDLES_PY = `${HANDLE_CALLS_PY}
handles = {p: handle(mnt + '/' + p) for p in ['upper', 'd', 'd/lower', 'd/sub/deep', 'gone']}
forget()
for p in ['upper', 'd/lower', 'd/sub/deep']:
    fd = open_by(handles[p])
    print(p, os.read(fd, 100).decode().strip() if isinstance(fd, int) else fd)
fd = open_by(handles['d'], os.O_RDONLY | os.O_DIRECTORY)
print('d', sorted(os.listdir(fd)) if isinstance(fd, int) else fd)
os.unlink(mnt + '/gone')
forget()
print('gone', open_by(handles['gone']))
`;

// A file linked through the mount, then known to the kernel by its first name only (the node
// of both names dropped): removing that name leaves the file, and its handles, to the link
// (generic/426 and 467, open_by_handle -l then -u). A handle also outlives a lookup made after
// the kernel dropped its node (an NFS client's handle while local users look the file up).
const LINKS_PY = `${HANDLE_CALLS_PY}
def read(h):
    fd = open_by(h)
    if not isinstance(fd, int):
        return fd
    data = os.read(fd, 100).decode()
    os.close(fd)
    return data
old = handle(mnt + '/a')
os.link(mnt + '/a', mnt + '/b')
forget()
os.stat(mnt + '/a')
print('old after lookup', read(old))
forget()
h = handle(mnt + '/a')
os.unlink(mnt + '/a')
forget()
print('after unlink', read(h))
print('old after unlink', read(old))
print('b', open(mnt + '/b').read(), os.stat(mnt + '/b').st_nlink)
os.unlink(mnt + '/b')
forget()
print('after both', read(h))
`;

// A handle saved to a file (argv[2]) in one mount, and opened in the next (generic/477).
const SAVE_PY = `${HANDLE_CALLS_PY}
import json
json.dump({p: bytes(handle(mnt + '/' + p))[:8 + 128].hex() for p in sys.argv[3:]}, open(sys.argv[2], 'w'))
`;
const OPEN_SAVED_PY = `${HANDLE_CALLS_PY}
import json
for p, raw in sorted(json.load(open(sys.argv[2])).items()):
    h = FileHandle.from_buffer_copy(bytes.fromhex(raw))
    fd = open_by(h, os.O_RDONLY)
    if not isinstance(fd, int):
        print(p, fd)
    elif os.path.isdir('/proc/self/fd/%d' % fd):
        print(p, sorted(os.listdir(fd)))
    else:
        print(p, os.read(fd, 100).decode())
`;

describe('overlay: file handles', function () {
  this.timeout(30000);
  let s: Scratch;

  beforeEach(() => {
    s = new Scratch();
    makeTree(s.lower, { 'd/lower': 'lower', 'd/sub/deep': 'deep', gone: 'gone' });
  });

  afterEach(() => s.dispose());

  it('open the object again after the kernel dropped it, and answer ESTALE once it is removed', async () => {
    await s.mount();
    await python(`open(__import__('sys').argv[1] + '/upper', 'w').write('upper')`, [s.mnt]);
    const r = await python(HANDLES_PY, [s.mnt]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.stdout.trim().split('\n'), ['upper upper', 'd/lower lower', 'd/sub/deep deep', "d ['lower', 'sub']", 'gone ESTALE']);
  });

  it('of an earlier mount are stale: they never open the object of this mount that took their id', async () => {
    const saved = s.dir('handles') + '/saved.json';
    const d = await s.mount();
    await python(`open(__import__('sys').argv[1] + '/a', 'w').write('first mount')`, [s.mnt]);
    let r = await python(SAVE_PY, [s.mnt, saved, 'a']);
    assert.equal(r.code, 0, r.stderr);
    await d.stop();
    await s.mount();
    // This mount's first node: the id "a" had in the last one.
    await python(`open(__import__('sys').argv[1] + '/z', 'w').write('second mount')`, [s.mnt]);
    r = await python(OPEN_SAVED_PY, [s.mnt, saved]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), 'a ESTALE');
  });

  it('with nfs_export=on outlive the mount: a remount, a rename of the parent and of the grandparent, a move to a new parent (generic/477)', async () => {
    const saved = s.dir('handles') + '/saved.json';
    const names = ['top/d/f0', 'top/d/f1', 'top/d', 'top/upper-made'];
    makeTree(s.lower, { 'top/d/f0': 'zero', 'top/d/f1': 'one' });
    let d = await s.mount('nfs_export=on');
    await python(`open(__import__('sys').argv[1] + '/top/upper-made', 'w').write('made')`, [s.mnt]);
    let r = await python(SAVE_PY, [s.mnt, saved, ...names]);
    assert.equal(r.code, 0, r.stderr);
    const expected = (d: string, f: string): string[] => [`${d} ['f0', 'f1']`, `${f}0 zero`, `${f}1 one`, 'top/upper-made made'];
    const remountAndOpen = async (): Promise<string[]> => {
      await d.stop();
      d = await s.mount('nfs_export=on');
      r = await python(OPEN_SAVED_PY, [s.mnt, saved]);
      assert.equal(r.code, 0, r.stderr);
      return r.stdout.trim().split('\n');
    };
    assert.deepEqual(await remountAndOpen(), expected('top/d', 'top/d/f'));
    fs.renameSync(join(s.mnt, 'top/d'), join(s.mnt, 'top/d.renamed'));
    assert.deepEqual(await remountAndOpen(), expected('top/d', 'top/d/f'));
    fs.renameSync(join(s.mnt, 'top'), join(s.mnt, 'top.renamed'));
    assert.deepEqual(await remountAndOpen(), expected('top/d', 'top/d/f'));
    fs.mkdirSync(join(s.mnt, 'new'));
    for (const f of ['f0', 'f1']) fs.renameSync(join(s.mnt, 'top.renamed/d.renamed', f), join(s.mnt, 'new', f));
    assert.deepEqual(await remountAndOpen(), ['top/d []', 'top/d/f0 zero', 'top/d/f1 one', 'top/upper-made made']);
    // Without it, the next mount's handles are new: the last mount's are stale.
    await d.stop();
    d = await s.mount();
    r = await python(OPEN_SAVED_PY, [s.mnt, saved]);
    assert.deepEqual(r.stdout.trim().split('\n'), ['top/d ESTALE', 'top/d/f0 ESTALE', 'top/d/f1 ESTALE', 'top/upper-made ESTALE']);
  });

  it('with nfs_export=on: a table that is not sound is ignored, in one line, and the mount goes on', async () => {
    fs.writeFileSync(join(s.work, 'ovshift-handles'), JSON.stringify({ version: 1, generation: 1, nextId: 3, nodes: [[2, 1, '..', 'x']] }));
    const d = await s.mount('nfs_export=on');
    assert.match(d.stderr(), /^ovshift: .*\/work\/ovshift-handles: ignored \(bad name for node 2\); file handles of the last mount are stale$/m);
    assert.ok(!fs.existsSync(join(s.work, 'ovshift-handles')));
    fs.writeFileSync(join(s.mnt, 'f'), 'works');
    assert.equal(fs.readFileSync(join(s.mnt, 'f'), 'utf8'), 'works');
  });

  it('follow a hard-linked file to its other name when the name the kernel knew is removed', async () => {
    await s.mount();
    await python(`open(__import__('sys').argv[1] + '/a', 'w').write('data')`, [s.mnt]);
    const r = await python(LINKS_PY, [s.mnt]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.stdout.trim().split('\n'), ['old after lookup data', 'after unlink data', 'old after unlink data', 'b data 1', 'after both ESTALE']);
  });
});
