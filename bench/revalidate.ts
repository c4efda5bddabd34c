/**
 * What ovshift's revalidate modes cost: a stat walk, on a fresh mount and again on the same
 * mount, on ovshift revalidate=always (the default) and revalidate=cached next to
 * fuse-overlayfs; and the daemons' memory over a large lower tree: after mounting, after a stat
 * walk, and once the kernel has forgotten the inodes.
 */
import { writeFileSync } from 'fs';
import { join } from 'path';
import type { BenchArea, BenchContext } from './area';
import { mountTmpfs } from './lib/mounts';
import { fuseOverlayfs, ovshift, ovshiftCounts, timeOnOverlays, type OverlayLayers, type OverlaySubject, type OverlayWorkload } from './lib/overlays';
import { check, residentBytes, sleep } from './lib/proc';
import { formatNumber, formatRatio, markdownTable } from './lib/report';
import { MiB, makeSmallFiles, removeTree, scratchDir, subdir } from './lib/trees';

const ROUNDS = 3;
const WALK_DIRS = 100;
const WALK_FILES = 20_000;
const RSS_DIRS = 200;
const RSS_FILES_PER_DIR = 1_000;
const RSS_ENTRIES = RSS_DIRS + RSS_DIRS * RSS_FILES_PER_DIR;
/** After drop_caches: how long neither RSS nor nodes may fall to count as settled, and the most we wait. */
const SETTLE_MS = 2_000;
const SETTLE_MAX_MS = 10_000;
const SAMPLE_MS = 250;

/** The default first (its targets are checked): revalidate=always with the lower watched. */
const SUBJECTS: readonly OverlaySubject[] = [
  ovshift([], 'ovshift (default: watched)'),
  ovshift(['watch=off'], 'ovshift watch=off'),
  ovshift(['revalidate=cached'], 'ovshift revalidate=cached'),
  fuseOverlayfs,
];
const BASELINE = SUBJECTS.length - 1;
/** For the memory figures, a daemon of its own per mount (a mount server's RSS is all its mounts'). */
const MEMORY_SUBJECTS: readonly OverlaySubject[] = [
  ovshift([], 'ovshift (default: watched)', true),
  ovshift(['watch=off'], 'ovshift watch=off', true),
  ovshift(['revalidate=cached'], 'ovshift revalidate=cached', true),
  fuseOverlayfs,
];

const hasControlSocket = (subject: OverlaySubject): boolean => subject !== fuseOverlayfs;

/** A walk, and the largest ratio of the default's time to fuse-overlayfs's that meets its target. */
type Walk = OverlayWorkload & { target: number };

function walkWorkloads(): Walk[] {
  const walk = (mnt: string): Array<string | number> => ['walk', join(mnt, 'tree')];
  return [
    { name: `stat walk: lstat of ${formatNumber(WALK_FILES)} files, fresh mount`, command: walk, expect: WALK_FILES + WALK_DIRS, target: 0.8 },
    // fuse-overlayfs answers this one from the kernel's caches without looking at the lower
    // again; watched, ovshift does too, and still sees a change made on the lower.
    { name: 'the same walk again on that mount (caches warm)', prepare: walk, command: walk, expect: WALK_FILES + WALK_DIRS, target: 1.2 },
  ];
}

