/**
 * Issue 11, hole 1: a symlink swapped into a layer behind the kernel's back must not send the
 * root daemon outside the layer.
 *
 * The daemon runs as root and serves every user of the mount (allow_other). Its calls on a
 * directory layer are path based ("pub/d/NAME" relative to the layer's root fd). A user who can
 * write part of a layer on the host (here: `pub`, which the user owns; in the upper because the
 * copy-up of their own lower directory keeps its owner) makes or looks up names through the
 * mount, so that the kernel holds the nodes (upper-only entries: upper_timeout, 60 s; lower
 * ones: a day with revalidate=cached; or simply a directory held as the cwd), then on the host
 * renames a directory or file away and puts a symlink to a root-only place in its place. The
 * next request on the held node must not follow that symlink: the object looks gone (mid-path:
 * ENOENT, as DESIGN.md says; a held lower node may answer ESTALE), or the call fails on the last
 * component (ENOENT, ELOOP, ESTALE or EOPNOTSUPP, plus the no-follow call's own answer where one
 * is named), and nothing outside the layers changes or is shown to the user. Two kinds of
 * success are accepted where they show nothing of the victim: a listing of nothing (as of a
 * removed directory) and the attributes the daemon last saw of a node it can no longer reach.
 * Calls that by nature act on the layer's entry itself (unlink, rename, link of the swapped
 * name) may succeed or fail; only their effect outside is checked.
 *
 * Every attack runs in a fresh mount and tree. The victim, `rootonly/` (0700 root) beside the
 * layers, holds a 0600 root file `secret` with a random marker and an xattr, a name only it
 * has, an empty subdirectory, a subdirectory with a name only it has, and a symlink. A
 * snapshot of everything outside the layers (names, type, mode, owner, size, nlink, inode,
 * mtime, ctime, content, link target, xattrs; not atime) is taken before the attack and
 * compared after; the attacker's output must not show any of the victim's names, bytes, xattrs,
 * link target or inode numbers; no file in the upper or work directory may hold the secret.
 *
 * The attacker runs inline `python3 -c` programs as a throwaway unprivileged user (the checkout
 * may not be readable by it). The host-side swap is done by that same user on the part of the
 * layer it owns: lower `pub` (and what is below it) is chowned to the user on the host, which
 * stands for "a user who can write some part of a layer" (DESIGN.md, Trust and confinement);
 * `pub` is owned by the user and not sticky, so fs.protected_symlinks plays no part.
 *
 * Set OVSHIFT_SWAP_REPORT=1 to print what each attack got. Run this file alone with
 * `npx mocha --no-config --exit dist/test/security/symlink-swap.test.js` (.mocharc.json's `spec`
 * is added to the files named on the command line, so without --no-config the whole suite runs).
 */
import assert from 'assert/strict';
import { randomBytes } from 'crypto';
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import { dirname, join, relative } from 'path';
import { Scratch } from '../helpers/ovshift';
import { run, type RunResult } from '../helpers/proc';
import { createUser, removeUser, type TestUser } from '../helpers/users';
import { diffSnapshots, filesContaining, outsideSnapshot } from './swap-helpers';

/** What a mid-path swap must look like: the object is gone. */
const MID_PATH = ['ENOENT'];
/**
 * A node held from a lower (revalidate=cached) whose object the daemon can no longer reach may
 * also answer ESTALE, the daemon's answer for a lower object that changed under a held node.
 */
const HELD_LOWER = ['ESTALE'];
/** What a call on a swapped last component may fail with. */
const LAST_COMPONENT = ['ENOENT', 'ELOOP', 'ESTALE', 'EOPNOTSUPP'];

const ATTACK_TIMEOUT_MS = 20000;
/** The system's python: the one first on root's PATH may live under /root, out of the user's reach. */
const PYTHON = '/usr/bin/python3';

const SECRET = `ROOTONLY-SECRET-${randomBytes(8).toString('hex')}`;
const XATTR_VALUE = 'ROOTONLY-XATTR-VALUE';
const LINK_TARGET = 'ROOTONLY-LINK-TARGET';

