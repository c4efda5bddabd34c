/**
 * The test image of the podman tests and the model of what a container must see in it.
 *
 * One description of the base tree makes both the rootfs tarball that `podman import` turns
 * into the base image (a static busybox, its applets, /etc/passwd and group, files of varied
 * modes and owners, a hard-link pair, a setuid copy of busybox, a directory tree) and the
 * model: every path with its type, mode, owner, content and inode identity. Each change the
 * tests make inside a container (a RUN step, a command before a commit) is written once as a
 * shell command and once as the same change to the model; a container's view is then compared,
 * as a manifest (one line per path), with the manifest of the model.
 */
import { createHash } from 'crypto';
import { chmodSync, lchownSync, linkSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'fs';
import { join } from 'path';
import { run } from '../helpers/proc';

export const BUSYBOX = '/bin/busybox';

/** A regular file's content and metadata; shared by every path that is a hard link to it. */
interface Inode {
  mode: number;
  uid: number;
  gid: number;
  content: Buffer;
}

type Entry = { kind: 'd'; mode: number; uid: number; gid: number } | { kind: 'f'; inode: Inode } | { kind: 'l'; target: string; uid: number; gid: number };

function parent(path: string): string {
  return path.slice(0, path.lastIndexOf('/')) || '/';
}

/** What a container should see: path → entry. Paths are absolute, "/" included. */
export class Model {
  private readonly entries = new Map<string, Entry>();

  constructor() {
    this.entries.set('/', { kind: 'd', mode: 0o755, uid: 0, gid: 0 });
  }

  clone(): Model {
    const m = new Model();
    const inodes = new Map<Inode, Inode>();
    for (const [path, e] of this.entries) {
      if (e.kind === 'f') {
        let copy = inodes.get(e.inode);
        if (!copy) inodes.set(e.inode, (copy = { ...e.inode }));
        m.entries.set(path, { kind: 'f', inode: copy });
      } else {
        m.entries.set(path, { ...e });
      }
    }
    return m;
  }

  paths(): string[] {
    return [...this.entries.keys()].sort();
  }

  get(path: string): Entry | undefined {
    return this.entries.get(path);
  }

  private must(path: string): Entry {
    const e = this.entries.get(path);
    if (!e) throw new Error(`model: no ${path}`);
    return e;
  }

  private checkParent(path: string): void {
    const p = this.entries.get(parent(path));
    if (p?.kind !== 'd') throw new Error(`model: no directory ${parent(path)} for ${path}`);
    if (this.entries.has(path)) throw new Error(`model: ${path} exists`);
  }

  mkdir(path: string, mode = 0o755, uid = 0, gid = 0): this {
    this.checkParent(path);
    this.entries.set(path, { kind: 'd', mode, uid, gid });
    return this;
  }

  file(path: string, content: string | Buffer, mode = 0o644, uid = 0, gid = 0): this {
    this.checkParent(path);
    this.entries.set(path, { kind: 'f', inode: { mode, uid, gid, content: Buffer.from(content) } });
    return this;
  }

  symlink(path: string, target: string, uid = 0, gid = 0): this {
    this.checkParent(path);
    this.entries.set(path, { kind: 'l', target, uid, gid });
    return this;
  }

  /** `ln existing path` */
  link(existing: string, path: string): this {
    const e = this.must(existing);
    if (e.kind !== 'f') throw new Error(`model: ${existing} is not a file`);
    this.checkParent(path);
    this.entries.set(path, { kind: 'f', inode: e.inode });
    return this;
  }

  /** `cp -p path tmp && mv tmp path`: a file of its own, leaving its hard-link group. */
  separate(path: string): this {
    const e = this.must(path);
    if (e.kind !== 'f') throw new Error(`model: ${path} is not a file`);
    this.entries.set(path, { kind: 'f', inode: { ...e.inode } });
    return this;
  }

  /** `rm -rf path` */
  remove(path: string): this {
    this.must(path);
    for (const p of [...this.entries.keys()]) if (p === path || p.startsWith(`${path}/`)) this.entries.delete(p);
    return this;
  }

  /** `mv from to` (to does not exist) */
  rename(from: string, to: string): this {
    this.must(from);
    this.checkParent(to);
    for (const [p, e] of [...this.entries]) {
      if (p === from || p.startsWith(`${from}/`)) {
        this.entries.delete(p);
        this.entries.set(to + p.slice(from.length), e);
      }
    }
    return this;
  }

  chmod(path: string, mode: number): this {
    const e = this.must(path);
    if (e.kind === 'f') e.inode.mode = mode;
    else if (e.kind === 'd') e.mode = mode;
    else throw new Error(`model: chmod of symlink ${path}`);
    return this;
  }

  /** `chown [-R] uid:gid path` (root's chown of a file without set-id bits: nothing else changes) */
  chown(path: string, uid: number, gid: number, recursive = false): this {
    const set = (e: Entry, p: string): void => {
      const o = e.kind === 'f' ? e.inode : e;
      if (e.kind === 'f' && (e.inode.mode & 0o6000) !== 0) throw new Error(`model: chown of set-id file ${p} would clear its bits`);
      o.uid = uid;
      o.gid = gid;
    };
    set(this.must(path), path);
    if (recursive) for (const [p, e] of this.entries) if (p.startsWith(`${path}/`)) set(e, p);
    return this;
  }

  append(path: string, content: string): this {
    const e = this.must(path);
    if (e.kind !== 'f') throw new Error(`model: ${path} is not a file`);
    e.inode.content = Buffer.concat([e.inode.content, Buffer.from(content)]);
    return this;
  }

  /** `touch path` of a missing file: an empty 0644 file of root (umask 022). */
  touch(path: string): this {
    return this.file(path, '', 0o644);
  }

  /** The manifest lines of this model (see `manifestLine`), but for the paths podman mounts on. */
  manifest(): string[] {
    const groups = new Map<Inode, string[]>();
    for (const [p, e] of this.entries) if (e.kind === 'f') groups.set(e.inode, [...(groups.get(e.inode) ?? []), p]);
    return this.paths()
      .filter((p) => !excluded(p))
      .map((p) => {
        const e = this.entries.get(p)!;
        if (e.kind === 'd') return manifestLine({ path: p, kind: 'd', mode: e.mode, uid: e.uid, gid: e.gid });
        if (e.kind === 'l') return manifestLine({ path: p, kind: 'l', mode: 0o777, uid: e.uid, gid: e.gid, target: e.target });
        const names = groups.get(e.inode)!.sort();
        return manifestLine({
          path: p,
          kind: 'f',
          mode: e.inode.mode,
          uid: e.inode.uid,
          gid: e.inode.gid,
          size: e.inode.content.length,
          sha256: sha256(e.inode.content),
          nlink: names.length,
          first: names[0]!,
        });
      });
  }

  /** Writes this tree under `dir` as root, with every owner and mode (the base of an image). */
  write(dir: string): void {
    const made = new Map<Inode, string>();
    for (const p of this.paths()) {
      const e = this.entries.get(p)!;
      const at = join(dir, p);
      if (e.kind === 'd') {
        if (p !== '/') mkdirSync(at);
        lchownSync(at, e.uid, e.gid);
        chmodSync(at, e.mode);
      } else if (e.kind === 'l') {
        symlinkSync(e.target, at);
        lchownSync(at, e.uid, e.gid);
      } else if (made.has(e.inode)) {
        linkSync(made.get(e.inode)!, at);
      } else {
        writeFileSync(at, e.inode.content);
        lchownSync(at, e.inode.uid, e.inode.gid);
        chmodSync(at, e.inode.mode);
        made.set(e.inode, at);
      }
    }
  }
}

export function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

export interface ManifestEntry {
  path: string;
  kind: 'd' | 'f' | 'l';
  mode: number;
  uid: number;
  gid: number;
  size?: number;
  sha256?: string;
  nlink?: number;
  /** For a file with more than one link: the first (sorted) path of its links in the view. */
  first?: string;
  target?: string;
}

/**
 * One line per path: path, type, mode, owner, and for a file its size, sha256 and links (with
 * the first path of its link group when it has more than one), for a symlink its target.
 * Directory sizes and link counts are left out: overlays report them their own way.
 */
export function manifestLine(e: ManifestEntry): string {
  const head = `${e.path} ${e.kind} ${e.mode.toString(8).padStart(4, '0')} ${e.uid}:${e.gid}`;
  if (e.kind === 'd') return head;
  if (e.kind === 'l') return `${head} -> ${e.target}`;
  return `${head} size=${e.size} sha256=${e.sha256!.slice(0, 16)} links=${e.nlink}${e.nlink! > 1 ? ` (${e.first})` : ''}`;
}

/**
 * The shell script a container runs to print its view: a stat line per path of the root
 * file system (not of the mounts on it), the sha256 of every file, the target of every symlink.
 * `parseManifest` turns the output into manifest lines.
 */
export const MANIFEST_SCRIPT = [
  "find / -xdev -exec stat -c '%n|%f|%u|%g|%s|%h|%i' {} +",
  'echo "#sha256"',
  'find / -xdev -type f -exec sha256sum {} +',
  'echo "#symlinks"',
  "find / -xdev -type l -exec stat -c '%n|%N' {} +",
].join('; ');

/**
 * What a container shows that is not the image's: mounts on the root file system (their mount
 * points are listed with the mounted file system's attributes) and the files podman bind-mounts.
 */
export const RUNTIME_MOUNTS = ['/proc', '/sys', '/dev', '/etc/hostname', '/etc/hosts', '/etc/resolv.conf', '/run/.containerenv'];

function excluded(path: string): boolean {
  return RUNTIME_MOUNTS.some((m) => path === m || path.startsWith(`${m}/`));
}

export function parseManifest(output: string): string[] {
  const [stats, shas, links] = splitSections(output);
  const sha = new Map<string, string>();
  for (const line of shas) {
    const m = /^([0-9a-f]{64}) {2}(.*)$/.exec(line);
    if (!m) throw new Error(`manifest: bad sha256sum line ${JSON.stringify(line)}`);
    sha.set(m[2]!, m[1]!);
  }
  const target = new Map<string, string>();
  for (const line of links) {
    const m = /^(.*)\|'(.*)' -> '(.*)'$/.exec(line);
    if (!m) throw new Error(`manifest: bad symlink line ${JSON.stringify(line)}`);
    target.set(m[1]!, m[3]!);
  }
  const entries: (ManifestEntry & { ino: string })[] = [];
  for (const line of stats) {
    const f = line.split('|');
    if (f.length !== 7) throw new Error(`manifest: bad stat line ${JSON.stringify(line)}`);
    const [path, hex, uid, gid, size, nlink, ino] = f as [string, string, string, string, string, string, string];
    if (excluded(path)) continue;
    const raw = parseInt(hex, 16);
    const type = raw & 0o170000;
    const kind = type === 0o040000 ? 'd' : type === 0o100000 ? 'f' : type === 0o120000 ? 'l' : undefined;
    if (!kind) throw new Error(`manifest: ${path} has file type 0${type.toString(8)}`);
    entries.push({
      path,
      kind,
      mode: raw & 0o7777,
      uid: Number(uid),
      gid: Number(gid),
      ino,
      ...(kind === 'f' ? { size: Number(size), sha256: sha.get(path) ?? '(unread)', nlink: Number(nlink) } : {}),
      ...(kind === 'l' ? { target: target.get(path) ?? '(unread)' } : {}),
    });
  }
  const byIno = new Map<string, string[]>();
  for (const e of entries) if (e.kind === 'f' && e.nlink! > 1) byIno.set(e.ino, [...(byIno.get(e.ino) ?? []), e.path]);
  for (const e of entries) if (e.kind === 'f' && e.nlink! > 1) e.first = byIno.get(e.ino)!.sort()[0];
  return entries.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0)).map(manifestLine);
}

