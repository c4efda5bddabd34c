/**
 * The filesystems a run compares, each as xfstests is told to run it: a config file for
 * HOST_OPTIONS, the arguments `./check` needs, and the mount points a stuck test may leave.
 *
 * All three stack an empty lower, an upper and a work directory on loop images (xfs unless
 * asked otherwise). The FUSE
 * ones (FSTYP=fuse) get their layers through the mount options, in directories of one image;
 * kernel overlayfs is run as xfstests runs it (`./check -overlay`), on two images of its own,
 * since its "mkfs" empties the whole scratch base filesystem.
 */
import { writeFileSync } from 'fs';
import { basename, join } from 'path';
import { subdir } from '../../bench/lib/trees';

export const TARGET_NAMES = ['overlay', 'ovshift', 'fuse-overlayfs'] as const;
export type TargetName = (typeof TARGET_NAMES)[number];

export interface Target {
  name: TargetName;
  /** The config file, for HOST_OPTIONS. */
  config: string;
  /** Extra arguments to ./check. */
  checkArgs: string[];
  /** Where check and its tests mount things (deepest first), to clear after a test was killed. */
  mountPoints: string[];
  results: string;
  /**
   * Lines the filesystem's mount command prints on every mount, which land in a test's output
   * and fail it: a test that failed on its output alone, and passes once they are taken out, is
   * counted as passed (see runTest).
   */
  mountNoise: string[];
}

/** Devices and directories a run made for the targets. */
export interface Bases {
  work: string;
  /** The mounted ext4 image the FUSE targets' layers live in. */
  fuseBase: string;
  /** Block devices for kernel overlayfs's test and scratch base filesystems. */
  overlayTestDevice: string;
  overlayScratchDevice: string;
  /** Their filesystem type. */
  baseFs: string;
}

function configText(vars: Record<string, string>): string {
  return Object.entries(vars)
    .map(([k, v]) => `export ${k}=${JSON.stringify(v)}\n`)
    .join('');
}

function layerOptions(dir: string, extra: string): string {
  const layers = ['lower', 'upper', 'work'].map((l) => subdir(dir, l));
  return `-o lowerdir=${layers[0]},upperdir=${layers[1]},workdir=${layers[2]}${extra}`;
}

function fuseTarget(name: 'ovshift' | 'fuse-overlayfs', b: Bases): Target {
  const mnt = subdir(b.work, 'mnt', name);
  const testDir = subdir(mnt, 'test');
  const scratchMnt = subdir(mnt, 'scratch');
  const results = subdir(b.work, 'results', name);
  const config = join(b.work, `${name}.config`);
  // xfstests looks a FUSE mount up by its source, which mount.fuse3 hands the filesystem to
  // show. fuse-overlayfs 1.10 shows "fuse-overlayfs" whatever it is given (and takes no fsname
  // option), so its test and scratch mounts must both be called that (the patched xfstests
  // finds and unmounts them by their mount points: see suite.ts).
  // Others are named for the run too (its directory), so that two runs at once do not mistake
  // each other's mounts for their own.
  const run = basename(b.work);
  // ovshift mounts by root are nodev unless told: given dev, as kernel overlayfs is by default,
  // so that the tests of device nodes (generic/306) run as they do there. nfs_export=on: the
  // file handle tests that cycle the mount (generic/477, 777) run with handles kept across it.
  const extra = name === 'ovshift' ? ',dev,nfs_export=on' : '';
  const sources = name === 'fuse-overlayfs' ? ['fuse-overlayfs', 'fuse-overlayfs'] : [`${name}_test_${run}`, `${name}_scratch_${run}`];
  const scratchLayers = layerOptions(subdir(b.fuseBase, name, 'scratch'), extra);
  writeFileSync(
    config,
    configText({
      FSTYP: 'fuse',
      FUSE_SUBTYP: `.${name}`,
      TEST_DEV: sources[0],
      TEST_DIR: testDir,
      SCRATCH_DEV: sources[1],
      SCRATCH_MNT: scratchMnt,
      TEST_FS_MOUNT_OPTS: layerOptions(subdir(b.fuseBase, name, 'test'), extra),
      MOUNT_OPTIONS: scratchLayers,
      FUSE_MOUNT_OPTIONS: scratchLayers,
      RESULT_BASE: results,
    }),
  );
  // fuse-overlayfs 1.10 warns of the options mount.fuse3 passes every FUSE filesystem.
  const mountNoise = name === 'fuse-overlayfs' ? ['unknown argument ignored: lazytime', 'unknown argument ignored: rw'] : [];
  return { name, config, checkArgs: [], mountPoints: [scratchMnt, testDir], results, mountNoise };
}

function overlayTarget(b: Bases): Target {
  const mnt = subdir(b.work, 'mnt', 'overlay');
  const testDir = subdir(mnt, 'test');
  const scratchMnt = subdir(mnt, 'scratch');
  const results = subdir(b.work, 'results', 'overlay');
  const config = join(b.work, 'overlay.config');
  writeFileSync(
    config,
    configText({
      FSTYP: b.baseFs,
      TEST_DEV: b.overlayTestDevice,
      TEST_DIR: testDir,
      SCRATCH_DEV: b.overlayScratchDevice,
      SCRATCH_MNT: scratchMnt,
      RESULT_BASE: results,
    }),
  );
  // ./check -overlay mounts the base filesystems on TEST_DIR and SCRATCH_MNT and the
  // overlays at ovl-mnt inside them.
  const mountPoints = [join(scratchMnt, 'ovl-mnt'), scratchMnt, join(testDir, 'ovl-mnt'), testDir];
  return { name: 'overlay', config, checkArgs: ['-overlay'], mountPoints, results, mountNoise: [] };
}

export function makeTargets(names: readonly TargetName[], b: Bases): Target[] {
  return names.map((n) => (n === 'overlay' ? overlayTarget(b) : fuseTarget(n, b)));
}
