/** Building layer trees and reading what a user would see of them. */
import { createHash } from 'crypto';
import * as fs from 'fs';
import { dirname, join } from 'path';
import { AT_FDCWD, native, unpackDirents } from '../../src/native';
import { execFileSync } from 'child_process';

export type TreeSpec = Record<string, string | { symlink: string } | { dir: true } | { fifo: true } | { whiteout: true }>;

/** Creates files (string content), directories, symlinks, FIFOs and whiteouts under `root`. */
export function makeTree(root: string, spec: TreeSpec): void {
  for (const [rel, what] of Object.entries(spec)) {
    const p = join(root, rel);
    fs.mkdirSync(dirname(p), { recursive: true });
    if (typeof what === 'string') fs.writeFileSync(p, what);
    else if ('symlink' in what) fs.symlinkSync(what.symlink, p);
    else if ('dir' in what) fs.mkdirSync(p, { recursive: true });
    else if ('fifo' in what) execFileSync('mkfifo', [p]);
    else execFileSync('mknod', [p, 'c', '0', '0']);
  }
}

export function ls(dir: string): string[] {
  return fs.readdirSync(dir).sort();
}

export function read(p: string): string {
  return fs.readFileSync(p, 'utf8');
}

export function sha256(p: string): string {
  return createHash('sha256').update(fs.readFileSync(p)).digest('hex');
}

export interface Snapshot {
  [path: string]: string;
}

/**
 * Everything observable of a tree that a writer could change: type, mode, owner, size,
 * content hash, link target, xattrs, and all three timestamps to the nanosecond.
 */
export function snapshot(root: string): Snapshot {
  const out: Snapshot = {};
  const walk = (rel: string): void => {
    const p = rel ? join(root, rel) : root;
    const st = fs.lstatSync(p, { bigint: true });
    let body = '';
    if (st.isFile()) {
      // O_NOATIME: taking the snapshot must not change what it records.
      const fd = fs.openSync(p, fs.constants.O_RDONLY | fs.constants.O_NOATIME);
      body = createHash('sha256').update(fs.readFileSync(fd)).digest('hex');
      fs.closeSync(fd);
    } else if (st.isSymbolicLink()) body = fs.readlinkSync(p);
    const xattrs = execFileSync('getfattr', ['-h', '-d', '-m', '-', '-e', 'hex', '--absolute-names', p], { encoding: 'utf8' })
      .split('\n')
      .filter((l: string) => l && !l.startsWith('#'))
      .sort()
      .join(';');
    // Reading a symlink updates its atime whoever reads it (there is no O_NOATIME for
    // readlink), so a symlink's atime is left out.
    const atime = st.isSymbolicLink() ? '-' : st.atimeNs;
    out[rel || '.'] = [st.mode, st.uid, st.gid, st.size, atime, st.mtimeNs, st.ctimeNs, body, xattrs].join('|');
    if (st.isDirectory()) {
      const names = unpackDirents(native.readdiratSync(AT_FDCWD, p) as Buffer)
        .map((d) => d.name.toString('latin1'))
        .sort();
      for (const name of names) walk(rel ? `${rel}/${name}` : name);
    }
  };
  walk('');
  return out;
}
