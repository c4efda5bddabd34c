import assert from 'assert/strict';
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import { join } from 'path';
import { Scratch, startDaemon, type Daemon } from '../helpers/ovshift';
import { python, run } from '../helpers/proc';
import { makeTree } from '../helpers/tree';

/** path → st_ino for every entry, and path → d_ino from readdir. */
async function inodes(mnt: string): Promise<{ st: Record<string, number>; d: Record<string, number> }> {
  const r = await python(
    `
import os, sys, json
st, d = {}, {}
for root, dirs, files in os.walk(sys.argv[1]):
    for e in os.scandir(root):
        rel = os.path.relpath(e.path, sys.argv[1])
        d[rel] = e.inode()
        st[rel] = os.lstat(e.path).st_ino
print(json.dumps({'st': st, 'd': d}))
`,
    [mnt],
  );
  return JSON.parse(r.stdout);
}

describe('overlay: inode numbers', function () {
  this.timeout(30000);
  let s: Scratch;
  let d: Daemon | undefined;
  let tmpfsLower: string | undefined;

  beforeEach(() => {
    s = new Scratch();
    makeTree(s.lower, { 'a/f': '1', 'a/g': '2', 'b/h': '3', top: 't', ln: { symlink: 'top' } });
  });

  afterEach(async () => {
    await d?.stop();
    d = undefined;
    if (tmpfsLower) await run('umount', ['-l', tmpfsLower]);
    tmpfsLower = undefined;
    s.remove();
  });

  it("are the layers' own when all layers share a device, and survive copy-up and remount", async () => {
    d = await s.mount();
    const lowerIno = fs.lstatSync(join(s.lower, 'a/f')).ino;
    assert.equal(fs.lstatSync(join(s.mnt, 'a/f')).ino, lowerIno);
    assert.equal(fs.lstatSync(join(s.mnt, 'a')).ino, fs.lstatSync(join(s.lower, 'a')).ino);
    fs.chmodSync(join(s.mnt, 'a/f'), 0o600); // copy-up
    assert.ok(fs.existsSync(join(s.upper, 'a/f')));
    assert.equal(fs.lstatSync(join(s.mnt, 'a/f')).ino, lowerIno, 'a copied-up file keeps its inode number');
    fs.writeFileSync(join(s.mnt, 'created'), 'c');
    const before = await inodes(s.mnt);
    await d.stop();
    d = await s.mount();
    assert.deepEqual(await inodes(s.mnt), before, 'the same after a remount');
    assert.deepEqual(before.d, before.st, 'readdir reports what stat reports');
  });

  it('are unique within the mount, also with layers on different filesystems', async () => {
    tmpfsLower = s.dir('tmpfs-lower');
    execFileSync('mount', ['-t', 'tmpfs', 'ovshift-test-lower', tmpfsLower]);
    makeTree(tmpfsLower, { 'a/x': 'x', 'c/y': 'y', other: 'o' });
    makeTree(s.upper, { 'a/u': 'u' });
    const args = ['-o', `lowerdir=${s.lower}:${tmpfsLower},upperdir=${s.upper},workdir=${s.work}`, s.mnt];
    d = await startDaemon(args, s.mnt);
    const first = await inodes(s.mnt);
    const values = Object.values(first.st);
    assert.equal(new Set(values).size, values.length, 'no two objects share an inode number');
    assert.ok(values.every((v) => Number.isSafeInteger(v) && v > 0));
    await d.stop();
    d = await startDaemon(args, s.mnt);
    assert.deepEqual((await inodes(s.mnt)).st, first.st, 'stable across a remount with the layers in the same order');
  });
});
