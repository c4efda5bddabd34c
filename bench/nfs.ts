/**
 * ovshift over an nfs:// lower: a loopback nfs-ganesha export (scripts/nfs-server) of a tree on
 * ext4, page cache warm on the server side. A stat walk through ovshift over the export, with
 * and without `dircache`, next to ovshift over the same tree as a local directory; and reading a
 * 1 GiB file through ovshift next to nfs-cp (libnfs) copying it from the same server.
 */
import { join, resolve } from 'path';
import type { BenchArea, BenchContext } from './area';
import type { Cleanup } from './lib/cleanup';
import { median } from './lib/measure';
import { mountTmpfs } from './lib/mounts';
import { ovshift, timeOnOverlays, type OverlaySubject, type OverlayWorkload } from './lib/overlays';
import { check, run } from './lib/proc';
import { formatNumber, formatRatio, markdownTable } from './lib/report';
import { GiB, MiB, makeFile, makeSmallFiles, removeTree, scratchDir, subdir } from './lib/trees';

const NFS_SERVER = resolve(__dirname, '..', '..', 'scripts', 'nfs-server');
const ROUNDS = 3;
const TREE_DIRS = 50;
const TREE_FILES = 5_000;
const BIG_BYTES = GiB;
const DIRCACHE_SECONDS = 60;

interface NfsServer {
  port: number;
  mountPort: number;
}

/** Starts ganesha exporting `dir` on loopback; stopped (by the PIDs it records) at cleanup. */
async function startServer(cleanup: Cleanup, dir: string, stateDir: string): Promise<NfsServer> {
  const out = await check(NFS_SERVER, ['start', dir, '--state', stateDir], { timeoutMs: 60_000 });
  cleanup.add(`nfs-server for ${dir}`, async () => {
    await check(NFS_SERVER, ['stop', stateDir], { timeoutMs: 60_000 });
  });
  return JSON.parse(out) as NfsServer;
}

/** ovshift with `lower` (a URL or a directory) as its lower, whatever lower the run hands it. */
function ovshiftOver(name: string, lower: string): OverlaySubject {
  const subject = ovshift([], name);
  return { name, mount: (cleanup, layers, dir) => subject.mount(cleanup, { ...layers, lower }, dir) };
}

async function wallClockMs(command: string, args: string[]): Promise<number> {
  const started = process.hrtime.bigint();
  await check(command, args, { timeoutMs: 600_000 });
  return Number(process.hrtime.bigint() - started) / 1e6;
}

async function statWalk(ctx: BenchContext, exported: string, url: (options?: string) => string, scratch: string): Promise<string> {
  const subjects = [
    ovshiftOver('ovshift, nfs://', url()),
    ovshiftOver(`ovshift, nfs://…?dircache=${DIRCACHE_SECONDS}`, url(`dircache=${DIRCACHE_SECONDS}`)),
    ovshiftOver('ovshift, local directory', exported),
  ];
  const workload: OverlayWorkload = {
    name: `stat walk: lstat of ${formatNumber(TREE_FILES)} files`,
    command: (mnt) => ['walk', join(mnt, 'tree')],
    expect: TREE_FILES + TREE_DIRS,
  };
  const [ms] = await timeOnOverlays(
    { ...ctx, progress: (m) => ctx.progress(`nfs: ${m}`) },
    {
      lower: exported,
      scratch,
      upperSize: 64 * MiB,
      subjects,
      workloads: [workload],
      rounds: ROUNDS,
    },
  );
  const local = ms![2]!;
  return markdownTable(
    [`workload (ms, median of ${ROUNDS})`, ...subjects.map((s) => s.name), 'nfs:// ÷ local', 'dircache ÷ local'],
    [[workload.name, ...ms!.map((m) => formatNumber(m, 1)), formatRatio(ms![0]! / local), formatRatio(ms![1]! / local)]],
  );
}

/**
 * Reads the big file through a fresh ovshift mount, rounds interleaved with nfs-cp copying it
 * from the same server to a tmpfs (nfs-cp cannot write to /dev/null, it creates its target).
 */
