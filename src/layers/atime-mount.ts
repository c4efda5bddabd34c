/**
 * Directories reached through a private copy of their mount that applies an atime rule of the
 * overlay's choosing, whatever the rule of the mount they live on. The kernel applies a
 * mount's rule to every read through it: the daemon's own, and the reads it makes on a FUSE
 * passthrough file's behalf (the kernel opens the backing file anew from its path, with the
 * reader's flags, so an O_NOATIME of the daemon's descriptor would not carry over).
 */
import { closeSync, constants as K, fstatSync, realpathSync, statSync } from 'fs';
import { relative, sep } from 'path';
import createDebug from 'debug';
import { C, native } from '../native';
import { errnoName } from '../util/errno';
import { O_CLOEXEC } from '../util/linux';

const log = createDebug('ovshift:layers');

/** What reads do to atimes: a mount's noatime, relatime or strictatime. */
export type AtimeRule = 'noatime' | 'relatime' | 'strictatime';

function ruleAttr(rule: AtimeRule): number {
  if (rule === 'noatime') return C.MOUNT_ATTR_NOATIME!;
  if (rule === 'strictatime') return C.MOUNT_ATTR_STRICTATIME!;
  return C.MOUNT_ATTR_RELATIME!;
}

/** The deepest directory containing every one of `paths` (absolute, resolved). */
function commonAncestor(paths: string[]): string {
  const split = paths.map((p) => p.split(sep).filter(Boolean));
  const first = split[0]!;
  let n = 0;
  while (n < first.length && split.every((s) => s[n] === first[n])) n++;
  return `/${first.slice(0, n).join('/')}`;
}

/**
 * Descriptors of `dirs`, opened through one private, non-recursive copy of the mount that holds
 * them all (so renames between them still work), with `rule` applied to that copy. Undefined
 * where it cannot be made: no privilege to copy or change a mount (a daemon in a user
 * namespace), an older kernel, or directories not all on one mount.
 */
export function openWithAtimeRule(dirs: string[], rule: AtimeRule): number[] | undefined {
  let real: string[];
  try {
    real = dirs.map((d) => realpathSync(d));
  } catch {
    return undefined;
  }
  const base = commonAncestor(real);
  const tree = native.openTreeSync(base, C.OPEN_TREE_CLONE! | C.OPEN_TREE_CLOEXEC!);
  if (tree < 0) {
    log('atime: no private copy of the mount at %s (%s): the upper keeps its own mount rule', base, errnoName(tree));
    return undefined;
  }
  const opened: number[] = [];
  try {
    const res = native.mountSetattrSync(tree, ruleAttr(rule), C.MOUNT_ATTR__ATIME!);
    if (res < 0) {
      log('atime: %s on a copy of the mount at %s answered %s', rule, base, errnoName(res));
      return undefined;
    }
    for (const dir of real) {
      const fd = native.openatSync(tree, relative(base, dir) || '.', K.O_RDONLY | K.O_DIRECTORY | K.O_NOFOLLOW | O_CLOEXEC, 0);
      if (fd < 0) return undefined;
      opened.push(fd);
      // A directory behind another mount on the way from `base` is not the one asked for: the
      // copy is of one mount only, and shows what lies under the mount points inside it.
      const got = fstatSync(fd);
      const want = statSync(dir);
      if (got.dev !== want.dev || got.ino !== want.ino) {
        log('atime: %s is not on the mount of %s', dir, base);
        return undefined;
      }
    }
    const result = opened.slice();
    opened.length = 0;
    return result;
  } finally {
    for (const fd of opened) closeSync(fd);
    closeSync(tree);
  }
}