/** Runs first in every attack program: argument parsing, the swap, a cache-bypassing stat. */
const PRELUDE = `
import os, sys, errno, ctypes, struct
M, L, REL, TARGET = sys.argv[1:5]
UID, GID = int(sys.argv[5]), int(sys.argv[6])
D, F, E = M + '/pub/d', M + '/pub/f', M + '/pub/e'
def swap():
    p = os.path.join(L, REL)
    os.rename(p, p + '.away')
    os.symlink(TARGET, p)
libc = ctypes.CDLL(None, use_errno=True)
def statx_sync(path):
    # statx(AT_SYMLINK_NOFOLLOW | AT_STATX_FORCE_SYNC): asks the daemon, not the kernel's cache.
    buf = ctypes.create_string_buffer(256)
    if libc.statx(-100, path.encode(), 0x100 | 0x2000, 0xfff, buf) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), path)
    nlink, uid, gid, mode = struct.unpack_from('<IIIH', buf, 16)
    ino, size = struct.unpack_from('<QQ', buf, 32)
    return 'mode=%o uid=%d gid=%d size=%d ino=%d;' % (mode, uid, gid, size, ino)
import fcntl
FS_IOC_GETFLAGS, FS_IOC_SETFLAGS, FS_NODUMP_FL = 0x80086601, 0x40086602, 0x40
FS_IOC_FSGETXATTR, FS_IOC_FSSETXATTR = 0x801c581f, 0x401c5820
def set_nodump(fd):
    return fcntl.ioctl(fd, FS_IOC_SETFLAGS, struct.pack('i', FS_NODUMP_FL))
def get_flags(fd):
    return struct.unpack('i', fcntl.ioctl(fd, FS_IOC_GETFLAGS, b'\\0' * 4))[0]
def set_projid(fd):
    x = bytearray(fcntl.ioctl(fd, FS_IOC_FSGETXATTR, b'\\0' * 28))
    struct.pack_into('I', x, 12, 7)
    return fcntl.ioctl(fd, FS_IOC_FSSETXATTR, bytes(x))
def tmpfile_named(d):
    fd = os.open(d, os.O_TMPFILE | os.O_WRONLY, 0o600)
    os.write(fd, b'PWNED')
    return os.link('/proc/self/fd/%d' % fd, d + '/named')
def reopen_by_handle(path):
    # As an NFS server does: a handle made while the kernel held the node, the kernel's caches
    # dropped, then the object asked for again by handle alone (needs CAP_DAC_READ_SEARCH).
    h = ctypes.create_string_buffer(8 + 128)
    struct.pack_into('I', h, 0, 128)
    mount_id = ctypes.c_int()
    if libc.name_to_handle_at(-100, path.encode(), h, ctypes.byref(mount_id), 0) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), path)
    with open('/proc/sys/vm/drop_caches', 'w') as f: f.write('2')
    mfd = os.open(M, os.O_RDONLY | os.O_DIRECTORY)
    fd = libc.open_by_handle_at(mfd, h, os.O_RDONLY)
    if fd < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), path)
    return os.read(fd, 4096)
def report(fn):
    try:
        r = fn()
        print('OK ' + repr(r))
    except OSError as e:
        print('ERR ' + errno.errorcode.get(e.errno, str(e.errno)))
`;

type Expect = 'mid' | 'last' | 'any';

interface Attack {
  name: string;
  /** The layer entry the user replaces with a symlink, relative to the layer root. */
  swap: string;
  /** What the symlink points at, and how it is written. */
  to: 'dir' | 'secret';
  how?: 'absolute' | 'relative' | 'magic';
  /** A directory (relative to the mount) the attacker makes its cwd before the swap. */
  hold?: string;
  /** A file (relative to the mount) the attacker opens before the swap, as descriptor H. */
  openBefore?: string;
  /** Python body of `op()`, run after the swap; `return` what the call gave. */
  op: string;
  /** Root makes the call through the mount (the user only prepared and swapped). */
  byRoot?: boolean;
  /** mid: fails with ENOENT; last: fails with one of LAST_COMPONENT; any: either outcome. */
  expect: Expect;
  /** More errnos that are as good here (the no-follow call's own answer, e.g. EPERM for a user.* xattr on a symlink). */
  alsoOk?: string[];
  /**
   * A success is fine too when it shows nothing of the victim: a listing of nothing (as of a
   * removed directory), remembered attributes of a node that can no longer be reached.
   */
  successOk?: boolean;
}

interface Case {
  title: string;
  layer: 'upper' | 'lower';
  mountOpts: string;
  /** Builds the lower (as root; `pub` and below end up owned by the user). */
  lower: Record<string, string | { dir: true } | { symlink: string }>;
  /** Python run as the user before the swap: makes and looks up names through the mount. */
  prep: string;
  attacks: Attack[];
}

/** Inode flags set and read through a descriptor the user opened before the swap. */
function flagAttacks(swap: string, to: Attack['to'], openBefore: string, expect: Expect): Attack[] {
  return [
    { name: 'chattr (nodump) on a descriptor opened before', swap, to, openBefore, expect, op: `return set_nodump(H)` },
    { name: 'lsattr on a descriptor opened before', swap, to, openBefore, expect, op: `return get_flags(H)` },
    { name: 'FSSETXATTR (project id) on a descriptor opened before', swap, to, openBefore, expect, op: `return set_projid(H)` },
  ];
}

const lstatAll = (paths: string[]): string => `for p in ${JSON.stringify(paths)}: os.lstat(M + '/' + p)\n`;