function splitSections(output: string): [string[], string[], string[]] {
  const sections: string[][] = [[]];
  for (const line of output.split('\n')) {
    if (line === '#sha256' || line === '#symlinks') sections.push([]);
    else if (line !== '') sections[sections.length - 1]!.push(line);
  }
  if (sections.length !== 3) throw new Error(`manifest: expected 3 sections, got ${sections.length}: ${output.slice(0, 2000)}`);
  return sections as [string[], string[], string[]];
}

/** Lines only in `expected` ("- …") and only in `actual` ("+ …"), in path order. */
export function diffManifests(expected: string[], actual: string[]): string[] {
  const a = new Set(actual);
  const e = new Set(expected);
  const out = [...expected.filter((l) => !a.has(l)).map((l) => `- ${l}`), ...actual.filter((l) => !e.has(l)).map((l) => `+ ${l}`)];
  return out.sort((x, y) => {
    const px = x.slice(2).split(' ')[0]!;
    const py = y.slice(2).split(' ')[0]!;
    return px < py ? -1 : px > py ? 1 : x < y ? -1 : 1;
  });
}

/** The deterministic 20 MiB file a RUN step writes: `yes ovshift-big-file | head -c 20971520`. */
export const BIG_SIZE = 20 * 1024 * 1024;
export function bigContent(): Buffer {
  const line = Buffer.from('ovshift-big-file\n');
  const buf = Buffer.alloc(BIG_SIZE);
  for (let off = 0; off < BIG_SIZE; off += line.length) line.copy(buf, off);
  return buf;
}

