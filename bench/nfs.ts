/**
 * ovshift over an nfs:// lower, NFSv3 and NFSv4.1: a loopback nfs-ganesha export (scripts/nfs-server)
 * of a tree on ext4, page cache warm on the server side. NFS calls per stat() at depths 1, 3 and 6, counted
 * by a proxy between ovshift and the server; a stat walk and reading every file of a
 * 5,000-file tree next to ovshift over the same tree as a local directory; lock + unlock round
 * trips through the mount (taken on the server through NLM) and lock handoffs between two
 * mounts, next to the same on the exported directory itself; and reading a 1 GiB file next to
 * libnfs (nfs-cat, nfs-cp) reading it from the same server.
 */
import { join, resolve } from 'path';
import { promises as fsp, writeFileSync } from 'fs';
import { NFS3_PROC, NFS_PROGRAM, NLM_PROGRAM, startRpcCounter, type RpcCounter } from '../test/helpers/rpc-counter';
import { startHostPortmapper } from '../test/nfs/server';
import type { BenchArea, BenchContext } from './area';
import type { Cleanup } from './lib/cleanup';
import { median, medianOfRounds } from './lib/measure';
import { mountTmpfs, type Mounted } from './lib/mounts';
import { ovshift, timeOnOverlays, type OverlaySubject, type OverlayWorkload } from './lib/overlays';
import { check, run, sleep } from './lib/proc';
import { formatNumber, formatRatio, markdownTable } from './lib/report';
import { GiB, MiB, makeFile, makeSmallFiles, removeTree, scratchDir, subdir } from './lib/trees';

const NFS_SERVER = resolve(__dirname, '..', '..', 'scripts', 'nfs-server');
const LOCK_HANDOFF = resolve(__dirname, '..', '..', 'bench', 'lock-handoff.py');
const ROUNDS = 3;
const TREE_DIRS = 50;
const TREE_FILES = 5_000;
const BIG_BYTES = GiB;
const DEPTHS = [1, 3, 6];
const NAMES = 'abcdefghij'.split('');
/** stat() samples per depth on the counted mount. */
const STAT_SAMPLES = 5;
/** Past the tick for which the kernel may keep an entry the lower decides (revalidate=always). */
const ENTRY_TICK_MS = 20;
const TREE_TARGET = 1.5;
const READ_TARGET = 1.2;
const LOCK_CYCLES = 2_000;
const HANDOFFS = 100;
/** How long a holder keeps the lock once the other side is about to wait for it. */
const HOLDS_MS = [0, 25];

interface NfsServer {
  port: number;
  mountPort: number;
  nlmPort: number;
}

/**
 * Starts ganesha exporting `dir` on loopback, as a server on a host of its own (its own
 * portmapper: its NLM callbacks reach the mounts' daemons, registered with this host's, started
 * here if none runs); stopped (by the PIDs it records) at cleanup.
 */
async function startServer(cleanup: Cleanup, dir: string, stateDir: string): Promise<NfsServer> {
  const out = await check(NFS_SERVER, ['start', dir, '--own-portmapper', '--state', stateDir], { timeoutMs: 60_000 });
  cleanup.add(`nfs-server for ${dir}`, async () => {
    await check(NFS_SERVER, ['stop', stateDir], { timeoutMs: 60_000 });
  });
  const portmapper = await startHostPortmapper();
  cleanup.add("this host's portmapper", () => portmapper.stop());
  return JSON.parse(out) as NfsServer;
}

/** A proxy counting RPC calls to `port`, stopped at cleanup. */
async function counter(cleanup: Cleanup, port: number): Promise<RpcCounter> {
  const c = await startRpcCounter(port);
  cleanup.add(`RPC counter on port ${c.port}`, () => c.stop());
  return c;
}

/** ovshift with `lower` (a URL or a directory) as its lower, whatever lower the run hands it. */
function ovshiftOver(name: string, lower: string): OverlaySubject {
  const subject = ovshift([], name);
  return { name, mount: (cleanup, layers, dir) => subject.mount(cleanup, { ...layers, lower }, dir) };
}

