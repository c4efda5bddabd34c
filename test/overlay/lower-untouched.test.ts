import assert from 'assert/strict';
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import { join } from 'path';
import { Scratch, type Daemon } from '../helpers/ovshift';
import { python } from '../helpers/proc';
import { makeTree, snapshot } from '../helpers/tree';

describe('overlay: the lower is never written', function () {
  this.timeout(60000);
  let s: Scratch;
  let d: Daemon | undefined;

  before(() => {
    s = new Scratch();
    makeTree(s.lower, {
      'docs/a.txt': 'alpha',
      'docs/b.txt': 'beta',
      'docs/sub/c.txt': 'gamma',
      'bin/tool': '#!/bin/sh\n',
      link: { symlink: 'docs/a.txt' },
      fifo: { fifo: true },
      empty: { dir: true },
      'tree/x/y/z': 'deep',
      hard1: 'shared',
    });
    fs.linkSync(join(s.lower, 'hard1'), join(s.lower, 'hard2'));
    execFileSync('mknod', [join(s.lower, 'dev'), 'c', '1', '3']);
    execFileSync('setfattr', ['-n', 'user.tag', '-v', 'lower', join(s.lower, 'docs/a.txt')]);
    execFileSync('setfattr', ['-n', 'trusted.note', '-v', 'lower', join(s.lower, 'docs')]);
    fs.chownSync(join(s.lower, 'bin/tool'), 1000, 1000);
    fs.chmodSync(join(s.lower, 'bin/tool'), 0o4755);
    // Times in the past, so that any access that could update them would show.
    const past = new Date('2020-05-05T05:05:05Z');
    for (const rel of ['', 'docs', 'docs/a.txt', 'docs/b.txt', 'docs/sub', 'docs/sub/c.txt', 'bin', 'bin/tool', 'tree', 'hard1', 'empty']) {
      fs.utimesSync(join(s.lower, rel), past, past);
    }
  });

  after(async () => {
    await d?.stop();
    s.remove();
  });

  it('keeps every byte, xattr, owner, mode and timestamp of the lower through a full workload', async () => {
    const before = snapshot(s.lower);
    d = await s.mount('redirect_dir=on');
    const m = s.mnt;
    const r = await python(
      `
import os, sys, shutil
m = sys.argv[1]
for root, dirs, files in os.walk(m):
    for f in files:
        p = os.path.join(root, f)
        if os.path.isfile(p) and not os.path.islink(p): open(p, 'rb').read()
os.listxattr(m + '/docs/a.txt'); os.getxattr(m + '/docs/a.txt', 'user.tag')
with open(m + '/docs/a.txt', 'a') as f: f.write('more')
os.truncate(m + '/docs/b.txt', 1)
os.chmod(m + '/bin/tool', 0o755); os.chown(m + '/bin/tool', 0, 0)
os.utime(m + '/docs/sub/c.txt', (1, 1))
os.setxattr(m + '/docs', 'user.new', b'1'); os.removexattr(m + '/docs/a.txt', 'user.tag')
os.link(m + '/hard1', m + '/hard3'); open(m + '/hard2', 'a').write('!')
os.rename(m + '/docs/sub', m + '/moved'); os.rename(m + '/tree', m + '/docs/tree2')
os.unlink(m + '/link'); os.symlink('elsewhere', m + '/link')
os.unlink(m + '/fifo'); os.mkfifo(m + '/fifo')
os.chmod(m + '/dev', 0o600)
shutil.rmtree(m + '/docs/tree2'); os.mkdir(m + '/docs/tree2')
os.rmdir(m + '/empty'); os.mkdir(m + '/empty'); open(m + '/empty/new', 'w').write('n')
os.rename(m + '/bin', m + '/bin2')
print('done')
`,
      [m],
    );
    assert.equal(r.stdout.trim(), 'done', r.stderr);
    await d.stop();
    d = undefined;
    assert.deepEqual(snapshot(s.lower), before);
  });
});
