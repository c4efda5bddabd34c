/**
 * Command-line parsing. Three forms are accepted, mixable:
 *   ovshift [-f] [-d] -o lowerdir=A:B,upperdir=U,workdir=W[,…] MOUNTPOINT   (fuse-overlayfs)
 *   ovshift SOURCE MOUNTPOINT -o …                                           (mount.fuse3)
 *   ovshift --lower A --lower B --upper U --work W MOUNTPOINT                 (long options)
 */
import { applyMountFlag } from './mount-flags';
import { parseIdRanges, parseSquashId } from '../idmap';
import { parseRules } from '../layers/faults';
import { wholeStartLength } from '../layers/lower-location';
import { CACHE_SECONDS, ONE_TICK, boundedNumber, expected, type Bounds } from '../util/bounds';

export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/**
 * A value an option does not take (malformed, or outside its range). Refused like any mount
 * that cannot be made (exit 1), where a misused command line exits 2.
 */
export class OptionValueError extends UsageError {
  constructor(message: string) {
    super(message);
    this.name = 'OptionValueError';
  }
}

export interface MountFlags {
  readOnly: boolean;
  nosuid: boolean;
  nodev: boolean;
  noexec: boolean;
  noatime: boolean;
  nodiratime: boolean;
  strictatime: boolean;
  lazytime: boolean;
  sync: boolean;
  dirsync: boolean;
}

export interface CliOptions {
  mountpoint: string;
  source: string;
  lowers: string[];
  upper?: string;
  work?: string;
  /** Size of the private tmpfs upper, as tmpfs's size= takes it. */
  upperSize?: string;
  /** Where the private upper's mountpoint is made (the caller's TMPDIR); os.tmpdir() if unset. */
  tempDir?: string;
  foreground: boolean;
  debug: boolean;
  flags: MountFlags;
  allowOther: boolean;
  redirectDir: boolean;
  /** File handles outlive the mount: the handle table is kept in the workdir across a remount. */
  nfsExport: boolean;
  /** Kernel cache timeout for upper-only entries, seconds. */
  upperTimeout: number;
  /** Kernel cache timeout for lower-dependent entries, seconds (default: one clock tick). */
  lowerTimeout: number;
  revalidate: 'always' | 'cached' | 'kernel';
  /** locks=lower (default): locks are also taken on the files underneath; local: only here. */
  forwardLocks: boolean;
  /** passthrough=on (default): the kernel reads and writes upper files itself where it can. */
  passthrough: boolean;
  /** Lower changes pushed by the kernel (fanotify) where it can report them; off: polled. */
  watch: boolean;
  /** Fault rules for lower operations (src/layers/faults.ts syntax). */
  inject?: string;
  uidmapping?: string;
  gidmapping?: string;
  squashToRoot: boolean;
  squashToUid?: string;
  squashToGid?: string;
  /** volatile: nothing syncs the upper (kernel overlayfs's meaning; fuse-overlayfs's too). */
  volatile: boolean;
  /** -o remount: change the mount flags of a running mount (see remount.ts). */
  remount?: boolean;
  /** fsync=0|1 (fuse-overlayfs): 0 means volatile; volatile wins over fsync=1. */
  fsync: boolean;
  /** static_nlink: directories show st_nlink 1. */
  staticNlink: boolean;
  /** noxattrs=1: no xattrs through the mount (EOPNOTSUPP). */
  noXattrs: boolean;
  /** acl (default) / noacl: the kernel enforces POSIX ACLs, default ACLs are inherited. */
  acl: boolean;
}

/** remount: `options` are every -o option given, in order (remount.ts applies the flag ones). */
export type Command =
  { kind: 'mount'; options: CliOptions } | { kind: 'remount'; mountpoint: string; options: string[] } | { kind: 'help' } | { kind: 'version' };