/** A fresh ovshift mount of `lower` in `scratch/name`, its upper and work dirs beside it. */
function mountOver(ctx: BenchContext, lower: string, scratch: string, name: string): Promise<Mounted> {
  const layers = { lower, upper: subdir(scratch, `${name}-upper`), work: subdir(scratch, `${name}-work`) };
  return ovshift().mount(ctx.cleanup, layers, subdir(scratch, name));
}

const met = (ok: boolean): string => (ok ? 'met' : '**missed**');

async function wallClockMs(command: string, args: string[]): Promise<number> {
  const started = process.hrtime.bigint();
  await check(command, args, { timeoutMs: 600_000 });
  return Number(process.hrtime.bigint() - started) / 1e6;
}

/** The path at depth `depth` below the export: a/b/…/file, `depth` components. */
function pathAt(depth: number): string {
  return [...NAMES.slice(0, depth - 1), 'file'].join('/');
}

function describeCalls(c: RpcCounter): string {
  const names = new Map(Object.entries(NFS3_PROC).map(([k, v]) => [v, k]));
  return [...c.calls(NFS_PROGRAM)].map(([proc, n]) => `${names.get(proc) ?? proc}×${n}`).join(' ') || 'none';
}

/** An nfs:// version measured here, and how its mounts' URLs ask for it. */
interface Version {
  label: string;
  vers: '3' | '4.1';
}

const VERSIONS: Version[] = [
  { label: 'NFSv3', vers: '3' },
  { label: 'NFSv4.1', vers: '4.1' },
];

/**
 * NFS calls per stat() on a warm mount (revalidate=always, the default) whose lower URL points at
 * the counting proxy. stat() goes through fs.promises: the proxy runs in this event loop.
 */
async function statRoundTrips(counted: { version: Version; mnt: string; nfs: RpcCounter }[]): Promise<string> {
  const rows: string[][] = [];
  let misses = 0;
  for (const { version, mnt, nfs } of counted) {
    for (const d of DEPTHS) {
      const path = join(mnt, pathAt(d));
      await fsp.stat(path);
      const counts: number[] = [];
      let calls = '';
      for (let i = 0; i < STAT_SAMPLES; i++) {
        await sleep(ENTRY_TICK_MS);
        nfs.reset();
        await fsp.stat(path);
        counts.push(nfs.total(NFS_PROGRAM));
        calls ||= version.vers === '3' ? describeCalls(nfs) : describeCompounds(nfs);
      }
      const now = median(counts);
      if (now > d) misses++;
      rows.push([
        version.label,
        `depth ${d} (\`${pathAt(d)}\`)`,
        version.vers === '3' ? formatNumber(d * d + d - 1) : '—',
        formatNumber(now),
        `${Math.min(...counts)}–${Math.max(...counts)}`,
        calls,
        `≤ ${d} ${met(now <= d)}`,
      ]);
    }
  }
  return [
    markdownTable([`NFS calls per stat() (median of ${STAT_SAMPLES})`, 'path', 'before (d²+d−1)', 'now', 'range', 'calls (first sample)', 'target'], rows),
    '',
    `Lower is better. A warm mount (revalidate=always, the default): each stat() follows one untimed stat() of the same ` +
      `path and a ${ENTRY_TICK_MS} ms pause (past the tick for which the kernel keeps an entry), and counts every call of ` +
      'the NFS program (100003) a proxy between ovshift and ganesha sees: NFSv3 procedures, NFSv4 COMPOUNDs (their ' +
      'operations listed, SEQUENCE left out). "before" is what a stat() at depth d cost over NFSv3 before the lookup path ' +
      'was rewritten (d²+d−1 calls), a fixed figure, not measured in this run. ' +
      (misses ? `Target missed in ${misses} of ${counted.length * DEPTHS.length} rows.` : 'Target met in every row.'),
  ].join('\n');
}

/** NFSv4 operation names, for the calls column. */
const V4_OPS: Record<number, string> = { 9: 'GETATTR', 10: 'GETFH', 15: 'LOOKUP', 22: 'PUTFH', 24: 'PUTROOTFH', 25: 'READ' };