async function sequentialRead(ctx: BenchContext, lowerUrl: string, nfsCpSource: string, scratch: string): Promise<string> {
  const target = await mountTmpfs(ctx.cleanup, subdir(scratch, 'copies'), `${BIG_BYTES + 64 * MiB}`);
  const read: number[] = [];
  const copied: number[] = [];
  const nfsCp: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    ctx.progress(`nfs: sequential read, round ${round + 1} of ${ROUNDS}`);
    const mnt = subdir(scratch, `read-${round}`);
    const layers = { lower: lowerUrl, upper: subdir(target.dir, `upper-${round}`), work: subdir(target.dir, `work-${round}`) };
    const mounted = await ovshift().mount(ctx.cleanup, layers, mnt);
    try {
      const result = await ctx.workloads.run('read', join(mnt, 'big'), MiB);
      if (result.count !== BIG_BYTES) throw new Error(`ovshift read ${result.count} bytes of ${BIG_BYTES}`);
      read.push(result.ms);
      copied.push(await wallClockMs('cp', [join(mnt, 'big'), join(target.dir, 'through-ovshift')]));
    } finally {
      await mounted.unmount();
      await removeTree(mnt);
      await removeTree(join(target.dir, 'through-ovshift'));
      await removeTree(layers.upper);
      await removeTree(layers.work);
    }
    nfsCp.push(await wallClockMs('nfs-cp', [nfsCpSource, join(target.dir, 'by-nfs-cp')]));
    await removeTree(join(target.dir, 'by-nfs-cp'));
  }
  await target.unmount();
  const cp = median(nfsCp);
  const rate = (ms: number): string => `${formatNumber(BIG_BYTES / MiB / (ms / 1000))} MiB/s`;
  return markdownTable(
    [`1 GiB file (median of ${ROUNDS})`, 'ms', 'throughput', '÷ nfs-cp'],
    [
      ['ovshift, nfs:// lower: read() in 1 MiB blocks', formatNumber(median(read), 1), rate(median(read)), formatRatio(median(read) / cp)],
      ['ovshift, nfs:// lower: cp to tmpfs', formatNumber(median(copied), 1), rate(median(copied)), formatRatio(median(copied) / cp)],
      ['nfs-cp (libnfs) to tmpfs, same server', formatNumber(cp, 1), rate(cp), formatRatio(1)],
    ],
  );
}

async function runArea(ctx: BenchContext): Promise<string> {
  const scratch = scratchDir(ctx.cleanup, '/var/tmp', 'ovshift-bench-nfs-');
  const exported = subdir(scratch, 'export');
  ctx.progress(`nfs: writing the exported tree in ${exported}`);
  makeSmallFiles(subdir(exported, 'tree'), TREE_DIRS, TREE_FILES);
  makeFile(join(exported, 'big'), BIG_BYTES);
  await check('sync', []);
  await ctx.workloads.run('readall', exported, MiB);
  const server = await startServer(ctx.cleanup, exported, subdir(scratch, 'nfs-state'));
  const ports = `mountport=${server.mountPort}`;
  const ovshiftUrl = (options?: string): string => `nfs://127.0.0.1:${server.port}${exported}?${ports}${options ? `&${options}` : ''}`;
  // libnfs's own URL syntax: the ports are query options too.
  const libnfsUrl = (path: string): string => `nfs://127.0.0.1${exported}/${path}?version=3&nfsport=${server.port}&${ports}`;

  const walkTable = await statWalk(ctx, exported, ovshiftUrl, subdir(scratch, 'walk'));
  const readTable = await sequentialRead(ctx, ovshiftUrl(), libnfsUrl('big'), subdir(scratch, 'read'));
  const ganesha = (await run('dpkg-query', ['-W', '-f', '${Version}', 'nfs-ganesha'])).stdout.trim();
  const libnfs = (await run('dpkg-query', ['-W', '-f', '${Version}', 'libnfs-utils'])).stdout.trim();
  return [
    '### nfs:// lower (`scripts/bench nfs`)',
    '',
    walkTable,
    '',
    readTable,
    '',
    `Lower is better for times. nfs-ganesha ${ganesha || '(version unknown)'} (FSAL VFS, server caching off as in the tests) on ` +
      `127.0.0.1 exporting a tree on ext4; libnfs-utils ${libnfs || '(version unknown)'}; ovshift with a tmpfs upper, a fresh mount every run. ` +
      'nfs-cp times include its process start and MOUNT; ovshift read times do not include mounting.',
  ].join('\n');
}

export const nfsArea: BenchArea = {
  name: 'nfs',
  summary: 'ovshift over an nfs:// lower: stat walk, and a 1 GiB read next to nfs-cp from the same server',
  run: runArea,
};