export const HELP = `Usage:
  ovshift [-f] [-d] -o lowerdir=DIR[:DIR…][,upperdir=DIR,workdir=DIR][,OPTION…] MOUNTPOINT
  ovshift SOURCE MOUNTPOINT -o OPTIONS          (as mount -t fuse.ovshift calls it)
  ovshift --lower DIR [--lower DIR…] [--upper DIR --work DIR] [OPTIONS] MOUNTPOINT
  ovshift ctl MOUNTPOINT inject add RULE | inject list | inject clear | status

Stacks a writable upper directory over one or more lower directories (topmost first) and
serves the merged view at MOUNTPOINT. Without an upper directory the upper is a private tmpfs,
removed when ovshift exits; with -o ro and no upper, the view is read-only.

Options:
  -f                      stay in the foreground (otherwise return once mounted)
  -d, --debug, -o debug   foreground, and log every request (DEBUG=ovshift:*)
  -o lowerdir=A:B         lower layers, topmost first; "\\:" is a literal colon
                          a layer may be nfs://HOST[:PORT]/EXPORT[/DIR][?OPTS]: an NFSv3
                          export read in userspace (OPTS: mountport=1..65535
                          nlmport=1..65535 uid=ID gid=ID soft timeo=1..36000
                          (deciseconds) retrans=0..1000 actimeo=0..3600 (seconds),
                          joined by &)
  -o upperdir=DIR         writable upper layer (kernel overlayfs format)
  -o workdir=DIR          work directory on the same filesystem as upperdir
  -o upper_size=SIZE      size of the private tmpfs upper (as tmpfs size=, default 50%):
                          4k to 1p (suffix k, m, g, t, p: powers of 1024), or 1% to 100%
  -o ro                   read-only mount
  -o redirect_dir=on|off  renaming directories that have lower parts: on records a
                          redirect (default), off answers EXDEV
  -o nfs_export=on|off    on: file handles (open_by_handle_at, an NFS export of the mount)
                          stay valid across an unmount and mount of the same layers (the
                          table is kept in the workdir); off (default): they die with the mount
  -o passthrough=on|off   on (default): the kernel reads and writes files in the upper
                          itself (FUSE passthrough; needs root), off: through the daemon
  -o upper_timeout=SECS   kernel cache time for entries that depend on the upper only (60);
                          both timeouts from 0 to 31536000 seconds (a year)
  -o lower_timeout=SECS   the same for entries a lower decides: one clock tick by default
                          (4 ms at HZ=250); 0 makes every access check the lower
  -o watch=on|off         on (default): where the kernel reports a lower's changes (a local
                          filesystem, as root), entries a lower decides are kept as long as
                          upper_timeout and each change invalidates what it touches; off, or
                          where it cannot: lower_timeout applies
  -o revalidate=MODE      always: every lookup re-checks the lower (default);
                          cached: cache lower lookups, as fuse-overlayfs does;
                          kernel: cache like kernel overlayfs, ESTALE when a lower changed
  -o locks=lower|local    locks are also taken on the files underneath, where other
                          users of the lower see them (lower, default), or only here
  -o inject=RULE[;RULE…]  fault injection on lower operations, OP[@LAYER]:GLOB:EFFECT[:LIMIT]
                          e.g. stat:docs/*:ESTALE:count=1 or read:**:delay=50:p=0.1
                          (delay=0..3600000 ms, count=1..1000000000, p=0..1);
                          change it at runtime with: ovshift ctl MOUNTPOINT inject add RULE
  -o allow_other          let other users in (default when mounting as root)
  -o uidmapping=L:V:N[:…] show layer uid L as V, for N ids (fuse-overlayfs syntax)
  -o gidmapping=L:V:N[:…] the same for gids
                          (a leading ":", as containers-storage writes it, is allowed);
                          a creating caller with no mapping stores the overflow id (65534)
  -o squash_to_root, squash_to_uid=ID, squash_to_gid=ID
                          show every file as owned by root, or by ID (0 to 4294967294)
  -o volatile, fsync=0    never sync the upper: fsync succeeds at once (kernel overlayfs's
                          volatile); a crash may lose data, drop the upper then. fsync=1:
                          sync (default), unless volatile is also given
  -o static_nlink         every directory shows 1 link
  -o noxattrs=0|1         1: no extended attributes through the mount (EOPNOTSUPP)
  -o timeout=SECS         fuse-overlayfs's cache time: sets upper_timeout and lower_timeout
  -o acl, -o noacl        acl (default): the kernel enforces POSIX ACLs as on a local
                          filesystem (default ACLs inherited, umask where there is none);
                          noacl: ACL xattrs are stored and translated, only modes enforced
  Accepted from fuse-overlayfs and containers-storage, without effect here:
    context=, fscontext=, defcontext=, rootcontext=
                          SELinux labels; fuse-overlayfs ignores them too. A value may be
                          quoted: context="system_u:object_r:container_file_t:s0:c1,c2"
    xattr_permissions=0|1|2
                          owners and modes are always stored for real (chown, chmod on the
                          upper); override_stat xattrs are neither written nor read
    threaded=N, -s        one event loop serves every request without threads
    fast_ino=0|1          inode numbers are ovshift's own, never slow to compute
    writeback=0|1         no kernel writeback cache: writes reach the upper at once
    plugins=PATH[:PATH]   layer backends are built in (directories, nfs:// URLs)
    splice_read, splice_write, splice_move, kernel_cache, max_write[=N]
                          libfuse tuning: ovshift speaks /dev/fuse itself and chooses
  Standard mount options: rw, ro, suid, nosuid, dev, nodev, exec, noexec, atime, noatime,
  diratime, nodiratime, relatime, strictatime, lazytime, sync, async, dirsync, defaults.
  Mounts by root are suid by default (as fuse-overlayfs's), nodev; other users' mounts are
  always nosuid,nodev (fusermount3's rule), whatever is asked.
  remount (mount -o remount,ro MOUNTPOINT): changes these flags of a running mount and,
  as kernel overlayfs, ignores every other option given with it (the layers stay).
  --lower DIR, --upper DIR, --work DIR, --uidmap SPEC, --gidmap SPEC: long forms of the above.
  OVSHIFT_OPTIONS=OPTS    environment: options applied before the command line's, for
                          tools that cannot pass any (like a kernel module parameter)
  Without -f, the installed ovshift (a native front end) has the user's mount server make
  and serve the mount, starting the server when none runs; umount ends one mount, SIGTERM
  to the server (pid in /run/ovshift or $XDG_RUNTIME_DIR/ovshift-UID) ends them all.
  OVSHIFT_SERVER=off      environment: a process of its own for this mount instead
  OVSHIFT_SERVER_IDLE=S   environment of the command that starts the server: it exits after
                          S seconds without a mount (default 60)
  -h, --help              this text
  -V, --version           version

Examples:
  ovshift -o lowerdir=/srv/root,upperdir=/var/ov/u,workdir=/var/ov/w /mnt/root
  ovshift --lower /srv/root /mnt/scratch          # tmpfs upper, gone at unmount
  mount -t fuse.ovshift ovshift /mnt -o lowerdir=/srv/root,upperdir=/u,workdir=/w
  fstab: ovshift /mnt fuse.ovshift lowerdir=/srv/root,upperdir=/u,workdir=/w 0 0
  ovshift -o lowerdir=/img,upperdir=/u,workdir=/w,uidmapping=0:100000:65536,gidmapping=0:100000:65536 /c/rootfs
`;