async function statWalks(ctx: BenchContext, scratch: string): Promise<string> {
  const lower = subdir(scratch, 'walk-lower');
  ctx.progress(`revalidate: writing the lower tree in ${lower}`);
  makeSmallFiles(subdir(lower, 'tree'), WALK_DIRS, WALK_FILES);
  await check('sync', []);
  await ctx.workloads.run('readall', lower, MiB);
  const workloads = walkWorkloads();
  const { ms: medians } = await timeOnOverlays(
    { ...ctx, progress: (m) => ctx.progress(`revalidate: ${m}`) },
    {
      lower,
      scratch: subdir(scratch, 'walk'),
      upperSize: 64 * MiB,
      subjects: SUBJECTS,
      workloads,
      rounds: ROUNDS,
    },
  );

  const baseline = SUBJECTS[BASELINE]!.name;
  const misses: string[] = [];
  const rows = workloads.map((workload, w) => {
    const ms = medians[w]!;
    const ratios = ms.map((m) => m / ms[BASELINE]!);
    const met = ratios[0]! <= workload.target;
    if (!met) misses.push(`${workload.name} (${formatRatio(ratios[0]!)})`);
    return [
      workload.name,
      ...ms.map((m) => formatNumber(m, 1)),
      ...ratios.filter((_r, i) => i !== BASELINE).map(formatRatio),
      `≤ ${formatRatio(workload.target)} ${met ? 'met' : '**missed**'}`,
    ];
  });
  const version = (await check('fuse-overlayfs', ['--version'])).split('\n').find((l) => l.startsWith('fuse-overlayfs'));
  return [
    markdownTable(
      [
        `workload (ms, median of ${ROUNDS})`,
        ...SUBJECTS.map((s) => s.name),
        ...SUBJECTS.filter((_s, i) => i !== BASELINE).map((s) => `${s.name} ÷ ${baseline}`),
        'default target',
      ],
      rows,
    ),
    '',
    'Lower is better. Lower layer on ext4 (page cache warm), upper on tmpfs, a fresh mount and upper for every run; ' +
      `${version?.trim() ?? 'fuse-overlayfs'} with default options. The second walk runs right after an untimed first ` +
      "one on the same mount. There fuse-overlayfs and revalidate=cached answer from the kernel's caches (listings " +
      'included) without looking at the lower again, so neither would notice a change made there. The default, with ' +
      "the lower watched, answers from the kernel's caches too, and a change on the lower invalidates what it touches; " +
      'with watch=off, every entry is checked against the lower again, in one READDIRPLUS per directory.',
    misses.length ? `The default misses its target on: ${misses.join('; ')}.` : 'The default meets its targets.',
  ].join('\n');
}

interface MemorySample {
  rss: number;
  /** ovshift's node count (`ovshift ctl MNT status`); undefined for fuse-overlayfs. */
  nodes?: number;
}

interface MemoryFigures {
  mounted: MemorySample;
  walked: MemorySample;
  dropped: MemorySample;
}

async function sample(subject: OverlaySubject, pid: number, mnt: string): Promise<MemorySample> {
  const rss = await residentBytes(pid);
  return hasControlSocket(subject) ? { rss, nodes: (await ovshiftCounts(mnt))['nodes'] } : { rss };
}

/**
 * Drops the kernel's dentries and inodes (system-wide), so it sends the daemon FORGETs for
 * every node it held; then samples until RSS and nodes have stopped falling.
 */
async function afterDropCaches(subject: OverlaySubject, pid: number, mnt: string): Promise<MemorySample> {
  writeFileSync('/proc/sys/vm/drop_caches', '2');
  const started = Date.now();
  let last = await sample(subject, pid, mnt);
  let lastFall = started;
  while (Date.now() - lastFall < SETTLE_MS && Date.now() - started < SETTLE_MAX_MS) {
    await sleep(SAMPLE_MS);
    const now = await sample(subject, pid, mnt);
    if (now.rss < last.rss || (now.nodes ?? 0) < (last.nodes ?? 0)) lastFall = Date.now();
    last = now;
  }
  return last;
}

async function memoryOf(ctx: BenchContext, subject: OverlaySubject, layers: OverlayLayers, mnt: string): Promise<MemoryFigures> {
  const mounted = await subject.mount(ctx.cleanup, layers, subdir(mnt));
  try {
    const pid = mounted.pid;
    if (pid === undefined) throw new Error(`${subject.name}: no daemon PID`);
    const atMount = await sample(subject, pid, mnt);
    const walk = await ctx.workloads.run('walk', join(mnt, 'tree'));
    if (walk.count !== RSS_ENTRIES) throw new Error(`${subject.name}: walk counted ${walk.count} entries, expected ${RSS_ENTRIES}`);
    const walked = await sample(subject, pid, mnt);
    return { mounted: atMount, walked, dropped: await afterDropCaches(subject, pid, mnt) };
  } finally {
    await mounted.unmount();
    await removeTree(mnt);
  }
}