function describeCompounds(c: RpcCounter): string {
  const shapes = new Map<string, number>();
  for (const ops of c.compounds()) {
    const shape = ops.map((op) => V4_OPS[op] ?? `op ${op}`).join('+');
    shapes.set(shape, (shapes.get(shape) ?? 0) + 1);
  }
  return [...shapes].map(([shape, n]) => `COMPOUND(${shape})×${n}`).join(' ') || 'none';
}

async function treeWorkloads(
  ctx: BenchContext,
  exported: string,
  urls: { version: Version; url: string }[],
  treeBytes: number,
  scratch: string,
): Promise<string> {
  const subjects = [...urls.map(({ version, url }) => ovshiftOver(`ovshift, nfs:// ${version.label}`, url)), ovshiftOver('ovshift, local directory', exported)];
  const workloads: OverlayWorkload[] = [
    { name: `stat walk: lstat of ${formatNumber(TREE_FILES)} files`, command: (mnt) => ['walk', join(mnt, 'tree')], expect: TREE_FILES + TREE_DIRS },
    { name: `read ${formatNumber(TREE_FILES)} small files`, command: (mnt) => ['readall', join(mnt, 'tree'), 64 * 1024], expect: treeBytes },
  ];
  const { ms } = await timeOnOverlays(
    { ...ctx, progress: (m) => ctx.progress(`nfs: ${m}`) },
    { lower: exported, scratch, upperSize: 64 * MiB, subjects, workloads, rounds: ROUNDS },
  );
  const misses: string[] = [];
  const rows = workloads.map((w, i) => {
    const times = ms[i]!;
    const local = times[times.length - 1]!;
    const ratios = urls.map(({ version }, v) => {
      const ratio = times[v]! / local;
      if (ratio > TREE_TARGET) misses.push(`${w.name}, ${version.label} (${formatRatio(ratio)})`);
      return `${formatRatio(ratio)} ${met(ratio <= TREE_TARGET)}`;
    });
    return [w.name, ...times.map((t) => formatNumber(t, 1)), ...ratios];
  });
  return [
    markdownTable(
      [
        `workload (ms, median of ${ROUNDS})`,
        ...subjects.map((s) => s.name),
        ...urls.map(({ version }) => `${version.label} ÷ local (target ≤ ${formatRatio(TREE_TARGET)})`),
      ],
      rows,
    ),
    '',
    `Lower is better. ${formatNumber(TREE_FILES)} files of 0 to 8 KiB in ${TREE_DIRS} directories; a fresh mount and ` +
      'upper (tmpfs) for every run, rounds interleaved; the local directory is the exported one (the floor: the same ' +
      'tree without NFS). ' +
      (misses.length ? `Target missed on: ${misses.join('; ')}.` : 'Target met on every row.'),
  ].join('\n');
}

interface Handoffs {
  perSecond: number;
  medianUs: number;
  p99Us: number;
}

async function handoffs(holdMs: number, fileA: string, fileB: string): Promise<Handoffs> {
  const out = await check('python3', [LOCK_HANDOFF, `${HANDOFFS}`, `${holdMs}`, fileA, fileB], { timeoutMs: 600_000 });
  const r = JSON.parse(out.trim().split('\n').pop()!) as { ns: number; count: number; median_ns: number; p99_ns: number };
  if (r.count !== HANDOFFS) throw new Error(`nfs: ${r.count} of ${HANDOFFS} lock handoffs`);
  return { perSecond: r.count / (r.ns / 1e9), medianUs: r.median_ns / 1000, p99Us: r.p99_ns / 1000 };
}

/**
 * Lock + unlock round trips through ovshift on a file of the nfs:// lower (taken on the server
 * through NLM), next to the same loop on the exported file itself; and lock handoffs between
 * two mounts of the export (two hosts), next to two processes on the exported file.
 */