/** Options that only mount(8) or fstab care about. */
const IGNORED = new Set(['defaults', 'auto', 'noauto', 'user', 'nouser', 'users', '_netdev', 'nofail', 'default_permissions']);

/**
 * Splits an -o string at commas that are neither escaped by a backslash nor inside double
 * quotes, and drops the quotes: containers-storage passes SELinux labels, which hold commas,
 * as context="system_u:object_r:container_file_t:s0:c1,c2".
 */
export function splitOptions(s: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quoted = false;
  let optionAt = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (c === '\\' && i + 1 < s.length) {
      cur += c + s[++i];
    } else if (c === '"') {
      quoted = !quoted;
    } else if (c === ',' && !quoted) {
      out.push(cur);
      cur = '';
      optionAt = i + 1;
    } else cur += c;
  }
  if (quoted) {
    throw new OptionValueError(`option ${s.slice(optionAt)}: the double quote is never closed`);
  }
  out.push(cur);
  return out.filter((o) => o !== '');
}

/**
 * Splits lowerdir at colons not escaped by a backslash; "\\:" and "\\," become literal. A layer
 * that starts with a backend's URL scheme keeps the start that backend says whole: for nfs://,
 * the colons of "nfs://HOST:PORT" (and of an [IPv6] host) do not split.
 */
