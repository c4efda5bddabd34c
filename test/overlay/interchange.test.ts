import assert from 'assert/strict';
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import { join } from 'path';
import { Scratch, type Daemon } from '../helpers/ovshift';
import { makeTree, snapshot } from '../helpers/tree';

/** The merged view as a user sees it: every path with its type, mode, owner and content. */
function view(root: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (rel: string): void => {
    const p = rel ? join(root, rel) : root;
    for (const name of fs.readdirSync(p).sort()) {
      const r = rel ? `${rel}/${name}` : name;
      const st = fs.lstatSync(join(root, r));
      let body = '';
      if (st.isFile()) body = fs.readFileSync(join(root, r), 'utf8');
      else if (st.isSymbolicLink()) body = `-> ${fs.readlinkSync(join(root, r))}`;
      out[r] = `${(st.mode & 0o170000).toString(8)} ${(st.mode & 0o7777).toString(8)} ${st.uid}:${st.gid} ${body}`;
      if (st.isDirectory()) walk(r);
    }
  };
  walk('');
  return out;
}

/** Changes that exercise whiteouts, opaque directories, redirects and copy-up. */
function changes(mnt: string): void {
  fs.unlinkSync(join(mnt, 'etc/gone'));
  fs.rmSync(join(mnt, 'var'), { recursive: true });
  fs.mkdirSync(join(mnt, 'var'));
  fs.writeFileSync(join(mnt, 'var/fresh'), 'made after var was removed');
  fs.appendFileSync(join(mnt, 'etc/motd'), ' and more');
  fs.chmodSync(join(mnt, 'etc/conf'), 0o600);
  fs.renameSync(join(mnt, 'usr/share'), join(mnt, 'usr/moved-share'));
  fs.renameSync(join(mnt, 'bin'), join(mnt, 'usr/bin'));
  fs.symlinkSync('usr/bin', join(mnt, 'bin'));
  fs.mkdirSync(join(mnt, 'new/deep'), { recursive: true });
  fs.writeFileSync(join(mnt, 'new/deep/file'), 'new');
}

function lowerTree(root: string): void {
  makeTree(root, {
    'etc/motd': 'hello',
    'etc/conf': 'c',
    'etc/gone': 'x',
    'var/log/a': 'a',
    'var/lib/b': 'b',
    'usr/share/doc/readme': 'r',
    'usr/share/man/page': 'p',
    'bin/tool': 't',
  });
}

describe('overlay: the upper is interchangeable with kernel overlayfs', function () {
  this.timeout(30000);
  let s: Scratch;
  let d: Daemon | undefined;

  beforeEach(() => {
    s = new Scratch();
    lowerTree(s.lower);
  });

  afterEach(async () => {
    await d?.stop();
    d = undefined;
    if (fs.readFileSync('/proc/self/mountinfo', 'utf8').includes(` ${s.mnt} `)) execFileSync('umount', ['-l', s.mnt]);
    s.remove();
  });

  function kernelMount(): void {
    execFileSync('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${s.lower},upperdir=${s.upper},workdir=${s.work},redirect_dir=on`, s.mnt]);
  }

  it('an upper written by ovshift shows the same through kernel overlayfs', async () => {
    const lowerBefore = snapshot(s.lower);
    d = await s.mount('redirect_dir=on');
    changes(s.mnt);
    const seen = view(s.mnt);
    await d.stop();
    d = undefined;
    kernelMount();
    try {
      assert.deepEqual(view(s.mnt), seen);
    } finally {
      execFileSync('umount', [s.mnt]);
    }
    assert.deepEqual(snapshot(s.lower), lowerBefore, 'the lower was never written');
  });

  it('an upper written by kernel overlayfs shows the same through ovshift', async () => {
    kernelMount();
    let seen: Record<string, string>;
    try {
      changes(s.mnt);
      seen = view(s.mnt);
    } finally {
      execFileSync('umount', [s.mnt]);
    }
    d = await s.mount('redirect_dir=on');
    assert.deepEqual(view(s.mnt), seen);
    // And ovshift can go on changing it.
    fs.renameSync(join(s.mnt, 'usr/moved-share'), join(s.mnt, 'share-again'));
    assert.deepEqual(fs.readdirSync(join(s.mnt, 'share-again')).sort(), ['doc', 'man']);
  });
});