// (a) the swap mid-path in the upper: pub/d, made by the user through the mount, becomes a
// symlink to the victim; calls are on pub/d/NAME, the kernel still holding pub/d (60 s).
// pub/m is a merged directory (lower, copied up): its lookups are revalidated every tick, so
// the attacker holds it as the cwd instead.
const CASE_A: Case = {
  title: '(a) upper, swap mid-path: pub/d -> rootonly, calls on pub/d/NAME',
  layer: 'upper',
  mountOpts: '',
  lower: { pub: { dir: true }, 'pub/m/lowfile': 'lower content', 'pub/m/lowfile2': 'lower content 2' },
  prep: `
os.mkdir(D)
with open(D + '/secret', 'w') as f: f.write('decoy')
os.mkdir(D + '/empty')
os.mkdir(D + '/sub')
with open(D + '/sub/only-in-sub', 'w') as f: f.write('decoy')
os.symlink('decoy-target', D + '/lnk')
with open(M + '/pub/own', 'w') as f: f.write('own')
open(M + '/pub/m/x', 'w').close()
${lstatAll(['pub', 'pub/d', 'pub/d/secret', 'pub/d/empty', 'pub/d/sub', 'pub/d/sub/only-in-sub', 'pub/d/lnk', 'pub/own', 'pub/m', 'pub/m/lowfile', 'pub/m/lowfile2'])}`,
  attacks: [
    { name: 'lstat of a name only the victim dir has', swap: 'pub/d', to: 'dir', expect: 'mid', op: `return statx_sync(D + '/only-in-rootonly')` },
    // The daemon may answer a held node it can no longer reach with the attributes it last saw
    // (nlink 0): fine, as long as they are not the victim's.
    { name: 'lstat (forced past the cache) of a held name', swap: 'pub/d', to: 'dir', expect: 'mid', successOk: true, op: `return statx_sync(D + '/secret')` },
    { name: 'open+read', swap: 'pub/d', to: 'dir', expect: 'mid', op: `return open(D + '/secret', 'rb').read()` },
    {
      name: 'open+write (append)',
      swap: 'pub/d',
      to: 'dir',
      expect: 'mid',
      op: `fd = os.open(D + '/secret', os.O_WRONLY | os.O_APPEND)\nreturn os.write(fd, b'PWNED')`,
    },
    { name: 'open with O_TRUNC', swap: 'pub/d', to: 'dir', expect: 'mid', op: `return os.open(D + '/secret', os.O_WRONLY | os.O_TRUNC)` },
    {
      name: 'create (O_CREAT|O_EXCL)',
      swap: 'pub/d',
      to: 'dir',
      expect: 'mid',
      op: `return os.open(D + '/created', os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)`,
    },
    { name: 'mkdir', swap: 'pub/d', to: 'dir', expect: 'mid', op: `return os.mkdir(D + '/newdir')` },
    { name: 'mknod (fifo)', swap: 'pub/d', to: 'dir', expect: 'mid', op: `return os.mkfifo(D + '/newfifo')` },
    { name: 'symlink', swap: 'pub/d', to: 'dir', expect: 'mid', op: `return os.symlink('/etc/shadow', D + '/newlink')` },
    { name: 'link, source under the swapped dir', swap: 'pub/d', to: 'dir', expect: 'mid', op: `return os.link(D + '/secret', M + '/pub/linked')` },
    { name: 'link, destination under the swapped dir', swap: 'pub/d', to: 'dir', expect: 'mid', op: `return os.link(M + '/pub/own', D + '/newhard')` },
    { name: 'rename, source under the swapped dir', swap: 'pub/d', to: 'dir', expect: 'mid', op: `return os.rename(D + '/secret', M + '/pub/stolen')` },
    { name: 'rename, destination under the swapped dir', swap: 'pub/d', to: 'dir', expect: 'mid', op: `return os.rename(M + '/pub/own', D + '/secret')` },
    { name: 'unlink', swap: 'pub/d', to: 'dir', expect: 'mid', op: `return os.unlink(D + '/secret')` },
    { name: 'rmdir', swap: 'pub/d', to: 'dir', expect: 'mid', op: `return os.rmdir(D + '/empty')` },
    { name: 'chmod', swap: 'pub/d', to: 'dir', expect: 'mid', op: `return os.chmod(D + '/secret', 0o666)` },
    { name: 'chown (the user, to itself)', swap: 'pub/d', to: 'dir', expect: 'mid', op: `return os.chown(D + '/secret', UID, GID)` },
    { name: 'chown by root through the mount', swap: 'pub/d', to: 'dir', expect: 'mid', byRoot: true, op: `return os.chown(D + '/secret', UID, GID)` },
    { name: 'chmod by root through the mount', swap: 'pub/d', to: 'dir', expect: 'mid', byRoot: true, op: `return os.chmod(D + '/secret', 0o666)` },
    { name: 'truncate', swap: 'pub/d', to: 'dir', expect: 'mid', op: `return os.truncate(D + '/secret', 0)` },
    { name: 'utimens (touch -d)', swap: 'pub/d', to: 'dir', expect: 'mid', op: `return os.utime(D + '/secret', (978307200, 978307200))` },
    { name: 'setxattr', swap: 'pub/d', to: 'dir', expect: 'mid', op: `return os.setxattr(D + '/secret', 'user.evil', b'1')` },
    { name: 'getxattr', swap: 'pub/d', to: 'dir', expect: 'mid', op: `return os.getxattr(D + '/secret', 'user.victimtag')` },
    { name: 'listxattr', swap: 'pub/d', to: 'dir', expect: 'mid', op: `return os.listxattr(D + '/secret')` },
    { name: 'removexattr', swap: 'pub/d', to: 'dir', expect: 'mid', op: `return os.removexattr(D + '/secret', 'user.victimtag')` },
    { name: 'readlink', swap: 'pub/d', to: 'dir', expect: 'mid', op: `return os.readlink(D + '/lnk')` },
    { name: 'readdir of a held subdirectory', swap: 'pub/d', to: 'dir', expect: 'mid', successOk: true, op: `return os.listdir(D + '/sub')` },
    // Paths of their own (issue 17): O_TMPFILE and linkat, inode flags on a descriptor the
    // user opened before the swap, a file handle asked for again after the kernel forgot.
    { name: 'O_TMPFILE in the swapped dir, then linkat', swap: 'pub/d', to: 'dir', expect: 'mid', op: `return tmpfile_named(D)` },
    ...flagAttacks('pub/d', 'dir', 'pub/d/secret', 'mid'),
    {
      name: 'open by file handle, by root, after the kernel forgot',
      swap: 'pub/d',
      to: 'dir',
      expect: 'last',
      byRoot: true,
      op: `return reopen_by_handle(D + '/secret')`,
    },
    // Two levels below the swap: the symlink is a middle component of the parent's path too.
    {
      name: 'two levels below the swap: create',
      swap: 'pub/d',
      to: 'dir',
      expect: 'mid',
      op: `return os.open(D + '/sub/created', os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)`,
    },
    { name: 'two levels below the swap: chmod', swap: 'pub/d', to: 'dir', expect: 'mid', op: `return os.chmod(D + '/sub/only-in-sub', 0o666)` },
    { name: 'two levels below the swap: open+read', swap: 'pub/d', to: 'dir', expect: 'mid', op: `return open(D + '/sub/only-in-sub', 'rb').read()` },
    {
      name: 'copy-up: writing a lower file whose upper parent was swapped (parent held as cwd)',
      swap: 'pub/m',
      to: 'dir',
      hold: 'pub/m',
      expect: 'mid',
      op: `with open('lowfile', 'ab') as f:\n    return f.write(b'x')`,
    },
    {
      name: 'copy-up: chmod of a lower file whose upper parent was swapped (parent held as cwd)',
      swap: 'pub/m',
      to: 'dir',
      hold: 'pub/m',
      expect: 'mid',
      op: `return os.chmod('lowfile', 0o600)`,
    },
    {
      name: 'whiteout: rm of a lower-only file whose upper parent was swapped (parent held as cwd)',
      swap: 'pub/m',
      to: 'dir',
      hold: 'pub/m',
      expect: 'mid',
      op: `return os.unlink('lowfile2')`,
    },
    {
      name: 'relative symlink target: create',
      swap: 'pub/d',
      to: 'dir',
      how: 'relative',
      expect: 'mid',
      op: `return os.open(D + '/created', os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)`,
    },
    { name: 'relative symlink target: chmod', swap: 'pub/d', to: 'dir', how: 'relative', expect: 'mid', op: `return os.chmod(D + '/secret', 0o666)` },
    {
      name: 'magic link target (/proc/self/root/…): create',
      swap: 'pub/d',
      to: 'dir',
      how: 'magic',
      expect: 'mid',
      op: `return os.open(D + '/created', os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)`,
    },
    {
      name: 'magic link target (/proc/self/root/…): chmod',
      swap: 'pub/d',
      to: 'dir',
      how: 'magic',
      expect: 'mid',
      op: `return os.chmod(D + '/secret', 0o666)`,
    },
  ],
};