async function locks(ctx: BenchContext, url: string, exported: string, scratch: string, counted: { mnt: string; nlm: RpcCounter }): Promise<string> {
  const serverFile = join(exported, 'lockfile');
  // NLM calls per lock + unlock, on the mount whose NLM traffic goes through a counting proxy.
  counted.nlm.reset();
  const checkCycles = 10;
  const checked = await ctx.workloads.run('lock-cycle', 'posix', checkCycles, join(counted.mnt, 'lockfile'));
  if (checked.count !== checkCycles) throw new Error(`nfs: lock-cycle counted ${checked.count}`);
  const nlmPerCycle = counted.nlm.total(NLM_PROGRAM) / checkCycles;

  const hostA = await mountOver(ctx, url, scratch, 'host-a');
  const hostB = await mountOver(ctx, url, scratch, 'host-b');
  try {
    ctx.progress(`nfs: lock + unlock, ${formatNumber(LOCK_CYCLES)} per run`);
    const [through, local] = await medianOfRounds([join(hostA.dir, 'lockfile'), serverFile], ROUNDS, async (file) => {
      const r = await ctx.workloads.run('lock-cycle', 'posix', LOCK_CYCLES, file);
      if (r.count !== LOCK_CYCLES) throw new Error(`nfs: lock-cycle: ${r.count} of ${LOCK_CYCLES} on ${file}`);
      return r.count / (r.ms / 1000);
    });
    const rows: string[][] = [
      [
        'one host: fcntl F_SETLK write lock + F_UNLCK, one process',
        `${formatNumber(through!)}/s`,
        '—',
        `${formatNumber(local!)}/s`,
        '—',
        formatRatio(through! / local!),
      ],
    ];
    for (const hold of HOLDS_MS) {
      ctx.progress(`nfs: lock handoffs between two hosts, holding ${hold} ms`);
      const across: Handoffs[] = [];
      const plain: Handoffs[] = [];
      for (let round = 0; round < ROUNDS; round++) {
        across.push(await handoffs(hold, join(hostA.dir, 'lockfile'), join(hostB.dir, 'lockfile')));
        plain.push(await handoffs(hold, serverFile, serverFile));
      }
      const rate = (h: Handoffs[]): number => median(h.map((x) => x.perSecond));
      const latency = (h: Handoffs[]): string => `${formatNumber(median(h.map((x) => x.medianUs)), 0)} µs`;
      rows.push([
        `two hosts: exclusive lock handed over, held ${hold} ms each time`,
        `${formatNumber(rate(across), 1)}/s`,
        latency(across),
        `${formatNumber(rate(plain), 1)}/s`,
        latency(plain),
        formatRatio(rate(across) / rate(plain)),
      ]);
    }
    return [
      markdownTable(
        [
          `locks (median of ${ROUNDS} runs)`,
          'through ovshift, nfs://',
          'unlock → grant (median)',
          'on the server, local file',
          'unlock → grant (median)',
          'ovshift ÷ server (rate)',
        ],
        rows,
      ),
      '',
      `Higher rates are better. One host: one process, one open file, ${formatNumber(LOCK_CYCLES)} lock + unlock pairs ` +
        `per run, never contended; through the mount each pair cost ${formatNumber(nlmPerCycle, 1)} NLM calls (counted ` +
        'by a proxy on another mount of the same export); on the server, the same loop on the exported file (local ' +
        `POSIX locks: the floor). Two hosts: two ovshift mounts of the export, two processes taking turns, ` +
        `${formatNumber(HANDOFFS)} handoffs per run: the holder keeps the lock the time shown once the other says it is ` +
        'about to wait in F_SETLKW, unlocks, and waits again only once the other has it; the latency is from the ' +
        "holder's unlock to the other's grant (median over each run's handoffs, then over runs). A waiter through " +
        'ovshift is queued by the server and woken by its GRANTED callback (the server runs with a portmapper of its own, as ' +
        "on a host of its own, so its callbacks reach the daemons through this host's). The server column is two " +
        'processes on the exported file (the kernel wakes the waiter). No target is set for these yet.',
    ].join('\n');
  } finally {
    await hostB.unmount();
    await hostA.unmount();
  }
}

/** Runs `work` on a fresh ovshift mount of `lower` at `mnt` (upper and work dirs in `space`), then unmounts and removes it all. */
async function onFreshMount<T>(ctx: BenchContext, lower: string, space: string, mnt: string, work: (mnt: string) => Promise<T>): Promise<T> {
  const layers = { lower, upper: subdir(space, 'upper'), work: subdir(space, 'work') };
  const mounted = await ovshift().mount(ctx.cleanup, layers, mnt);
  try {
    return await work(mnt);
  } finally {
    await mounted.unmount();
    await removeTree(mnt);
    await removeTree(layers.upper);
    await removeTree(layers.work);
  }
}