/** The busybox applets the image links to busybox (all it has). */
async function applets(): Promise<string[]> {
  const r = await run(BUSYBOX, ['--list']);
  if (r.code !== 0) throw new Error(`busybox --list: ${r.stderr}`);
  return r.stdout.split('\n').filter((a) => a && a !== 'busybox');
}

export const USER_UID = 1000;

/** The base image's tree. */
export async function baseModel(): Promise<Model> {
  const busybox = readFileSync(BUSYBOX);
  const m = new Model();
  m.mkdir('/bin').file('/bin/busybox', busybox, 0o755);
  for (const a of await applets()) m.symlink(`/bin/${a}`, 'busybox');
  for (const d of ['/proc', '/sys', '/dev', '/run']) m.mkdir(d);
  m.mkdir('/tmp', 0o1777).mkdir('/root', 0o700).mkdir('/home').mkdir('/home/user', 0o750, USER_UID, USER_UID);
  m.mkdir('/etc')
    .file(
      '/etc/passwd',
      'root:x:0:0:root:/root:/bin/sh\ndaemon:x:2:3:daemon:/:/bin/false\nuser:x:1000:1000:user:/home/user:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n',
    )
    .file('/etc/group', 'root:x:0:\nsys:x:3:\nstaff:x:50:\nuser:x:1000:\nnogroup:x:65534:\n')
    // busybox runs `id` with the euid of a setuid busybox only when its config says so; it
    // reads the config only when root owns it and nobody else can write it.
    .file('/etc/busybox.conf', '[SUID]\nid = ssx root.root\n', 0o644);
  m.mkdir('/opt').mkdir('/opt/suid').file('/opt/suid/busybox', busybox, 0o4755);
  m.mkdir('/data')
    .file('/data/remove-me', 'remove me\n')
    .file('/data/rename-me', 'rename me\n', 0o640, USER_UID, USER_UID)
    .file('/data/chmod-me', 'chmod me\n')
    .file('/data/chown-me', 'chown me\n', 0o600)
    .file('/data/setgid', '#!/bin/sh\necho setgid\n', 0o2755, 0, 50)
    .file('/data/exec-user', '#!/bin/sh\necho user\n', 0o700, USER_UID, USER_UID)
    .file('/data/hl-a', 'hard link pair\n', 0o444, 2, 3)
    .link('/data/hl-a', '/data/hl-b')
    .file('/data/link-src', 'link source\n', 0o640, 40000, 50000)
    .file('/data/link-src2', 'second link source\n', 0o644, 3, 3)
    .file('/data/keep-a', 'keep a\n')
    .file('/data/empty', '', 0o666, 65534, 65534)
    .symlink('/data/sym', 'chmod-me')
    .symlink('/data/abs-sym', '/data/keep-a', USER_UID, USER_UID);
  m.mkdir('/tree')
    .mkdir('/tree/a')
    .mkdir('/tree/a/b')
    .mkdir('/tree/a/b/c')
    .file('/tree/a/b/c/deep-file', 'deep\n')
    .mkdir('/tree/move-me', 0o750, USER_UID, USER_UID)
    .file('/tree/move-me/file', 'moving file\n', 0o600, USER_UID, USER_UID)
    .mkdir('/tree/move-me/sub')
    .file('/tree/move-me/sub/gone', 'gone\n')
    .file('/tree/move-me/sub/stays', 'stays\n')
    .mkdir('/tree/opaque')
    .file('/tree/opaque/old1', 'old 1\n')
    .file('/tree/opaque/old2', 'old 2\n', 0o600, 2, 2)
    .mkdir('/tree/opaque/olddir')
    .file('/tree/opaque/olddir/x', 'x\n')
    .mkdir('/tree/keep')
    .file('/tree/keep/k', 'k\n')
    .mkdir('/tree/deep', 0o755, 2, 2)
    .file('/tree/deep/inside', 'inside\n', 0o644, 2, 2)
    .mkdir('/tree/sticky', 0o1777);
  return m;
}