// (b) the swap as the last component in the upper: the file pub/f (or the directory pub/e),
// made by the user through the mount and held by the kernel, becomes a symlink to
// rootonly/secret (or to rootonly itself).
const CASE_B: Case = {
  title: '(b) upper, swap as last component: pub/f -> rootonly/secret, pub/e -> rootonly',
  layer: 'upper',
  mountOpts: '',
  lower: { pub: { dir: true } },
  prep: `
with open(F, 'w') as f: f.write('decoy')
os.mkdir(E)
with open(M + '/pub/own', 'w') as f: f.write('own')
${lstatAll(['pub', 'pub/f', 'pub/e', 'pub/own'])}`,
  attacks: [
    { name: 'lstat (forced past the cache)', swap: 'pub/f', to: 'secret', expect: 'last', successOk: true, op: `return statx_sync(F)` },
    { name: 'open+read', swap: 'pub/f', to: 'secret', expect: 'last', op: `return open(F, 'rb').read()` },
    {
      name: 'open+write (append)',
      swap: 'pub/f',
      to: 'secret',
      expect: 'last',
      op: `fd = os.open(F, os.O_WRONLY | os.O_APPEND)\nreturn os.write(fd, b'PWNED')`,
    },
    { name: 'open with O_TRUNC', swap: 'pub/f', to: 'secret', expect: 'last', op: `return os.open(F, os.O_WRONLY | os.O_TRUNC)` },
    {
      name: 'open with O_CREAT (name held, so no create)',
      swap: 'pub/f',
      to: 'secret',
      expect: 'last',
      op: `fd = os.open(F, os.O_WRONLY | os.O_CREAT, 0o666)\nreturn os.write(fd, b'PWNED')`,
    },
    { name: 'chmod', swap: 'pub/f', to: 'secret', expect: 'last', op: `return os.chmod(F, 0o666)` },
    { name: 'chown (the user, to itself)', swap: 'pub/f', to: 'secret', expect: 'last', op: `return os.chown(F, UID, GID)` },
    { name: 'chown by root through the mount', swap: 'pub/f', to: 'secret', expect: 'last', byRoot: true, op: `return os.chown(F, UID, GID)` },
    { name: 'chmod by root through the mount', swap: 'pub/f', to: 'secret', expect: 'last', byRoot: true, op: `return os.chmod(F, 0o666)` },
    { name: 'truncate', swap: 'pub/f', to: 'secret', expect: 'last', op: `return os.truncate(F, 0)` },
    { name: 'utimens (touch -d)', swap: 'pub/f', to: 'secret', expect: 'last', op: `return os.utime(F, (978307200, 978307200))` },
    { name: 'setxattr', swap: 'pub/f', to: 'secret', expect: 'last', alsoOk: ['EPERM'], op: `return os.setxattr(F, 'user.evil', b'1')` },
    { name: 'getxattr', swap: 'pub/f', to: 'secret', expect: 'last', alsoOk: ['ENODATA'], op: `return os.getxattr(F, 'user.victimtag')` },
    { name: 'listxattr', swap: 'pub/f', to: 'secret', expect: 'last', successOk: true, op: `return os.listxattr(F)` },
    { name: 'removexattr', swap: 'pub/f', to: 'secret', expect: 'last', alsoOk: ['EPERM', 'ENODATA'], op: `return os.removexattr(F, 'user.victimtag')` },
    ...flagAttacks('pub/f', 'secret', 'pub/f', 'last'),
    {
      name: 'open by file handle, by root, after the kernel forgot',
      swap: 'pub/f',
      to: 'secret',
      expect: 'last',
      byRoot: true,
      op: `return reopen_by_handle(F)`,
    },
    { name: 'O_TMPFILE in the swapped dir (to the victim dir)', swap: 'pub/e', to: 'dir', expect: 'last', alsoOk: ['ENOTDIR'], op: `return tmpfile_named(E)` },
    // These act on the layer's entry itself (the symlink), never on what it points at:
    // either outcome will do, as long as nothing outside changes.
    { name: 'link, source swapped', swap: 'pub/f', to: 'secret', expect: 'any', op: `return os.link(F, M + '/pub/linked')` },
    { name: 'rename, source swapped', swap: 'pub/f', to: 'secret', expect: 'any', op: `return os.rename(F, M + '/pub/moved')` },
    { name: 'rename, destination swapped', swap: 'pub/f', to: 'secret', expect: 'any', op: `return os.rename(M + '/pub/own', F)` },
    { name: 'unlink', swap: 'pub/f', to: 'secret', expect: 'any', op: `return os.unlink(F)` },
    { name: 'directory: readdir', swap: 'pub/e', to: 'dir', expect: 'last', alsoOk: ['ENOTDIR'], successOk: true, op: `return os.listdir(E)` },
    { name: 'directory: lstat (forced past the cache)', swap: 'pub/e', to: 'dir', expect: 'last', successOk: true, op: `return statx_sync(E)` },
    { name: 'directory: chmod', swap: 'pub/e', to: 'dir', expect: 'last', op: `return os.chmod(E, 0o777)` },
    { name: 'directory: chown (the user, to itself)', swap: 'pub/e', to: 'dir', expect: 'last', op: `return os.chown(E, UID, GID)` },
    { name: 'directory: utimens', swap: 'pub/e', to: 'dir', expect: 'last', op: `return os.utime(E, (978307200, 978307200))` },
    { name: 'directory: setxattr', swap: 'pub/e', to: 'dir', expect: 'last', alsoOk: ['EPERM'], op: `return os.setxattr(E, 'user.evil', b'1')` },
    { name: 'directory: getxattr', swap: 'pub/e', to: 'dir', expect: 'last', alsoOk: ['ENODATA'], op: `return os.getxattr(E, 'user.victimtag')` },
    { name: 'directory: rmdir', swap: 'pub/e', to: 'dir', expect: 'any', op: `return os.rmdir(E)` },
    { name: 'relative symlink target: chmod', swap: 'pub/f', to: 'secret', how: 'relative', expect: 'last', op: `return os.chmod(F, 0o666)` },
    { name: 'relative symlink target: open+read', swap: 'pub/f', to: 'secret', how: 'relative', expect: 'last', op: `return open(F, 'rb').read()` },
    { name: 'magic link target (/proc/self/root/…): chmod', swap: 'pub/f', to: 'secret', how: 'magic', expect: 'last', op: `return os.chmod(F, 0o666)` },
    { name: 'magic link target (/proc/self/root/…): open+read', swap: 'pub/f', to: 'secret', how: 'magic', expect: 'last', op: `return open(F, 'rb').read()` },
  ],
};