async function memory(ctx: BenchContext, scratch: string): Promise<string> {
  const lower = subdir(scratch, 'rss-lower');
  ctx.progress(`revalidate: writing ${formatNumber(RSS_ENTRIES)} entries in ${lower}`);
  await ctx.workloads.run('make-empty-files', subdir(lower, 'tree'), RSS_DIRS, RSS_FILES_PER_DIR);
  const upperFs = await mountTmpfs(ctx.cleanup, subdir(scratch, 'rss-upper'), `${64 * MiB}`);
  const rows: string[][] = [];
  const keptRss: string[] = [];
  const disturbed: string[] = [];
  for (const [i, subject] of MEMORY_SUBJECTS.entries()) {
    ctx.progress(`revalidate: memory of ${subject.name} over ${formatNumber(RSS_ENTRIES)} entries`);
    const layers = { lower, upper: subdir(upperFs.dir, `${i}`, 'upper'), work: subdir(upperFs.dir, `${i}`, 'work') };
    const f = await memoryOf(ctx, subject, layers, join(scratch, 'rss-mnt'));
    const mib = (s: MemorySample): string => formatNumber(s.rss / MiB, 1);
    const nodes = [f.mounted, f.walked, f.dropped].map((s) => (s.nodes === undefined ? undefined : formatNumber(s.nodes)));
    rows.push([
      subject.name,
      mib(f.mounted),
      mib(f.walked),
      mib(f.dropped),
      formatRatio(f.dropped.rss / f.mounted.rss),
      nodes.includes(undefined) ? '—' : nodes.join(' → '),
    ]);
    if (f.dropped.rss >= f.walked.rss) keptRss.push(subject.name);
    // The walk leaves every entry looked up; fewer nodes mean someone else dropped the caches meanwhile.
    if (f.walked.nodes !== undefined && f.walked.nodes < RSS_ENTRIES) disturbed.push(`${subject.name} (${formatNumber(f.walked.nodes)} nodes)`);
  }
  await upperFs.unmount();
  return [
    markdownTable(
      [
        `daemon RSS (MiB), ${formatNumber(RSS_ENTRIES)}-entry lower`,
        'after mount',
        'after stat walk',
        'after drop_caches',
        'after drop_caches ÷ after mount',
        'nodes: mount → walk → drop_caches',
      ],
      rows,
    ),
    '',
    `VmRSS of the daemon process (ovshift: -f, a daemon of its own for the mount), one run each. The lower is ${formatNumber(RSS_DIRS)} directories of ` +
      `${formatNumber(RSS_FILES_PER_DIR)} empty files on ext4, the upper an empty tmpfs; the stat walk lstats every entry. ` +
      '"after drop_caches": `echo 2 > /proc/sys/vm/drop_caches` (the kernel forgets its inodes and sends FORGETs), ' +
      `then sampled every ${SAMPLE_MS} ms until neither RSS nor nodes had fallen for ${SETTLE_MS / 1000} s (at most ` +
      `${SETTLE_MAX_MS / 1000} s). ` +
      (keptRss.length ? `RSS did not fall below its after-walk figure for: ${keptRss.join(', ')}. ` : '') +
      'The bench forces no garbage collection; ovshift runs one (full, compacting) and trims the C heap by itself ' +
      'once it holds 10,000 nodes fewer than at its peak, checked every 2 s. ' +
      'Nodes as `ovshift ctl MNT status` counts them (fuse-overlayfs has no such count).' +
      (disturbed.length ? ` **Caches dropped by something else during the walk** (fewer nodes than entries right after it): ${disturbed.join(', ')}.` : ''),
  ].join('\n');
}

async function run(ctx: BenchContext): Promise<string> {
  const scratch = scratchDir(ctx.cleanup, '/var/tmp', 'ovshift-bench-revalidate-');
  const walkTable = await statWalks(ctx, scratch);
  const memoryTable = await memory(ctx, scratch);
  return ['### Revalidation and memory (`scripts/bench revalidate`)', '', walkTable, '', memoryTable].join('\n');
}

export const revalidateArea: BenchArea = {
  name: 'revalidate',
  summary: 'stat walks on ovshift revalidate=always and =cached vs fuse-overlayfs (ratios), daemon RSS over 200,000 entries',
  run,
};