/** A step of the image build or of a container: its shell command and its effect on the model. */
export interface Step {
  sh: string;
  apply(m: Model): void;
}

/** The RUN steps of the multi-layer build, each its own layer. */
export const BUILD_STEPS: Step[] = [
  {
    // delete, rename, chmod and chown files of the lower layers
    sh: 'rm /data/remove-me && mv /data/rename-me /data/renamed && chmod 0751 /data/chmod-me && chown 1000:1000 /data/chown-me',
    apply: (m) =>
      void m.remove('/data/remove-me').rename('/data/rename-me', '/data/renamed').chmod('/data/chmod-me', 0o751).chown('/data/chown-me', 1000, 1000),
  },
  {
    // rename a lower directory; make an opaque directory
    sh: 'mv /tree/move-me /tree/moved && rm -rf /tree/opaque && mkdir /tree/opaque && echo fresh > /tree/opaque/fresh',
    apply: (m) => void m.rename('/tree/move-me', '/tree/moved').remove('/tree/opaque').mkdir('/tree/opaque').file('/tree/opaque/fresh', 'fresh\n'),
  },
  {
    // hard-link a lower file (the chmod through the new name shows on both)
    sh: 'ln /data/link-src /data/link-new && chmod 0660 /data/link-new',
    apply: (m) => void m.link('/data/link-src', '/data/link-new').chmod('/data/link-new', 0o660),
  },
  {
    sh: `yes ovshift-big-file | head -c ${BIG_SIZE} > /big && chmod 0640 /big && chown 1000:1000 /big`,
    apply: (m) => void m.file('/big', bigContent(), 0o640, 1000, 1000),
  },
  {
    // change what earlier layers of this build made or moved
    sh: 'chown -R 1000:1000 /tree/moved && rm /tree/moved/sub/gone && echo appended >> /data/renamed && touch /tree/moved/sub/new && mkdir /tree/opaque/newdir',
    apply: (m) =>
      void m
        .chown('/tree/moved', 1000, 1000, true)
        .remove('/tree/moved/sub/gone')
        .append('/data/renamed', 'appended\n')
        .touch('/tree/moved/sub/new')
        .mkdir('/tree/opaque/newdir'),
  },
];