// (c) the swap mid-path in a lower: the user's lower directory pub/d becomes a symlink to the
// victim; revalidate=cached, so the kernel and the daemon keep the old node.
const CASE_C: Case = {
  title: '(c) lower, swap mid-path (revalidate=cached): pub/d -> rootonly',
  layer: 'lower',
  mountOpts: 'revalidate=cached',
  lower: { 'pub/d/secret': 'decoy', 'pub/d/empty': { dir: true }, 'pub/d/sub': { dir: true }, 'pub/d/lnk': { symlink: 'decoy-target' } },
  prep: lstatAll(['pub', 'pub/d', 'pub/d/secret', 'pub/d/empty', 'pub/d/sub', 'pub/d/lnk']),
  attacks: [
    { name: 'lstat of a name only the victim dir has', swap: 'pub/d', to: 'dir', expect: 'mid', op: `return statx_sync(D + '/only-in-rootonly')` },
    // The daemon may answer a held node it can no longer reach with the attributes it last saw
    // (nlink 0): fine, as long as they are not the victim's.
    { name: 'lstat (forced past the cache) of a held name', swap: 'pub/d', to: 'dir', expect: 'mid', successOk: true, op: `return statx_sync(D + '/secret')` },
    { name: 'open+read (cat)', swap: 'pub/d', to: 'dir', expect: 'mid', alsoOk: HELD_LOWER, op: `return open(D + '/secret', 'rb').read()` },
    { name: 'copy-up by chmod', swap: 'pub/d', to: 'dir', expect: 'mid', alsoOk: HELD_LOWER, op: `return os.chmod(D + '/secret', 0o600)` },
    {
      name: 'copy-up by write (append)',
      swap: 'pub/d',
      to: 'dir',
      expect: 'mid',
      alsoOk: HELD_LOWER,
      op: `with open(D + '/secret', 'ab') as f:\n    return f.write(b'x')`,
    },
    { name: 'getxattr', swap: 'pub/d', to: 'dir', expect: 'mid', alsoOk: HELD_LOWER, op: `return os.getxattr(D + '/secret', 'user.victimtag')` },
    { name: 'listxattr', swap: 'pub/d', to: 'dir', expect: 'mid', alsoOk: HELD_LOWER, op: `return os.listxattr(D + '/secret')` },
    { name: 'readlink', swap: 'pub/d', to: 'dir', expect: 'mid', alsoOk: HELD_LOWER, op: `return os.readlink(D + '/lnk')` },
    {
      name: 'readdir (ls) of the swapped dir itself',
      swap: 'pub/d',
      to: 'dir',
      expect: 'last',
      alsoOk: ['ENOTDIR'],
      successOk: true,
      op: `return os.listdir(D)`,
    },
    { name: 'readdir (ls) of a held subdirectory', swap: 'pub/d', to: 'dir', expect: 'mid', successOk: true, op: `return os.listdir(D + '/sub')` },
    { name: 'O_TMPFILE in the swapped dir, then linkat', swap: 'pub/d', to: 'dir', expect: 'mid', alsoOk: HELD_LOWER, op: `return tmpfile_named(D)` },
    {
      name: 'chattr (nodump, a copy-up) on a descriptor opened before',
      swap: 'pub/d',
      to: 'dir',
      openBefore: 'pub/d/secret',
      expect: 'mid',
      alsoOk: HELD_LOWER,
      op: `return set_nodump(H)`,
    },
    {
      name: 'relative symlink target: open+read',
      swap: 'pub/d',
      to: 'dir',
      how: 'relative',
      expect: 'mid',
      alsoOk: HELD_LOWER,
      op: `return open(D + '/secret', 'rb').read()`,
    },
    {
      name: 'magic link target (/proc/self/root/…): open+read',
      swap: 'pub/d',
      to: 'dir',
      how: 'magic',
      expect: 'mid',
      alsoOk: HELD_LOWER,
      op: `return open(D + '/secret', 'rb').read()`,
    },
    {
      name: 'magic link target (/proc/self/root/…): copy-up by chmod',
      swap: 'pub/d',
      to: 'dir',
      how: 'magic',
      expect: 'mid',
      alsoOk: HELD_LOWER,
      op: `return os.chmod(D + '/secret', 0o600)`,
    },
  ],
};

