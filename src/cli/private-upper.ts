/**
 * The "tmpfs-like upper": without an upperdir, the daemon mounts a private, size-limited tmpfs,
 * keeps a descriptor of its root, and detaches it from the namespace at once. Its upper and
 * work directories are reached through /proc/<pid>/fd/<n>; when the daemon exits (even by
 * SIGKILL) the last reference goes and the kernel frees it: nothing is left to clean up.
 */
import createDebug from 'debug';
import * as fs from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { ACL_ACCESS_XATTR, ACL_DEFAULT_XATTR } from '../idmap';
import type { ReadableLayer } from '../layers/types';
import type { UpperDir } from '../layers/upper-dir';
import { native, C } from '../native';
import { errorCode } from '../util/errno';

const log = createDebug('ovshift:mount');

export interface PrivateUpper {
  upper: string;
  work: string;
  /** How it was made, for messages. */
  kind: 'tmpfs' | 'directory';
  release(): Promise<void>;
}

export async function makePrivateUpper(size: string | undefined, tempDir = tmpdir()): Promise<PrivateUpper> {
  const where = fs.mkdtempSync(join(tempDir, 'ovshift-upper-'));
  try {
    await native.mount('ovshift-upper', where, 'tmpfs', C.MS_NOSUID! | C.MS_NODEV!, `mode=0755${size ? `,size=${size}` : ''}`);
  } catch (err) {
    if (errorCode(err) === 'EINVAL' && size) {
      fs.rmdirSync(where);
      throw new Error(`upper_size=${size} is not a size tmpfs accepts`);
    }
    if (errorCode(err) !== 'EPERM') throw err;
    // Not allowed to mount: a plain temporary directory (on /tmp, often a tmpfs) instead.
    log('cannot mount a tmpfs (%s); using the directory %s as upper', errorCode(err), where);
    fs.mkdirSync(join(where, 'upper'));
    fs.mkdirSync(join(where, 'work'));
    return {
      upper: join(where, 'upper'),
      work: join(where, 'work'),
      kind: 'directory',
      release: () => fs.promises.rm(where, { recursive: true, force: true }),
    };
  }
  fs.mkdirSync(join(where, 'upper'));
  fs.mkdirSync(join(where, 'work'));
  const fd = fs.openSync(where, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
  await native.umount2(where, C.MNT_DETACH!);
  fs.rmdirSync(where);
  const root = `/proc/${process.pid}/fd/${fd}`;
  log('private tmpfs upper held by fd %d', fd);
  return {
    upper: `${root}/upper`,
    work: `${root}/work`,
    kind: 'tmpfs',
    release: async () => fs.closeSync(fd),
  };
}

/**
 * Gives a private upper's root the topmost lower root's owner, mode and ACLs, as an upper root
 * made by hand for kernel overlayfs would have: the merged root is the lower's root, not a
 * fresh world-writable directory where any user could replace /bin of a shared root.
 */
export async function matchLowerRoot(upper: UpperDir, lower: ReadableLayer): Promise<void> {
  const attr = await lower.stat('');
  if (!attr) throw new Error(`${lower.label}: its root is gone`);
  const root = upper.loc('');
  await upper.chown(root, attr.uid, attr.gid).catch((err) => {
    // An unprivileged daemon keeps its own ids: only it can use its mount anyway.
    if (errorCode(err) !== 'EPERM') throw err;
  });
  await upper.chmod(root, attr.mode & 0o7777);
  for (const name of [ACL_ACCESS_XATTR, ACL_DEFAULT_XATTR]) {
    const acl = await lower.getxattr('', name);
    if (acl) await upper.setxattr(root, name, acl);
  }
}
