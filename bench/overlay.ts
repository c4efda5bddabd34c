/**
 * Overlay workloads on ovshift, fuse-overlayfs and kernel overlayfs: the same lower tree on
 * the root filesystem (ext4, page cache warm), the upper on a tmpfs mounted for the run. Every
 * measurement gets a fresh mount and a fresh upper, so no filesystem starts with warm dentry or
 * attribute caches or with files already copied up. Ratios are to fuse-overlayfs.
 */
import { join } from 'path';
import type { BenchArea, BenchContext } from './area';
import type { Cleanup } from './lib/cleanup';
import { medianOfRounds } from './lib/measure';
import {
  mountFuseOverlayfs, mountKernelOverlay, mountOvshift, mountTmpfs, type Mounted, type OverlayLayers,
} from './lib/mounts';
import { check } from './lib/proc';
import { formatNumber, formatRatio, markdownTable } from './lib/report';
import { GiB, MiB, makeFile, makeSmallFiles, removeTree, scratchDir, subdir } from './lib/trees';
import type { WorkloadResult } from './lib/workload';

const ROUNDS = 3;
const TREE_DIRS = 100;
const TREE_FILES = 20_000;
const BIG_BYTES = GiB;
const COPY_UP_BYTES = 256 * MiB;
const CREATE_UNLINK_FILES = 5_000;

interface OverlaySubject {
  name: string;
  mount(cleanup: Cleanup, layers: OverlayLayers, dir: string): Promise<Mounted>;
}

const SUBJECTS: readonly OverlaySubject[] = [
  { name: 'ovshift', mount: (cleanup, layers, dir) => mountOvshift(cleanup, layers, dir) },
  { name: 'fuse-overlayfs', mount: (cleanup, layers, dir) => mountFuseOverlayfs(cleanup, layers, dir) },
  { name: 'overlayfs', mount: (cleanup, layers, dir) => mountKernelOverlay(cleanup, layers, dir) },
];
const BASELINE = 'fuse-overlayfs';

interface OverlayWorkload {
  name: string;
  /** The largest ratio of ovshift's time to fuse-overlayfs's that meets the target. */
  target: number;
  /** The workload command for the mount at `mnt` (see workloads.c). */
  command(mnt: string): Array<string | number>;
  /** The count the command must report, or the filesystem did not do all the work. */
  expect: number;
}

function overlayWorkloads(treeBytes: number): OverlayWorkload[] {
  return [
    { name: `stat walk: lstat of ${formatNumber(TREE_FILES)} files`, target: 1.5,
      command: (mnt) => ['walk', join(mnt, 'tree')], expect: TREE_FILES + TREE_DIRS },
    { name: `read ${formatNumber(TREE_FILES)} small files`, target: 1.5,
      command: (mnt) => ['readall', join(mnt, 'tree'), 64 * 1024], expect: treeBytes },
    { name: 'sequential read, 1 GiB file', target: 1.0,
      command: (mnt) => ['read', join(mnt, 'big'), MiB], expect: BIG_BYTES },
    { name: 'sequential write, 1 GiB new file', target: 1.0,
      command: (mnt) => ['write', join(mnt, 'written'), BIG_BYTES, MiB], expect: BIG_BYTES },
    { name: `create + unlink ${formatNumber(CREATE_UNLINK_FILES)} files`, target: 1.5,
      command: (mnt) => ['create-unlink', join(mnt, 'create-here'), CREATE_UNLINK_FILES], expect: CREATE_UNLINK_FILES },
    { name: 'copy-up: append 1 byte to a 256 MiB file', target: 1.5,
      command: (mnt) => ['append', join(mnt, 'copy-up')], expect: 1 },
  ];
}