// (d) the last component in a lower: the user's lower file pub/f becomes a symlink to
// rootonly/secret; revalidate=cached. A copy-up must not copy the secret into the upper.
const CASE_D: Case = {
  title: '(d) lower, swap as last component (revalidate=cached): pub/f -> rootonly/secret',
  layer: 'lower',
  mountOpts: 'revalidate=cached',
  lower: { 'pub/f': 'decoy' },
  prep: lstatAll(['pub', 'pub/f']),
  attacks: [
    { name: 'lstat (forced past the cache)', swap: 'pub/f', to: 'secret', expect: 'last', successOk: true, op: `return statx_sync(F)` },
    { name: 'open+read (cat)', swap: 'pub/f', to: 'secret', expect: 'last', op: `return open(F, 'rb').read()` },
    { name: 'copy-up by chmod', swap: 'pub/f', to: 'secret', expect: 'last', op: `return os.chmod(F, 0o600)` },
    { name: 'copy-up by write (append)', swap: 'pub/f', to: 'secret', expect: 'last', op: `with open(F, 'ab') as f:\n    return f.write(b'x')` },
    { name: 'copy-up by setxattr', swap: 'pub/f', to: 'secret', expect: 'last', op: `return os.setxattr(F, 'user.evil', b'1')` },
    { name: 'getxattr', swap: 'pub/f', to: 'secret', expect: 'last', alsoOk: ['ENODATA'], op: `return os.getxattr(F, 'user.victimtag')` },
    { name: 'listxattr', swap: 'pub/f', to: 'secret', expect: 'last', successOk: true, op: `return os.listxattr(F)` },
    {
      name: 'chattr (nodump, a copy-up) on a descriptor opened before',
      swap: 'pub/f',
      to: 'secret',
      openBefore: 'pub/f',
      expect: 'last',
      op: `return set_nodump(H)`,
    },
    {
      name: 'lsattr on a descriptor opened before',
      swap: 'pub/f',
      to: 'secret',
      openBefore: 'pub/f',
      expect: 'last',
      successOk: true,
      op: `return get_flags(H)`,
    },
    { name: 'relative symlink target: open+read', swap: 'pub/f', to: 'secret', how: 'relative', expect: 'last', op: `return open(F, 'rb').read()` },
    {
      name: 'magic link target (/proc/self/root/…): copy-up by chmod',
      swap: 'pub/f',
      to: 'secret',
      how: 'magic',
      expect: 'last',
      op: `return os.chmod(F, 0o600)`,
    },
  ],
};