export function splitLowerdir(s: string): string[] {
  const out: string[] = [];
  let cur = '';
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    const authority = cur === '' ? wholeStartLength(s.slice(i)) : 0;
    if (authority > 0) {
      cur = s.slice(i, i + authority);
      i += authority - 1;
    } else if (c === '\\' && i + 1 < s.length) cur += s[++i];
    else if (c === ':') {
      out.push(cur);
      cur = '';
    } else cur += c;
  }
  out.push(cur);
  if (out.some((p) => p === '')) throw new UsageError(`lowerdir ${JSON.stringify(s)} has an empty layer`);
  return out;
}

function unescape(s: string): string {
  return s.replace(/\\(.)/g, '$1');
}

function onOff(name: string, v: string): boolean {
  if (v === 'on' || v === 'true' || v === '1') return true;
  if (v === 'off' || v === 'false' || v === '0') return false;
  throw new OptionValueError(`option ${name}=${v}: expected on or off`);
}

/** fuse-overlayfs's 0|1 switches (fsync=, noxattrs=, fast_ino=, writeback=). */
function zeroOne(name: string, v: string): boolean {
  if (v === '0' || v === '1') return v === '1';
  throw new OptionValueError(`option ${name}=${v}: expected 0 or 1`);
}

/** threaded=N: fuse-overlayfs reads a C int. */
const THREADED: Bounds = { min: 0, max: 2 ** 31 - 1, unit: 'a number' };
/** max_write=N: libfuse reads an unsigned int. */
const MAX_WRITE: Bounds = { min: 0, max: 2 ** 32 - 1, unit: 'bytes' };

function checkNumber(name: string, v: string, bounds: Bounds): void {
  if (boundedNumber(v, bounds) === undefined) throw new OptionValueError(`option ${name}=${v}: ${expected(bounds)}`);
}

function seconds(name: string, v: string): number {
  const n = boundedNumber(v, CACHE_SECONDS);
  if (n === undefined) throw new OptionValueError(`option ${name}=${v}: ${expected(CACHE_SECONDS)}`);
  return n;
}

const SIZE_SUFFIXES = 'kmgtp';
const MIN_UPPER_SIZE = 4096;
const MAX_UPPER_SIZE = 1024 ** 5;
const UPPER_SIZE_RANGE = 'expected a size from 4k to 1p (k, m, g, t, p: powers of 1024), or 1% to 100% of RAM';

/** tmpfs's size=, bounded: a whole number of bytes with an optional suffix, or a share of RAM. */
function upperSize(v: string): string {
  const percent = /^([0-9]+)%$/.exec(v);
  if (percent) {
    if (boundedNumber(percent[1]!, { min: 1, max: 100, unit: '%' }) === undefined) throw new OptionValueError(`option upper_size=${v}: ${UPPER_SIZE_RANGE}`);
    return v;
  }
  const size = /^([0-9]+)([kmgtp]?)$/i.exec(v);
  const power = size?.[2] ? SIZE_SUFFIXES.indexOf(size[2].toLowerCase()) + 1 : 0;
  const bytes = size ? Number(size[1]) * 1024 ** power : NaN;
  if (!(bytes >= MIN_UPPER_SIZE && bytes <= MAX_UPPER_SIZE)) throw new OptionValueError(`option upper_size=${v}: ${UPPER_SIZE_RANGE}`);
  return v;
}

/** Runs a value check of another module; its refusal becomes this option's, prefixed. */
function refuseAs(prefix: string, check: () => unknown): void {
  try {
    check();
  } catch (err) {
    throw new OptionValueError(`${prefix}${(err as Error).message}`);
  }
}

/** Values checked once every option is in (a fault rule's layer needs the number of lowers). */
function checkValues(o: Omit<CliOptions, 'mountpoint' | 'source'>): void {
  if (o.squashToUid !== undefined) refuseAs('option ', () => parseSquashId('squash_to_uid', o.squashToUid!));
  if (o.squashToGid !== undefined) refuseAs('option ', () => parseSquashId('squash_to_gid', o.squashToGid!));
  if (o.uidmapping !== undefined) refuseAs('option ', () => parseIdRanges('uidmapping', o.uidmapping!));
  if (o.gidmapping !== undefined) refuseAs('option ', () => parseIdRanges('gidmapping', o.gidmapping!));
  if (o.inject !== undefined) refuseAs('option inject: ', () => parseRules(o.inject!, o.lowers.length));
}