/** The lower tree, written once, synced to disk and read back so its page cache is warm. */
async function makeLower(ctx: BenchContext, lower: string): Promise<number> {
  ctx.progress(`overlay: writing the lower tree in ${lower}`);
  const treeBytes = makeSmallFiles(subdir(lower, 'tree'), TREE_DIRS, TREE_FILES);
  makeFile(join(lower, 'big'), BIG_BYTES);
  makeFile(join(lower, 'copy-up'), COPY_UP_BYTES);
  subdir(lower, 'create-here');
  await check('sync', []);
  await ctx.workloads.run('readall', lower, MiB);
  return treeBytes;
}

async function run(ctx: BenchContext): Promise<string> {
  const { cleanup, workloads } = ctx;
  const scratch = scratchDir(cleanup, '/var/tmp', 'ovshift-bench-overlay-');
  const lower = subdir(scratch, 'lower');
  const treeBytes = await makeLower(ctx, lower);
  const upperFs = await mountTmpfs(cleanup, subdir(scratch, 'upper'), `${2 * BIG_BYTES}`);

  let mounts = 0;
  /** One timed run on a fresh mount with a fresh upper; returns milliseconds. */
  const measure = async (subject: OverlaySubject, workload: OverlayWorkload): Promise<number> => {
    const n = ++mounts;
    const layers = { lower, upper: subdir(upperFs.dir, `${n}`, 'upper'), work: subdir(upperFs.dir, `${n}`, 'work') };
    const mounted = await subject.mount(cleanup, layers, subdir(scratch, `mnt-${n}`));
    let result: WorkloadResult;
    try {
      result = await workloads.run(...workload.command(mounted.dir));
    } finally {
      await mounted.unmount();
      await removeTree(mounted.dir);
      await removeTree(join(upperFs.dir, `${n}`));
    }
    if (result.count !== workload.expect) {
      throw new Error(`overlay: ${subject.name}: ${workload.name}: counted ${result.count}, expected ${workload.expect}`);
    }
    return result.ms;
  };

  const baseline = SUBJECTS.findIndex((s) => s.name === BASELINE);
  const ovshift = SUBJECTS.findIndex((s) => s.name === 'ovshift');
  const compared = SUBJECTS.flatMap((_s, i) => (i === baseline ? [] : [i]));
  const rows: string[][] = [];
  const misses: string[] = [];
  for (const workload of overlayWorkloads(treeBytes)) {
    ctx.progress(`overlay: ${workload.name}`);
    const ms = await medianOfRounds(SUBJECTS, ROUNDS, (subject) => measure(subject, workload));
    const ratios = ms.map((m) => m / ms[baseline]!);
    const met = ratios[ovshift]! <= workload.target;
    if (!met) misses.push(`${workload.name} (${formatRatio(ratios[ovshift]!)}, target ≤ ${formatRatio(workload.target)})`);
    rows.push([
      workload.name,
      ...ms.map((m) => formatNumber(m, 1)),
      ...compared.map((i) => formatRatio(ratios[i]!)),
      `≤ ${formatRatio(workload.target)} ${met ? 'met' : '**missed**'}`,
    ]);
  }
  const version = (await check('fuse-overlayfs', ['--version'])).split('\n').find((l) => l.startsWith('fuse-overlayfs'))?.trim();

  return [
    '### Overlay (`npm run bench`, or `scripts/bench overlay`)',
    '',
    markdownTable([
      'workload (ms, median of 3)', ...SUBJECTS.map((s) => s.name),
      ...compared.map((i) => `${SUBJECTS[i]!.name} ÷ ${BASELINE}`), 'ovshift target',
    ], rows),
    '',
    `Lower is better. Lower layer on ext4 (page cache warm), upper on tmpfs, a fresh mount and upper for every run; ${version ?? 'fuse-overlayfs'}, default options.`,
    misses.length ? `ovshift misses its target on: ${misses.join('; ')}.` : 'Every ovshift workload meets its target.',
  ].join('\n');
}

export const overlayArea: BenchArea = {
  name: 'overlay',
  summary: 'overlay workloads on ovshift, fuse-overlayfs and kernel overlayfs (ratios to fuse-overlayfs)',
  run,
};