const CASES = [CASE_A, CASE_B, CASE_C, CASE_D];

function indent(code: string): string {
  return code
    .split('\n')
    .map((l) => `    ${l}`)
    .join('\n');
}

function opProgram(a: Attack): string {
  return `def op():\n${indent(a.op)}\nreport(op)\n`;
}

/** The root-only directory beside the layers, and what must never be seen of it. */
function makeVictim(s: Scratch): { dir: string; markers: string[] } {
  const dir = s.dir('rootonly');
  fs.chmodSync(dir, 0o700);
  fs.writeFileSync(join(dir, 'secret'), `${SECRET}\n`, { mode: 0o600 });
  fs.chmodSync(join(dir, 'secret'), 0o600);
  fs.writeFileSync(join(dir, 'only-in-rootonly'), 'x', { mode: 0o600 });
  fs.mkdirSync(join(dir, 'empty'), { mode: 0o755 });
  fs.mkdirSync(join(dir, 'sub'), { mode: 0o755 });
  fs.writeFileSync(join(dir, 'sub', 'only-in-sub'), 'y', { mode: 0o600 });
  fs.symlinkSync(LINK_TARGET, join(dir, 'lnk'));
  execFileSync('setfattr', ['-n', 'user.victimtag', '-v', XATTR_VALUE, join(dir, 'secret')]);
  execFileSync('setfattr', ['-n', 'user.victimtag', '-v', XATTR_VALUE, dir]);
  const inos = ['', 'secret', 'only-in-rootonly', 'empty', 'sub', 'sub/only-in-sub', 'lnk'].map((rel) => `ino=${fs.lstatSync(join(dir, rel)).ino};`);
  return { dir, markers: [SECRET, 'only-in-rootonly', 'only-in-sub', XATTR_VALUE, 'victimtag', LINK_TARGET, ...inos] };
}