/** What a container changes before it is committed. */
export const CONTAINER_STEP: Step = {
  sh:
    'echo new > /data/new && chmod 0604 /data/new && chown 2:2 /data/new && rm /data/keep-a && ln /data/link-src2 /data/link2' +
    ' && mv /tree/keep /tree/kept && chmod 0700 /tree/deep',
  apply: (m) =>
    void m
      .file('/data/new', 'new\n', 0o604, 2, 2)
      .remove('/data/keep-a')
      .link('/data/link-src2', '/data/link2')
      .rename('/tree/keep', '/tree/kept')
      .chmod('/tree/deep', 0o700),
};

/** The Containerfile of the multi-layer build on `base`. */
export function containerfile(base: string): string {
  return [`FROM ${base}`, ...BUILD_STEPS.map((s) => `RUN ${s.sh}`), ''].join('\n');
}

/** Writes the base tree under `dir/rootfs` and packs it into `dir/base.tar`; returns the tarball. */
export async function writeBaseTarball(model: Model, dir: string): Promise<string> {
  const rootfs = join(dir, 'rootfs');
  mkdirSync(rootfs);
  model.write(rootfs);
  const tar = join(dir, 'base.tar');
  const r = await run('tar', ['--numeric-owner', '-C', rootfs, '-cf', tar, '.'], { timeoutMs: 60000 });
  if (r.code !== 0) throw new Error(`tar: ${r.stderr}`);
  return tar;
}
