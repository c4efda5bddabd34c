/**
 * Helpers for the symlink-swap tests (issue 11): a record of everything outside the layers
 * that an attack could change, a readable diff of two records, and a search of the layers for
 * bytes that must never land there.
 */
import { createHash } from 'crypto';
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import { join } from 'path';

export interface EntryState {
  type: string;
  mode: string;
  uid: number;
  gid: number;
  size: bigint;
  nlink: bigint;
  ino: bigint;
  mtime: bigint;
  ctime: bigint;
  /** sha256 of a regular file's bytes, a symlink's target, '' for anything else. */
  body: string;
  xattrs: string;
}

export type OutsideSnapshot = Map<string, EntryState>;

function typeOf(st: fs.BigIntStats): string {
  if (st.isFile()) return 'file';
  if (st.isDirectory()) return 'dir';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isFIFO()) return 'fifo';
  if (st.isCharacterDevice()) return 'chardev';
  if (st.isBlockDevice()) return 'blockdev';
  if (st.isSocket()) return 'socket';
  return 'other';
}

function xattrsOf(p: string): string {
  return execFileSync('getfattr', ['-h', '-d', '-m', '-', '-e', 'hex', '--absolute-names', p], { encoding: 'utf8' })
    .split('\n')
    .filter((l) => l && !l.startsWith('#'))
    .sort()
    .join(';');
}

function entryState(p: string): EntryState {
  const st = fs.lstatSync(p, { bigint: true });
  let body = '';
  if (st.isFile()) {
    // O_NOATIME: taking the snapshot must not change what it records.
    const fd = fs.openSync(p, fs.constants.O_RDONLY | fs.constants.O_NOATIME);
    try {
      body = createHash('sha256').update(fs.readFileSync(fd)).digest('hex');
    } finally {
      fs.closeSync(fd);
    }
  } else if (st.isSymbolicLink()) body = fs.readlinkSync(p);
  // atime is left out: reading a directory updates it (relatime) whoever reads, the snapshot
  // included. Every change an attack can make shows in mtime, ctime, content or names.
  return {
    type: typeOf(st),
    mode: (st.mode & 0o7777n).toString(8).padStart(4, '0'),
    uid: Number(st.uid),
    gid: Number(st.gid),
    size: st.size,
    nlink: st.nlink,
    ino: st.ino,
    mtime: st.mtimeNs,
    ctime: st.ctimeNs,
    body,
    xattrs: xattrsOf(p),
  };
}

/**
 * Everything under `root` except the insides of `skip` (the layers and the mountpoint, named
 * relative to root): those are recorded by name only. Never follows a symlink.
 */
export function outsideSnapshot(root: string, skip: string[]): OutsideSnapshot {
  const out: OutsideSnapshot = new Map();
  const walk = (rel: string): void => {
    const p = rel ? join(root, rel) : root;
    if (skip.includes(rel)) {
      out.set(rel, { type: 'layer', mode: '', uid: 0, gid: 0, size: 0n, nlink: 0n, ino: 0n, mtime: 0n, ctime: 0n, body: '', xattrs: '' });
      return;
    }
    const e = entryState(p);
    out.set(rel || '.', e);
    if (e.type === 'dir') for (const name of fs.readdirSync(p).sort()) walk(rel ? `${rel}/${name}` : name);
  };
  walk('');
  return out;
}

/** What changed from `before` to `after`, one line per change; empty when nothing did. */
export function diffSnapshots(before: OutsideSnapshot, after: OutsideSnapshot): string[] {
  const changes: string[] = [];
  for (const [rel, a] of before) {
    const b = after.get(rel);
    if (!b) {
      changes.push(`${rel}: vanished`);
      continue;
    }
    for (const k of Object.keys(a) as (keyof EntryState)[]) {
      if (a[k] !== b[k]) {
        const show = (v: unknown): string => (k === 'body' && a.type === 'file' ? `sha256:${String(v).slice(0, 12)}` : String(v));
        changes.push(`${rel}: ${k} ${show(a[k])} -> ${show(b[k])}`);
      }
    }
  }
  for (const [rel, b] of after) {
    if (!before.has(rel)) changes.push(`${rel}: appeared (${b.type}, mode ${b.mode}, owner ${b.uid}:${b.gid})`);
  }
  return changes;
}

/** Regular files under `root` (never following symlinks) whose bytes contain `needle`. */
export function filesContaining(root: string, needle: string): string[] {
  const hits: string[] = [];
  const walk = (p: string): void => {
    let st: fs.Stats;
    try {
      st = fs.lstatSync(p);
    } catch {
      return;
    }
    if (st.isDirectory()) {
      for (const name of fs.readdirSync(p)) walk(join(p, name));
    } else if (st.isFile()) {
      const fd = fs.openSync(p, fs.constants.O_RDONLY | fs.constants.O_NOATIME | fs.constants.O_NOFOLLOW);
      try {
        if (fs.readFileSync(fd).includes(needle)) hits.push(p);
      } finally {
        fs.closeSync(fd);
      }
    }
  };
  walk(root);
  return hits;
}
