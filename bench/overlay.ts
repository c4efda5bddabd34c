/**
 * Overlay workloads on ovshift, fuse-overlayfs and kernel overlayfs: the same lower tree on
 * the root filesystem (ext4, page cache warm), the upper on a tmpfs, a fresh mount for every
 * run. Ratios are to fuse-overlayfs, and ovshift's are checked against its targets.
 */
import { join } from 'path';
import type { BenchArea, BenchContext } from './area';
import { timeOnOverlays, type OverlayWorkload } from './lib/overlays';
import { THREE_WAY, THREE_WAY_HEADERS, targetCell, threeWayRow } from './lib/three-way';
import { check } from './lib/proc';
import { formatNumber, formatRatio, markdownTable } from './lib/report';
import { GiB, MiB, makeFile, makeSmallFiles, scratchDir, subdir } from './lib/trees';

const ROUNDS = 3;
const TREE_DIRS = 100;
const TREE_FILES = 20_000;
const BIG_BYTES = GiB;
const COPY_UP_BYTES = 256 * MiB;
const CREATE_UNLINK_FILES = 5_000;

interface TargetedWorkload extends OverlayWorkload {
  /** The largest ratio of ovshift's time to fuse-overlayfs's that meets the target. */
  target: number;
  /** The same for the daemons' CPU time, where one is set. */
  cpuTarget?: number;
}

function overlayWorkloads(treeBytes: number): TargetedWorkload[] {
  return [
    {
      name: `stat walk: lstat of ${formatNumber(TREE_FILES)} files`,
      target: 0.8,
      cpuTarget: 1.0,
      command: (mnt) => ['walk', join(mnt, 'tree')],
      expect: TREE_FILES + TREE_DIRS,
    },
    {
      name: `read ${formatNumber(TREE_FILES)} small files`,
      target: 0.8,
      cpuTarget: 1.0,
      command: (mnt) => ['readall', join(mnt, 'tree'), 64 * 1024],
      expect: treeBytes,
    },
    { name: 'sequential read, 1 GiB file', target: 1.0, command: (mnt) => ['read', join(mnt, 'big'), MiB], expect: BIG_BYTES },
    { name: 'sequential write, 1 GiB new file', target: 1.0, command: (mnt) => ['write', join(mnt, 'written'), BIG_BYTES, MiB], expect: BIG_BYTES },
    {
      name: `create + unlink ${formatNumber(CREATE_UNLINK_FILES)} files`,
      target: 1.0,
      cpuTarget: 1.0,
      command: (mnt) => ['create-unlink', join(mnt, 'create-here'), CREATE_UNLINK_FILES],
      expect: CREATE_UNLINK_FILES,
    },
    { name: 'copy-up: append 1 byte to a 256 MiB file', target: 1.0, command: (mnt) => ['append', join(mnt, 'copy-up')], expect: 1 },
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
  const scratch = scratchDir(ctx.cleanup, '/var/tmp', 'ovshift-bench-overlay-');
  const lower = subdir(scratch, 'lower');
  const workloads = overlayWorkloads(await makeLower(ctx, lower));
  const times = await timeOnOverlays(
    { ...ctx, progress: (m) => ctx.progress(`overlay: ${m}`) },
    {
      lower,
      scratch,
      upperSize: 2 * BIG_BYTES,
      subjects: THREE_WAY,
      workloads,
      rounds: ROUNDS,
    },
  );

  const misses: string[] = [];
  const rows = workloads.map((workload, w) => {
    const { cells, ratio, cpuRatio } = threeWayRow(times.ms[w]!, times.cpuMs[w]!);
    if (ratio > workload.target) misses.push(`${workload.name} (${formatRatio(ratio)})`);
    if (workload.cpuTarget !== undefined && cpuRatio > workload.cpuTarget) misses.push(`${workload.name}, CPU (${formatRatio(cpuRatio)})`);
    return [workload.name, ...cells, targetCell(ratio, workload.target), targetCell(cpuRatio, workload.cpuTarget)];
  });
  const version = (await check('fuse-overlayfs', ['--version'])).split('\n').find((l) => l.startsWith('fuse-overlayfs'));

  return [
    '### Overlay (`npm run bench`, or `scripts/bench overlay`)',
    '',
    markdownTable([`workload (ms, median of ${ROUNDS})`, ...THREE_WAY_HEADERS, 'target', 'CPU target'], rows),
    '',
    'Lower is better. Lower layer on ext4 (page cache warm), upper on tmpfs, a fresh mount and upper for every run; ' +
      `${version?.trim() ?? 'fuse-overlayfs'}, all three with default options; ovshift mounted as the ovshift command mounts, ` +
      'through its mount server (one process for all the runs: its compiled code is warm after the first). ' +
      "CPU: the daemon's, all threads, user and system, " +
      "during the timed run (kernel overlayfs has no daemon; its work is in the callers' system time).",
    misses.length ? `ovshift misses its target on: ${misses.join('; ')}.` : 'Every ovshift workload meets its targets.',
  ].join('\n');
}

export const overlayArea: BenchArea = {
  name: 'overlay',
  summary: 'overlay workloads on ovshift, fuse-overlayfs and kernel overlayfs (ratios to fuse-overlayfs)',
  run,
};
