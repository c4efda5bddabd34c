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

export async function makePrivateUpper(size: string | undefined): Promise<PrivateUpper> {
  const where = fs.mkdtempSync(join(tmpdir(), 'ovshift-upper-'));
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