/**
 * Reads the big file through fresh ovshift mounts (read() and cp each on its own), rounds interleaved with libnfs reading it
 * from the same server: nfs-cat to /dev/null (next to read()) and nfs-cp to a tmpfs (next to cp
 * to the same tmpfs; nfs-cp cannot write to /dev/null, it creates its target).
 */
async function sequentialRead(ctx: BenchContext, urls: { version: Version; url: string }[], libnfsSource: string, scratch: string): Promise<string> {
  const target = await mountTmpfs(ctx.cleanup, subdir(scratch, 'copies'), `${BIG_BYTES + 64 * MiB}`);
  const read: number[][] = urls.map(() => []);
  const copied: number[][] = urls.map(() => []);
  const nfsCat: number[] = [];
  const nfsCp: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    ctx.progress(`nfs: sequential read, round ${round + 1} of ${ROUNDS}`);
    for (const [v, { url }] of urls.entries()) {
      // Each on a mount of its own: cp after read() on one mount would copy the pages the read left.
      read[v]!.push(
        await onFreshMount(ctx, url, target.dir, subdir(scratch, `read-${round}-${v}`), async (mnt) => {
          const result = await ctx.workloads.run('read', join(mnt, 'big'), MiB);
          if (result.count !== BIG_BYTES) throw new Error(`ovshift read ${result.count} bytes of ${BIG_BYTES}`);
          return result.ms;
        }),
      );
      copied[v]!.push(
        await onFreshMount(ctx, url, target.dir, subdir(scratch, `cp-${round}-${v}`), async (mnt) => {
          try {
            return await wallClockMs('cp', [join(mnt, 'big'), join(target.dir, 'through-ovshift')]);
          } finally {
            await removeTree(join(target.dir, 'through-ovshift'));
          }
        }),
      );
    }
    nfsCat.push(await wallClockMs('sh', ['-c', 'nfs-cat "$1" > /dev/null', 'sh', libnfsSource]));
    nfsCp.push(await wallClockMs('nfs-cp', [libnfsSource, join(target.dir, 'by-nfs-cp')]));
    await removeTree(join(target.dir, 'by-nfs-cp'));
  }
  await target.unmount();
  const cat = median(nfsCat);
  const cp = median(nfsCp);
  const rate = (ms: number): string => `${formatNumber(BIG_BYTES / MiB / (ms / 1000))} MiB/s`;
  const misses: string[] = [];
  const row = (name: string, ms: number, base: number | undefined, baseName: string): string[] => {
    if (base === undefined) return [name, formatNumber(ms, 1), rate(ms), '—', '—'];
    const ratio = ms / base;
    if (ratio > READ_TARGET) misses.push(name);
    return [name, formatNumber(ms, 1), rate(ms), `${formatRatio(ratio)} ${baseName}`, `≤ ${formatRatio(READ_TARGET)} ${met(ratio <= READ_TARGET)}`];
  };
  return [
    markdownTable(
      [`1 GiB file (median of ${ROUNDS})`, 'ms', 'throughput', 'ratio', 'target'],
      [
        ...urls.flatMap(({ version }, v) => [
          row(`ovshift, nfs:// ${version.label}: read() in 1 MiB blocks`, median(read[v]!), cat, 'of nfs-cat'),
          row(`ovshift, nfs:// ${version.label}: cp to tmpfs`, median(copied[v]!), cp, 'of nfs-cp'),
        ]),
        row('nfs-cat (libnfs) to /dev/null, same server', cat, undefined, ''),
        row('nfs-cp (libnfs) to tmpfs, same server', cp, undefined, ''),
      ],
    ),
    '',
    'Lower is better for times. nfs-cat and nfs-cp times include their process start and MOUNT; ovshift read times do ' +
      'not include mounting (cp includes its process start). ' +
      'libnfs here speaks NFSv3 (its tools stop at NFSv4.0, which ovshift does not speak): the fastest other client of ' +
      'this server available on this machine, the yardstick for both versions. ' +
      (misses.length ? `Target missed for: ${misses.join('; ')}.` : 'Target met for every row.'),
  ].join('\n');
}

