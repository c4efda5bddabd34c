/**
 * xfstests' load generators on ovshift, fuse-overlayfs and kernel overlayfs: fsx on a file that
 * starts in the lower (copied up at its first write while open, so ovshift serves that handle
 * itself to the end), with and without mmap, and fsstress in a directory of a populated lower.
 * Built from the xfstests checkout named in XFSTESTS (never fetched or kept by the bench).
 */
import { writeFileSync } from 'fs';
import { join } from 'path';
import type { BenchArea, BenchContext } from './area';
import { timeOnOverlays, type OverlayWorkload } from './lib/overlays';
import { timed } from './lib/proc';
import { formatNumber } from './lib/report';
import { THREE_WAY, threeWayReport } from './lib/three-way';
import { makeSmallFiles, MiB, scratchDir, subdir } from './lib/trees';
import { XFSTESTS_VARIABLE, buildXfstestsTools, xfstestsCheckout, type XfstestsTools } from './lib/xfstests';

const ROUNDS = 3;
const TARGET = 1.0;
const FSX_OPS = 100_000;
/** fsx -k takes the file's size as its bound and expects it to hold zeros. */
const FSX_FILE_BYTES = 256 * 1024;
const STRESS_PROCS = 4;
const STRESS_OPS = 5_000;

function fsxRun(tools: XfstestsTools, logDir: string, mmap: boolean): (mnt: string) => Promise<{ ms: number; count: number }> {
  return async (mnt) => {
    // A fixed seed: every filesystem gets the same operations.
    const args = ['-q', '-k', '-S', '1', '-N', `${FSX_OPS}`, '-P', logDir, ...(mmap ? [] : ['-R', '-W']), join(mnt, 'fsx-file')];
    const r = await timed(tools.fsx, args);
    const done = /All (\d+) operations completed A-OK!/.exec(r.stdout);
    return { ms: r.ms, count: done ? Number(done[1]) : 0 };
  };
}

function workloads(tools: XfstestsTools, logDir: string): OverlayWorkload[] {
  const fsx = (name: string, mmap: boolean): OverlayWorkload => ({ name, expect: FSX_OPS, command: () => [], run: fsxRun(tools, logDir, mmap) });
  return [
    fsx(`fsx, ${formatNumber(FSX_OPS)} operations on a lower file, no mmap (-R -W)`, false),
    fsx(`fsx, ${formatNumber(FSX_OPS)} operations on a lower file, with mmap`, true),
    {
      name: `fsstress -p ${STRESS_PROCS} -n ${formatNumber(STRESS_OPS)} in a directory of the lower`,
      expect: 1,
      command: () => [],
      run: async (mnt) => {
        const r = await timed(tools.fsstress, ['-d', join(mnt, 'stress'), '-p', `${STRESS_PROCS}`, '-n', `${STRESS_OPS}`, '-s', '1']);
        return { ms: r.ms, count: 1 };
      },
    },
  ];
}

async function run_(ctx: BenchContext): Promise<string> {
  const title = '### xfstests load generators (`scripts/bench fsx`)';
  const checkout = xfstestsCheckout();
  if ('missing' in checkout) {
    ctx.progress(`fsx: skipped: ${checkout.missing}`);
    return `${title}\n\nNot run: ${checkout.missing}. Run it as \`${XFSTESTS_VARIABLE}=/path/to/xfstests scripts/bench fsx\`.`;
  }
  ctx.progress(`fsx: building fsx and fsstress from ${checkout.dir}`);
  const tools = await buildXfstestsTools(ctx.cleanup, checkout.dir);
  const scratch = scratchDir(ctx.cleanup, '/var/tmp', 'ovshift-bench-fsx-');
  const lower = subdir(scratch, 'lower');
  writeFileSync(join(lower, 'fsx-file'), Buffer.alloc(FSX_FILE_BYTES));
  makeSmallFiles(subdir(lower, 'stress'), 10, 1_000);
  const list = workloads(tools, subdir(scratch, 'fsx-logs'));
  const times = await timeOnOverlays(
    { ...ctx, progress: (m) => ctx.progress(`fsx: ${m}`) },
    { lower, scratch, upperSize: 512 * MiB, subjects: THREE_WAY, workloads: list, rounds: ROUNDS },
  );
  return threeWayReport({
    title,
    names: list.map((w) => w.name),
    times,
    rounds: ROUNDS,
    target: TARGET,
    about:
      `Lower is better. xfstests ${tools.commit}, built for the run. The lower (on /var/tmp) holds fsx's file ` +
      `(${FSX_FILE_BYTES / 1024} KiB of zeros, which fsx -k expects) and 1,000 small files; the upper is a tmpfs, a ` +
      'fresh mount for every run, default options. fsx opens its file read-write without truncating it, so the file ' +
      'is copied up at its first write with the handle open. Times include starting the program. CPU: the daemon, ' +
      'all threads.',
  });
}

export const fsxArea: BenchArea = {
  name: 'fsx',
  summary: `xfstests' fsx and fsstress (needs ${XFSTESTS_VARIABLE}=an xfstests checkout) on ovshift, fuse-overlayfs, kernel overlayfs`,
  run: run_,
};