/** Builds a lower tree as root, then gives `pub` and everything below it to the user. */
function makeLower(root: string, spec: Case['lower'], user: TestUser): void {
  for (const [rel, what] of Object.entries(spec)) {
    const p = join(root, rel);
    fs.mkdirSync(dirname(p), { recursive: true });
    if (typeof what === 'string') fs.writeFileSync(p, what);
    else if ('dir' in what) fs.mkdirSync(p, { recursive: true });
    else fs.symlinkSync(what.symlink, p);
  }
  const give = (p: string): void => {
    fs.lchownSync(p, user.uid, user.gid);
    if (fs.lstatSync(p).isDirectory()) {
      fs.chmodSync(p, 0o755);
      for (const name of fs.readdirSync(p)) give(join(p, name));
    }
  };
  give(join(root, 'pub'));
}

function symlinkTarget(a: Attack, linkPath: string, victim: string): string {
  const to = a.to === 'dir' ? victim : join(victim, 'secret');
  switch (a.how ?? 'absolute') {
    case 'absolute':
      return to;
    case 'relative':
      return relative(dirname(linkPath), to);
    case 'magic':
      return `/proc/self/root${to}`;
  }
}

/** The last OK/ERR line of an attack program's output. */
function outcomeOf(r: RunResult): string | undefined {
  const lines = r.stdout.split('\n').filter((l) => l.startsWith('OK ') || l.startsWith('ERR '));
  const last = lines[lines.length - 1];
  return last?.replace(/^ERR ENOTSUP$/, 'ERR EOPNOTSUPP');
}

describe('security: symlinks swapped into a layer never lead the daemon outside it (issue 11)', function () {
  this.timeout(90000);
  let user: TestUser;
  let s: Scratch | undefined;

  before(async () => {
    user = await createUser();
  });

  after(async () => {
    await removeUser(user);
  });

  afterEach(async () => {
    await s?.dispose();
    s = undefined;
  });

  async function attack(c: Case, a: Attack): Promise<void> {
    s = new Scratch('ovshift-swap-');
    const victim = makeVictim(s);
    makeLower(s.lower, c.lower, user);
    await s.mount(c.mountOpts);
    const layerRoot = c.layer === 'upper' ? s.upper : s.lower;
    const target = symlinkTarget(a, join(layerRoot, a.swap), victim.dir);
    const args = [s.mnt, layerRoot, a.swap, target, String(user.uid), String(user.gid)];
    const before = outsideSnapshot(s.root, ['lower', 'upper', 'work', 'mnt']);

    const hold = `${a.hold ? `os.chdir(M + '/${a.hold}')\n` : ''}${a.openBefore ? `H = os.open(M + '/${a.openBefore}', os.O_RDONLY)\n` : ''}`;
    const userProgram = `${PRELUDE}${c.prep}\n${hold}swap()\n${a.byRoot ? "print('SWAPPED')\n" : opProgram(a)}`;
    const byUser = await user.run([PYTHON, '-c', userProgram, ...args], { timeoutMs: ATTACK_TIMEOUT_MS });
    let result = byUser;
    if (a.byRoot) {
      assert.match(byUser.stdout, /SWAPPED/, `the user's preparation failed: ${byUser.stderr}`);
      result = await run(PYTHON, ['-c', `${PRELUDE}${opProgram(a)}`, ...args], { timeoutMs: ATTACK_TIMEOUT_MS, cwd: '/' });
    }
    const outcome = outcomeOf(result);
    assert.ok(outcome, `the attack program did not run to its call (exit ${result.code ?? result.signal}): ${byUser.stderr}${result.stderr}`);
    if (process.env.OVSHIFT_SWAP_REPORT) console.log(`      [${c.title.slice(0, 3)} ${a.name}] ${outcome}`);

    const problems: string[] = [];
    for (const change of diffSnapshots(before, outsideSnapshot(s.root, ['lower', 'upper', 'work', 'mnt']))) {
      problems.push(`outside the layers: ${change}`);
    }
    const seen = `${byUser.stdout}${byUser.stderr}${result === byUser ? '' : result.stdout + result.stderr}`;
    for (const m of victim.markers) if (seen.includes(m)) problems.push(`the caller was shown ${JSON.stringify(m)} of the victim`);
    for (const f of [...filesContaining(s.upper, SECRET), ...filesContaining(s.work, SECRET)]) {
      problems.push(`the secret's bytes are in the layers: ${relative(s.root, f)}`);
    }
    if (a.expect !== 'any') {
      const allowed = [...(a.expect === 'mid' ? MID_PATH : LAST_COMPONENT), ...(a.alsoOk ?? [])];
      const errno = outcome.startsWith('ERR ') ? outcome.slice(4) : undefined;
      if (errno === undefined) {
        if (!a.successOk) problems.push(`the call succeeded (${outcome}); expected ${allowed.join('/')}`);
      } else if (!allowed.includes(errno)) {
        problems.push(`the call failed with ${errno}; expected ${allowed.join('/')}`);
      }
    }
    if (problems.length > 0) assert.fail(`${a.name} (${outcome}):\n  ${problems.join('\n  ')}`);
  }

  for (const c of CASES) {
    describe(c.title, () => {
      for (const a of c.attacks) it(a.name, () => attack(c, a));
    });
  }
});
