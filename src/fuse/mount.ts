/**
 * Mounting and unmounting a FUSE filesystem: mount(2) directly when permitted (root, or the
 * root of a user namespace that owns the mount namespace), else through the setuid
 * fusermount3, which passes the device fd back over a unix socket.
 */
import { spawn } from 'child_process';
import createDebug from 'debug';
import { promises as fsp, closeSync } from 'fs';
import { C, native } from '../native';
import { errorCode } from '../util/errno';
import { MountError } from '../util/mount-error';

const log = createDebug('ovshift:mount');

export interface MountSpec {
  mountpoint: string;
  /** Shown as the mount's source in /proc/mounts. */
  fsname: string;
  /** The mount's type becomes fuse.<subtype>. */
  subtype: string;
  /** MS_* flags; MS_NOSUID | MS_NODEV unless the caller says otherwise. */
  flags?: number;
  allowOther?: boolean;
  defaultPermissions?: boolean;
}

export interface FuseMount {
  readonly fd: number;
  readonly mountpoint: string;
  readonly method: 'mount' | 'fusermount3';
  /** Removes the mount; `lazy` detaches it even while busy. Not mounted any more is success. */
  unmount(opts?: { lazy?: boolean }): Promise<void>;
}

async function checkMountpoint(mountpoint: string): Promise<void> {
  try {
    const st = await fsp.stat(mountpoint);
    if (!st.isDirectory()) throw new MountError(`mountpoint ${mountpoint} is not a directory`);
  } catch (err) {
    if (err instanceof MountError) throw err;
    switch (errorCode(err)) {
      case 'ENOENT':
        throw new MountError(`mountpoint ${mountpoint} does not exist`);
      case 'ENOTCONN':
        throw new MountError(`mountpoint ${mountpoint} is a FUSE mount whose daemon died; run: umount ${mountpoint}`);
      case 'EACCES':
        throw new MountError(`mountpoint ${mountpoint} is not accessible (permission denied)`);
      default:
        throw new MountError(`mountpoint ${mountpoint}: ${(err as Error).message}`);
    }
  }
}

function openDevice(): number | 'denied' {
  try {
    return native.devOpen();
  } catch (err) {
    switch (errorCode(err)) {
      case 'ENOENT':
      case 'ENODEV':
      case 'ENXIO':
        throw new MountError('/dev/fuse is missing: load the fuse module (modprobe fuse), or give the container /dev/fuse');
      case 'EACCES':
      case 'EPERM':
        return 'denied';
      default:
        throw new MountError(`/dev/fuse: ${(err as Error).message}`);
    }
  }
}

function fuseOptions(spec: MountSpec): string[] {
  const opts: string[] = [];
  if (spec.defaultPermissions ?? true) opts.push('default_permissions');
  if (spec.allowOther ?? process.geteuid?.() === 0) opts.push('allow_other');
  return opts;
}

export async function mountFuse(spec: MountSpec): Promise<FuseMount> {
  await checkMountpoint(spec.mountpoint);
  const fd = openDevice();
  if (fd !== 'denied') {
    const flags = spec.flags ?? C.MS_NOSUID! | C.MS_NODEV!;
    const uid = process.geteuid?.() ?? 0;
    const gid = process.getegid?.() ?? 0;
    const data = [`fd=${fd}`, 'rootmode=40000', `user_id=${uid}`, `group_id=${gid}`, ...fuseOptions(spec)].join(',');
    try {
      await native.mount(spec.fsname, spec.mountpoint, `fuse.${spec.subtype}`, flags, data);
      log('mounted %s on %s with mount(2): %s', spec.fsname, spec.mountpoint, data);
      return directMount(fd, spec.mountpoint);
    } catch (err) {
      closeSync(fd);
      if (errorCode(err) !== 'EPERM') throw new MountError(`cannot mount on ${spec.mountpoint}: ${(err as Error).message}`);
      log('mount(2) not permitted; trying fusermount3');
    }
  }
  return fusermountMount(spec);
}

function directMount(fd: number, mountpoint: string): FuseMount {
  return {
    fd,
    mountpoint,
    method: 'mount',
    async unmount(opts = {}) {
      try {
        await native.umount2(mountpoint, opts.lazy ? C.MNT_DETACH! : 0);
      } catch (err) {
        if (errorCode(err) === 'EINVAL' || errorCode(err) === 'ENOENT') return; // not mounted (any more)
        if (errorCode(err) === 'EBUSY' && !opts.lazy) throw new MountError(`${mountpoint} is busy; unmount it lazily or close what uses it`);
        throw err;
      }
    },
  };
}