/**
 * Whether this process mounts with mount(2) as root (also a user namespace's root), where
 * fuse-overlayfs's choices apply: suid, allow_other. Anyone else mounts through fusermount3,
 * which makes every such mount nosuid and nodev.
 */
function mountsAsRoot(): boolean {
  return process.geteuid?.() === 0;
}

function defaults(): Omit<CliOptions, 'mountpoint' | 'source'> {
  return {
    lowers: [],
    foreground: false,
    debug: false,
    flags: {
      readOnly: false,
      nosuid: !mountsAsRoot(),
      nodev: true,
      noexec: false,
      noatime: false,
      nodiratime: false,
      strictatime: false,
      lazytime: false,
      sync: false,
      dirsync: false,
    },
    allowOther: mountsAsRoot(),
    redirectDir: true,
    nfsExport: false,
    upperTimeout: 60,
    lowerTimeout: ONE_TICK,
    revalidate: 'always',
    forwardLocks: true,
    passthrough: true,
    watch: true,
    squashToRoot: false,
    volatile: false,
    fsync: true,
    staticNlink: false,
    noXattrs: false,
    acl: true,
  };
}

function applyOption(o: Omit<CliOptions, 'mountpoint' | 'source'>, opt: string): void {
  const eq = opt.indexOf('=');
  const key = eq < 0 ? opt : opt.slice(0, eq);
  const value = eq < 0 ? '' : opt.slice(eq + 1);
  const needValue = (): string => {
    if (eq < 0 || value === '') throw new UsageError(`option ${key} needs a value (${key}=…)`);
    return value;
  };
  if (eq < 0 && applyMountFlag(o.flags, opt)) return;
  switch (key) {
    case 'lowerdir':
      o.lowers.push(...splitLowerdir(needValue()));
      return;
    case 'upperdir':
      o.upper = unescape(needValue());
      return;
    case 'workdir':
      o.work = unescape(needValue());
      return;
    case 'upper_size':
      o.upperSize = upperSize(needValue());
      return;
    case 'allow_other':
      o.allowOther = true;
      return;
    case 'remount':
      o.remount = true;
      return;
    case 'debug':
      o.debug = true;
      o.foreground = true;
      return;
    case 'redirect_dir':
      o.redirectDir = onOff(key, needValue());
      return;
    case 'nfs_export':
      o.nfsExport = onOff(key, needValue());
      return;
    case 'passthrough':
      o.passthrough = onOff(key, needValue());
      return;
    case 'watch':
      o.watch = onOff(key, needValue());
      return;
    case 'upper_timeout':
      o.upperTimeout = seconds(key, needValue());
      return;
    case 'lower_timeout':
      o.lowerTimeout = seconds(key, needValue());
      return;
    case 'revalidate': {
      const v = needValue();
      if (v !== 'always' && v !== 'cached' && v !== 'kernel') throw new OptionValueError(`option revalidate=${v}: expected always, cached or kernel`);
      o.revalidate = v;
      return;
    }
    case 'inject':
      o.inject = needValue();
      return;
    case 'locks': {
      const v = needValue();
      if (v !== 'lower' && v !== 'local') throw new OptionValueError(`option locks=${v}: expected lower or local`);
      o.forwardLocks = v === 'lower';
      return;
    }
    case 'uidmapping':
      o.uidmapping = needValue();
      return;
    case 'gidmapping':
      o.gidmapping = needValue();
      return;
    case 'squash_to_root':
      o.squashToRoot = true;
      return;
    case 'squash_to_uid':
      o.squashToUid = needValue();
      return;
    case 'squash_to_gid':
      o.squashToGid = needValue();
      return;
    case 'volatile':
      o.volatile = true;
      return;
    case 'fsync':
      o.fsync = zeroOne(key, needValue());
      return;
    case 'static_nlink':
      o.staticNlink = true;
      return;
    case 'noxattrs':
      o.noXattrs = zeroOne(key, needValue());
      return;
    case 'timeout':
      o.upperTimeout = o.lowerTimeout = seconds(key, needValue());
      return;
    // Accepted without effect; why, for each, in HELP.
    case 'xattr_permissions': {
      const v = needValue();
      if (v !== '0' && v !== '1' && v !== '2') throw new OptionValueError(`option xattr_permissions=${v}: expected 0, 1 or 2`);
      return;
    }
    case 'fast_ino':
    case 'writeback':
      zeroOne(key, needValue());
      return;
    case 'threaded':
      checkNumber(key, needValue(), THREADED);
      return;
    case 'max_write':
      if (eq >= 0) checkNumber(key, value, MAX_WRITE);
      return;
    case 'acl':
    case 'noacl':
      o.acl = key === 'acl';
      return;
    case 'splice_read':
    case 'splice_write':
    case 'splice_move':
    case 'kernel_cache':
      return;
    case 'context':
    case 'fscontext':
    case 'defcontext':
    case 'rootcontext':
    case 'plugins':
    case 'fsname':
    case 'subtype':
      needValue();
      return;
    default:
      if (IGNORED.has(key) || key.startsWith('x-') || key.startsWith('comment=')) return;
      throw new UsageError(`unknown option ${JSON.stringify(opt)} (see ovshift --help)`);
  }
}

