/**
 * The protocol layer alone: GETATTR and LOOKUP round trips and READ throughput through a
 * protocol-layer filesystem served by this process (FixedFilesFs on FuseSession) and through
 * bindfs (libfuse, C) over a tmpfs holding the same files. Both with timeouts 0 and direct I/O,
 * so every call is a FUSE round trip; the workloads run in a child process.
 */
import { join } from 'path';
import type { BenchArea, BenchContext } from './area';
import { FixedFilesFs, type Served } from './fixed-files-fs';
import { medianOfRounds } from './lib/measure';
import { mountBindfs, mountSession, mountTmpfs } from './lib/mounts';
import { check } from './lib/proc';
import { formatNumber, formatRatio, markdownTable } from './lib/report';
import { GiB, MiB, makeFile, scratchDir, subdir } from './lib/trees';
import type { Workloads } from './lib/workload';

const ROUNDS = 3;
const FSTAT_CALLS = 200_000;
const STAT_CALLS = 100_000;
const STAT_FILE = { name: 'stat-file', size: 4096 };
const BIG_FILE = { name: 'big', size: GiB };

interface ProtocolWorkload {
  name: string;
  unit: string;
  /** Runs once on the mount at `dir`; returns the rate in `unit`. */
  rate(w: Workloads, dir: string): Promise<number>;
  /** Whether the protocol-layer filesystem served every call of one run (else the figure lies). */
  servedAll(before: Served, after: Served): boolean;
}

const WORKLOADS: ProtocolWorkload[] = [
  {
    name: `fstat() ×${formatNumber(FSTAT_CALLS)}: 1 GETATTR each`,
    unit: 'calls/s',
    async rate(w, dir) {
      const r = await w.run('fstat', FSTAT_CALLS, join(dir, STAT_FILE.name));
      return r.count / (r.ms / 1000);
    },
    servedAll: (b, a) => a.getattrs - b.getattrs >= FSTAT_CALLS,
  },
  {
    name: `stat() ×${formatNumber(STAT_CALLS)}: LOOKUP + 2 GETATTR each`,
    unit: 'calls/s',
    async rate(w, dir) {
      const r = await w.run('stat', STAT_CALLS, join(dir, STAT_FILE.name));
      return r.count / (r.ms / 1000);
    },
    // The second GETATTR is the parent's, for the permission check (default_permissions).
    servedAll: (b, a) => a.lookups - b.lookups >= STAT_CALLS && a.getattrs - b.getattrs >= 2 * STAT_CALLS,
  },
  ...[MiB, 128 * 1024].map((block): ProtocolWorkload => ({
    name: `read 1 GiB in ${block >= MiB ? `${block / MiB} MiB` : `${block / 1024} KiB`} read()s`,
    unit: 'MiB/s',
    async rate(w, dir) {
      const r = await w.run('read', join(dir, BIG_FILE.name), block);
      if (r.count !== BIG_FILE.size) throw new Error(`read ${r.count} bytes of ${BIG_FILE.size}`);
      return r.count / MiB / (r.ms / 1000);
    },
    servedAll: (b, a) => a.readBytes - b.readBytes >= BIG_FILE.size,
  })),
];

async function run(ctx: BenchContext): Promise<string> {
  const { cleanup, workloads } = ctx;
  const scratch = scratchDir(cleanup, '/tmp', 'ovshift-bench-fuse-');
  const source = subdir(scratch, 'source');
  await mountTmpfs(cleanup, source, `${BIG_FILE.size + 64 * MiB}`);
  makeFile(join(source, STAT_FILE.name), STAT_FILE.size);
  makeFile(join(source, BIG_FILE.name), BIG_FILE.size);

  const fixedFs = new FixedFilesFs([STAT_FILE, BIG_FILE]);
  const ours = await mountSession(cleanup, fixedFs, subdir(scratch, 'ovshift'));
  const bindfs = await mountBindfs(cleanup, source, subdir(scratch, 'bindfs'), ['attr_timeout=0', 'entry_timeout=0', 'direct_io']);

  const rows: string[][] = [];
  for (const workload of WORKLOADS) {
    ctx.progress(`fuse: ${workload.name}`);
    const [ourRate, bindfsRate] = await medianOfRounds(['ovshift', 'bindfs'], ROUNDS, async (subject) => {
      if (subject === 'bindfs') return workload.rate(workloads, bindfs.dir);
      const before = { ...fixedFs.served };
      const rate = await workload.rate(workloads, ours.dir);
      if (!workload.servedAll(before, fixedFs.served)) throw new Error(`fuse: ${workload.name}: calls were answered by the kernel's caches`);
      return rate;
    });
    rows.push([
      workload.name,
      `${formatNumber(ourRate!)} ${workload.unit}`,
      `${formatNumber(bindfsRate!)} ${workload.unit}`,
      formatRatio(ourRate! / bindfsRate!),
    ]);
  }
  const version = (await check('bindfs', ['--version'])).split('\n')[0]!.trim();

  return [
    `### FUSE protocol layer (\`npm run bench:fuse\`)`,
    '',
    markdownTable(['workload (median of 3)', 'ovshift protocol layer', 'bindfs', 'ovshift ÷ bindfs'], rows),
    '',
    `Higher is better; ovshift ÷ bindfs above 1 means ovshift is faster. ${version}, single-threaded (its default), ` +
      'serving files from a tmpfs; libfuse 3.14 caps its READs at 128 KiB, the protocol layer takes 1 MiB, ' +
      'and its READs copy no file data.',
  ].join('\n');
}

export const fuseArea: BenchArea = {
  name: 'fuse',
  summary: 'FUSE protocol layer alone vs bindfs (libfuse): GETATTR/LOOKUP round trips, READ throughput',
  run,
};