function runFusermount(args: string[], extraFd?: number): Promise<{ status: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const stdio: Array<'ignore' | 'pipe' | number> = ['ignore', 'ignore', 'pipe'];
    const env = { ...process.env };
    if (extraFd !== undefined) {
      stdio.push(extraFd);
      env._FUSE_COMMFD = String(stdio.length - 1);
    }
    const child = spawn('fusermount3', args, { stdio, env });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', (err) =>
      reject(errorCode(err) === 'ENOENT' ? new MountError('not permitted to mount, and fusermount3 is not installed (apt-get install fuse3)') : err),
    );
    child.on('close', (status) => resolve({ status, stderr: stderr.trim() }));
  });
}

async function fusermountMount(spec: MountSpec): Promise<FuseMount> {
  const [ours, theirs] = native.socketpair();
  const flags = spec.flags ?? C.MS_NOSUID! | C.MS_NODEV!;
  const opts = [
    flags & C.MS_RDONLY! ? 'ro' : 'rw',
    flags & C.MS_NOSUID! ? 'nosuid' : 'suid',
    flags & C.MS_NODEV! ? 'nodev' : 'dev',
    `fsname=${spec.fsname}`,
    `subtype=${spec.subtype}`,
    ...fuseOptions(spec),
  ];
  try {
    const received = native.recvFd(ours);
    const run = runFusermount(['-o', opts.join(','), '--', spec.mountpoint], theirs);
    const { status, stderr } = await run;
    closeSync(theirs);
    if (status !== 0) {
      received.catch(() => undefined);
      throw new MountError(`cannot mount on ${spec.mountpoint}: ${stderr.split('\n')[0] || `fusermount3 exited with ${status}`}`);
    }
    const fd = await received;
    native.setNonblock(fd);
    log('mounted %s on %s with fusermount3', spec.fsname, spec.mountpoint);
    return {
      fd,
      mountpoint: spec.mountpoint,
      method: 'fusermount3',
      async unmount(o = {}) {
        const res = await runFusermount(o.lazy ? ['-u', '-z', '--', spec.mountpoint] : ['-u', '--', spec.mountpoint]);
        if (res.status !== 0 && !/not (found in|mounted)/.test(res.stderr)) {
          throw new MountError(`cannot unmount ${spec.mountpoint}: ${res.stderr.split('\n')[0]}`);
        }
      },
    };
  } finally {
    closeSync(ours);
  }
}

/** A mount as /proc/self/mountinfo lists it. */
export interface MountInfo {
  /** Filesystem type (fuse.SUBTYPE for a FUSE mount). */
  type: string;
  /** The device's minor number: a FUSE mount's connection number. */
  minor: number;
  /** The mount's options and its superblock's, together. */
  options: string[];
}

/** The mount at `mountpoint`: the last one listed there, on top, the one the path reaches. */
export async function mountAt(mountpoint: string): Promise<MountInfo | undefined> {
  const info = await fsp.readFile('/proc/self/mountinfo', 'utf8');
  let found: MountInfo | undefined;
  for (const line of info.split('\n')) {
    const f = line.split(' ');
    // mountinfo escapes blanks in paths as \040.
    if (f[4]?.replace(/\\040/g, ' ') !== mountpoint) continue;
    const sep = f.indexOf('-');
    found = { type: f[sep + 1] ?? '', minor: Number(f[2]!.split(':')[1]), options: [...(f[5] ?? '').split(','), ...(f[sep + 3] ?? '').split(',')] };
  }
  return found;
}

/** The FUSE connection number of the mount at `mountpoint` (its device minor), if mounted. */
export async function connectionId(mountpoint: string): Promise<number | undefined> {
  const m = await mountAt(mountpoint);
  return m?.type.startsWith('fuse') ? m.minor : undefined;
}

/**
 * Sets the kernel's read-ahead for a FUSE connection, whose bdi is named "0:ID". The kernel
 * starts FUSE mounts at 128 KiB whatever INIT's max_readahead says; a larger window means
 * fewer and larger READs for sequential reads. Only root may; false when not allowed.
 */
export async function setReadAhead(id: number, kib: number): Promise<boolean> {
  try {
    await fsp.writeFile(`/sys/class/bdi/0:${id}/read_ahead_kb`, `${kib}\n`);
    return true;
  } catch (err) {
    log('read-ahead stays at the default: %s', (err as Error).message);
    return false;
  }
}

/**
 * Aborts a FUSE connection through fusectl: every pending request fails at once. The way out
 * when a process serving a mount is itself blocked on that mount.
 */
export async function abortConnection(id: number): Promise<void> {
  const dir = '/sys/fs/fuse/connections';
  try {
    await fsp.access(`${dir}/${id}/abort`);
  } catch {
    await native.mount('fusectl', dir, 'fusectl', 0, '').catch(() => undefined);
  }
  await fsp.writeFile(`${dir}/${id}/abort`, '1').catch((err) => log('abort of connection %d failed: %s', id, err.message));
}
