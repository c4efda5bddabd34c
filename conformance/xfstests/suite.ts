/**
 * The xfstests checkout a run uses: copied from the one the user fetched into the run's own
 * directory, patched there (see PATCHES) and built there, so the user's checkout is never
 * changed and nothing of xfstests lands in this repository.
 */
import { existsSync, readFileSync, writeFileSync } from 'fs';
import { join } from 'path';
import { check, run } from '../../bench/lib/proc';

export interface Suite {
  /** The built copy, where `./check` runs. */
  dir: string;
  /** The checkout's commit, abbreviated, or "unknown" outside git. */
  commit: string;
}

/** Why `dir` cannot be used as an xfstests checkout, or undefined when it can. */
export function notACheckout(dir: string): string | undefined {
  for (const file of ['check', 'common/rc', 'tests/generic']) {
    if (!existsSync(join(dir, file))) return `${dir} has no ${file}: not an xfstests checkout`;
  }
  return undefined;
}

interface Patch {
  file: string;
  /** Text found exactly once in the file, replaced by `to`. */
  from: string;
  to: string;
}

/**
 * The changes made to the copy, both to xfstests' handling of FSTYP=fuse, which assumes more
 * of a FUSE mount than FUSE promises:
 *
 * - common/rc's _fs_type reads a mount's type from df, which shows a FUSE mount as
 *   fuse.SUBTYPE; xfstests maps only fuse.glusterfs and fuse.ceph-fuse back, so every other FUSE
 *   filesystem stops at start-up with "TEST_DEV=… is mounted but not a type fuse filesystem".
 *   Any remaining fuse.SUBTYPE is mapped to fuse, as those two are.
 * - common/rc's _check_if_dev_already_mounted finds a mount by its source, taking TEST_DEV and
 *   SCRATCH_DEV as devices. A FUSE filesystem names its source itself: fuse-overlayfs 1.10
 *   calls every mount "fuse-overlayfs" and takes no fsname option, so its test and scratch
 *   mounts cannot be told apart and every scratch test aborts. For FSTYP=fuse the mount is
 *   found by its mount point instead.
 * - common/rc's _test_unmount and _scratch_unmount unmount TEST_DEV and SCRATCH_DEV by source
 *   name: `umount fuse-overlayfs` takes whichever fuse-overlayfs mount was made last, another
 *   user's (a podman container's) as well as the test's. For FSTYP=fuse they unmount
 *   TEST_DIR and SCRATCH_MNT.
 * - For FSTYP=fuse, MOUNT_OPTIONS (FUSE_MOUNT_OPTIONS by default) is the only place a FUSE
 *   filesystem's scratch mount gets what names its data (an overlay's layers), but tests
 *   treat it as optional extras and may empty it (generic/607 mounts with MOUNT_OPTIONS="" to
 *   mount without dax), and the scratch mount then fails for want of a lower. common/rc's
 *   _scratch_options gives a FUSE scratch mount FUSE_MOUNT_OPTIONS when MOUNT_OPTIONS is empty.
 */
const PATCHES: Patch[] = [
  {
    file: 'common/rc',
    from: "-e 's/fuse.ceph-fuse/ceph-fuse/'",
    to: "-e 's/fuse.ceph-fuse/ceph-fuse/' -e 's/^fuse\\.[^ ]*$/fuse/'",
  },
  {
    file: 'common/rc',
    from: '\t# find $dev as the source, and print result in "$dev $mnt" format\n',
    to: '\t# patched by ovshift scripts/xfstests: a FUSE mount is found by its mount point\n\tif [ "$FSTYP" = fuse ]; then\n\t\tfindmnt -rncv -M $mnt >/dev/null && return 0\n\t\treturn 1\n\tfi\n\t# find $dev as the source, and print result in "$dev $mnt" format\n',
  },
  {
    file: 'common/rc',
    from: '\t\t_unmount $SCRATCH_DEV\n',
    to: '\t\t# patched by ovshift scripts/xfstests: a FUSE mount by its mount point\n\t\tif [ "$FSTYP" = fuse ]; then _unmount $SCRATCH_MNT; else _unmount $SCRATCH_DEV; fi\n',
  },
  {
    file: 'common/rc',
    from: '\t\t_unmount $TEST_DEV\n',
    to: '\t\t# patched by ovshift scripts/xfstests: a FUSE mount by its mount point\n\t\tif [ "$FSTYP" = fuse ]; then _unmount $TEST_DIR; else _unmount $TEST_DEV; fi\n',
  },
  {
    file: 'common/rc',
    from: '\t_scratch_ext4_options "$@"\n\t;;\n',
    to:
      '\t_scratch_ext4_options "$@"\n\t;;\n' +
      '    fuse)\n\t# patched by ovshift scripts/xfstests: what a FUSE scratch mount needs, kept when a test empties MOUNT_OPTIONS\n' +
      '\tif [ "$1" = mount ] && [ -z "$MOUNT_OPTIONS" ]; then SCRATCH_OPTIONS="$FUSE_MOUNT_OPTIONS"; fi\n\t;;\n',
  },
];

function patch(dir: string): void {
  for (const p of PATCHES) {
    const file = join(dir, p.file);
    const text = readFileSync(file, 'utf8');
    if (text.includes(p.to)) continue;
    if (text.split(p.from).length !== 2) {
      throw new Error(`${p.file} of this checkout has no single ${JSON.stringify(p.from)} to patch: a newer xfstests? See conformance/xfstests/suite.ts`);
    }
    writeFileSync(file, text.replace(p.from, p.to));
  }
}

/** Copies `checkout` to `into`, patches and builds the copy. */
export async function prepareSuite(checkout: string, into: string, progress: (line: string) => void): Promise<Suite> {
  const head = await run('git', ['-C', checkout, 'rev-parse', 'HEAD']);
  const commit = head.code === 0 ? head.stdout.trim().slice(0, 12) : 'unknown';
  progress(`copying ${checkout} (${commit}) to ${into}`);
  await check('cp', ['-a', `${checkout}/.`, into], { timeoutMs: 600_000 });
  patch(into);
  progress('building xfstests (several minutes the first time)');
  await check('make', ['-C', into, '-j2'], { timeoutMs: 3_600_000 });
  return { dir: into, commit };
}