async function runArea(ctx: BenchContext): Promise<string> {
  const scratch = scratchDir(ctx.cleanup, '/var/tmp', 'ovshift-bench-nfs-');
  const exported = subdir(scratch, 'export');
  ctx.progress(`nfs: writing the exported tree in ${exported}`);
  const treeBytes = makeSmallFiles(subdir(exported, 'tree'), TREE_DIRS, TREE_FILES);
  for (const d of DEPTHS) {
    const path = join(exported, pathAt(d));
    subdir(join(path, '..'));
    writeFileSync(path, `depth ${d}\n`);
  }
  makeFile(join(exported, 'lockfile'), 4096);
  makeFile(join(exported, 'big'), BIG_BYTES);
  await check('sync', []);
  await ctx.workloads.run('readall', exported, MiB);
  const server = await startServer(ctx.cleanup, exported, subdir(scratch, 'nfs-state'));
  const url = (nfsPort: number, nlmPort: number, vers: Version['vers'] = '3'): string =>
    `nfs://127.0.0.1:${nfsPort}${exported}?vers=${vers}&mountport=${server.mountPort}&nlmport=${nlmPort}`;
  const directUrl = url(server.port, server.nlmPort);
  const directUrls = VERSIONS.map((version) => ({ version, url: url(server.port, server.nlmPort, version.vers) }));
  // libnfs's own URL syntax: the ports are query options too.
  const libnfsUrl = (path: string): string => `nfs://127.0.0.1${exported}/${path}?version=3&nfsport=${server.port}&mountport=${server.mountPort}`;

  // One mount whose NFS and NLM calls go through counting proxies (in this process: only
  // asynchronous calls or child processes may drive it).
  ctx.progress('nfs: NFS calls per stat()');
  const nlmCounter = await counter(ctx.cleanup, server.nlmPort);
  const countedScratch = subdir(scratch, 'counted');
  const counted: { version: Version; mnt: string; nfs: RpcCounter; mounted: Mounted }[] = [];
  let statTable: string;
  let lockTable: string;
  try {
    for (const version of VERSIONS) {
      const nfs = await counter(ctx.cleanup, server.port);
      const mounted = await mountOver(ctx, url(nfs.port, nlmCounter.port, version.vers), countedScratch, `mnt-${version.vers}`);
      counted.push({ version, mnt: mounted.dir, nfs, mounted });
    }
    statTable = await statRoundTrips(counted);
    lockTable = await locks(ctx, directUrl, exported, subdir(scratch, 'locks'), { mnt: counted[0]!.mnt, nlm: nlmCounter });
  } finally {
    for (const c of counted) await c.mounted.unmount();
  }

  const treeTable = await treeWorkloads(ctx, exported, directUrls, treeBytes, subdir(scratch, 'tree'));
  const readTable = await sequentialRead(ctx, directUrls, libnfsUrl('big'), subdir(scratch, 'read'));
  const ganesha = (await run('dpkg-query', ['-W', '-f', '${Version}', 'nfs-ganesha'])).stdout.trim();
  const libnfs = (await run('dpkg-query', ['-W', '-f', '${Version}', 'libnfs-utils'])).stdout.trim();
  return [
    '### nfs:// lower (`scripts/bench nfs`)',
    '',
    `One nfs-ganesha ${ganesha || '(version unknown)'} (FSAL VFS, NLM on, server caching off as in the tests) on ` +
      `127.0.0.1 exporting a tree on ext4 serves every table; libnfs-utils ${libnfs || '(version unknown)'}.`,
    '',
    statTable,
    '',
    treeTable,
    '',
    lockTable,
    '',
    readTable,
  ].join('\n');
}

export const nfsArea: BenchArea = {
  name: 'nfs',
  summary: 'ovshift over an nfs:// lower (NFSv3 and NFSv4.1): NFS calls per stat(), tree walk and reads vs a local lower, NLM locks, 1 GiB read vs libnfs',
  run: runArea,
};