export function parseArgs(argv: string[]): Command {
  const o = defaults();
  const given: string[] = [];
  const applyAll = (list: string): void => {
    for (const opt of splitOptions(list)) {
      given.push(opt);
      applyOption(o, opt);
    }
  };
  const positional: string[] = [];
  const take = (i: number, flag: string): string => {
    const v = argv[i + 1];
    if (v === undefined) throw new UsageError(`${flag} needs a value`);
    return v;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    switch (a) {
      case '-h':
      case '--help':
        return { kind: 'help' };
      case '-V':
      case '--version':
        return { kind: 'version' };
      case '-f':
        o.foreground = true;
        break;
      case '-d':
      case '--debug':
        o.debug = true;
        o.foreground = true;
        break;
      case '-s':
        break; // fuse-overlayfs's single-threaded flag: ovshift always is
      case '-o':
        applyAll(take(i, '-o'));
        i++;
        break;
      case '--lower':
        o.lowers.push(take(i, a));
        i++;
        break;
      case '--upper':
        o.upper = take(i, a);
        i++;
        break;
      case '--work':
        o.work = take(i, a);
        i++;
        break;
      case '--uidmap':
        o.uidmapping = take(i, a);
        i++;
        break;
      case '--gidmap':
        o.gidmapping = take(i, a);
        i++;
        break;
      case '--':
        positional.push(...argv.slice(i + 1));
        i = argv.length;
        break;
      default:
        if (a.startsWith('-o') && a.length > 2) {
          applyAll(a.slice(2));
        } else if (a.startsWith('--') && a.includes('=')) {
          const [flag, ...rest] = a.split('=');
          argv.splice(i + 1, 0, rest.join('='));
          argv[i] = flag!;
          i--;
        } else if (a.startsWith('-') && a !== '-') {
          throw new UsageError(`unknown option ${a} (see ovshift --help)`);
        } else positional.push(a);
    }
  }
  if (positional.length === 0) throw new UsageError('no mountpoint given (see ovshift --help)');
  if (positional.length > 2) throw new UsageError(`too many arguments: ${positional.slice(2).join(' ')}`);
  const mountpoint = positional[positional.length - 1]!;
  const source = positional.length === 2 ? positional[0]! : 'ovshift';
  // The other options are the running mount's business (see remount.ts), the flags apart.
  if (o.remount) return { kind: 'remount', mountpoint, options: given };
  if (o.lowers.length === 0) throw new UsageError('no lower layer given (-o lowerdir=DIR or --lower DIR)');
  if ((o.upper === undefined) !== (o.work === undefined)) {
    throw new UsageError(o.upper === undefined ? 'workdir given without upperdir' : 'upperdir given without workdir');
  }
  checkValues(o);
  if (!mountsAsRoot()) {
    o.flags.nosuid = true;
    o.flags.nodev = true;
  }
  return { kind: 'mount', options: { ...o, mountpoint, source } };
}
