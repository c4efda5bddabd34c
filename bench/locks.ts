/**
 * Locks through ovshift: uncontended lock + unlock round trips next to the same on a plain
 * tmpfs file; and whether a long queue of lock waiters slows everyone else's requests: stat()
 * latency while 1,000 waiters are queued in the daemon, next to the same with none.
 */
import { join } from 'path';
import type { BenchArea, BenchContext } from './area';
import { median, medianOfRounds } from './lib/measure';
import { mountTmpfs } from './lib/mounts';
import { ovshift, ovshiftCounts, type OverlayLayers } from './lib/overlays';
import { sleep } from './lib/proc';
import { formatNumber, formatRatio, markdownTable } from './lib/report';
import { makeFile, MiB, scratchDir, subdir } from './lib/trees';
import type { RunningWorkload } from './lib/workload';

const ROUNDS = 3;
const CYCLES = 20_000;
const WAITERS = 1_000;
const STAT_CALLS = 20_000;
const LATENCY_TARGET = 1.2;
const QUEUE_TIMEOUT_MS = 60_000;

const LOCK_KINDS = [
  { kind: 'posix', name: 'fcntl F_SETLK write lock + unlock (POSIX)' },
  { kind: 'ofd', name: 'fcntl F_OFD_SETLK write lock + unlock (OFD)' },
  { kind: 'flock', name: 'flock LOCK_EX|LOCK_NB + LOCK_UN' },
];

async function lockRoundTrips(ctx: BenchContext, ovshiftFile: string, tmpfsFile: string): Promise<string> {
  const rows: string[][] = [];
  for (const { kind, name } of LOCK_KINDS) {
    ctx.progress(`locks: ${name}`);
    const [ours, plain] = await medianOfRounds([ovshiftFile, tmpfsFile], ROUNDS, async (file) => {
      const r = await ctx.workloads.run('lock-cycle', kind, CYCLES, file);
      if (r.count !== CYCLES) throw new Error(`locks: ${name}: ${r.count} of ${CYCLES} cycles on ${file}`);
      return r.count / (r.ms / 1000);
    });
    rows.push([name, `${formatNumber(ours!)}/s`, `${formatNumber(plain!)}/s`, formatRatio(ours! / plain!)]);
  }
  return markdownTable([`lock + unlock pairs, ${formatNumber(CYCLES)} per run (median of ${ROUNDS})`, 'ovshift', 'tmpfs', 'ovshift ÷ tmpfs'], rows);
}

interface StatLatency {
  medianUs: number;
  meanUs: number;
  p99Us: number;
}

async function statLatency(ctx: BenchContext, path: string): Promise<StatLatency> {
  const r = await ctx.workloads.run('stat-latency', STAT_CALLS, path);
  if (r.count !== STAT_CALLS || !r.latencyNs) throw new Error(`locks: stat-latency on ${path}: ${r.count} of ${STAT_CALLS} calls`);
  return { medianUs: r.latencyNs.median / 1000, meanUs: (r.ms * 1000) / r.count, p99Us: r.latencyNs.p99 / 1000 };
}

/**
 * Holds a lock on `file` with WAITERS waiting for it; resolves once the daemon serving `mnt`
 * has them all pending. OFD locks from threads of one process: POSIX locks of one process's
 * threads share an owner and would not conflict, and 1,000 processes would weigh far more.
 */
async function queueWaiters(ctx: BenchContext, mnt: string, file: string): Promise<RunningWorkload> {
  const waiters = ctx.workloads.start(ctx.cleanup, 'lock-waiters', WAITERS, file);
  await waiters.untilLine('holding', QUEUE_TIMEOUT_MS);
  const deadline = Date.now() + QUEUE_TIMEOUT_MS;
  for (;;) {
    const pending = (await ovshiftCounts(mnt))['pending'] ?? 0;
    if (pending >= WAITERS) return waiters;
    if (Date.now() > deadline) throw new Error(`locks: only ${pending} of ${WAITERS} lock waiters pending after ${QUEUE_TIMEOUT_MS / 1000} s`);
    await sleep(100);
  }
}

/** Releases the lock; resolves with the ms until every waiter had taken it and let it go. */
async function releaseWaiters(waiters: RunningWorkload): Promise<number> {
  waiters.cue('release');
  const r = await waiters.result();
  if (r.count !== WAITERS) throw new Error(`locks: only ${r.count} of ${WAITERS} waiters were granted the lock`);
  return r.ms;
}

async function statWithWaiters(ctx: BenchContext, mnt: string): Promise<string> {
  const statTarget = join(mnt, 'stat-target');
  const idle: StatLatency[] = [];
  const queued: StatLatency[] = [];
  const drainMs: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    ctx.progress(`locks: stat() latency, no waiters and ${formatNumber(WAITERS)} queued, round ${round + 1} of ${ROUNDS}`);
    idle.push(await statLatency(ctx, statTarget));
    const waiters = await queueWaiters(ctx, mnt, join(mnt, 'locked'));
    queued.push(await statLatency(ctx, statTarget));
    drainMs.push(await releaseWaiters(waiters));
  }
  const rows = (['medianUs', 'meanUs', 'p99Us'] as const).map((key) => {
    const without = median(idle.map((l) => l[key]));
    const withWaiters = median(queued.map((l) => l[key]));
    const ratio = withWaiters / without;
    const target = key === 'p99Us' ? '—' : `≤ ${formatRatio(LATENCY_TARGET)} ${ratio <= LATENCY_TARGET ? 'met' : '**missed**'}`;
    const label = { medianUs: 'median', meanUs: 'mean', p99Us: '99th percentile' }[key];
    return [label, formatNumber(without, 1), formatNumber(withWaiters, 1), formatRatio(ratio), target];
  });
  return [
    markdownTable(
      [
        `stat() of a lower file, ${formatNumber(STAT_CALLS)} per run (µs per call, median of ${ROUNDS} runs)`,
        'no waiters',
        `${formatNumber(WAITERS)} waiters queued`,
        'queued ÷ none',
        'target',
      ],
      rows,
    ),
    '',
    `Lower is better. The mount has lower_timeout=0 and watch=off, so every stat() reaches the daemon (LOOKUP and GETATTR). ` +
      `One process holds an OFD write lock on another file of the mount while ${formatNumber(WAITERS)} of its threads, ` +
      'each with an open file description of its own, wait for it in F_OFD_SETLKW; the stat() calls (from another process) ' +
      `start once \`ovshift ctl MNT status\` counts ${formatNumber(WAITERS)} requests pending. On release every waiter ` +
      `took the lock and let it go in turn, the last ${formatNumber(median(drainMs), 1)} ms after release (median).`,
  ].join('\n');
}

async function run(ctx: BenchContext): Promise<string> {
  const scratch = scratchDir(ctx.cleanup, '/var/tmp', 'ovshift-bench-locks-');
  const lower = subdir(scratch, 'lower');
  makeFile(join(lower, 'stat-target'), 4096);
  const tmpfs = await mountTmpfs(ctx.cleanup, subdir(scratch, 'tmpfs'), `${64 * MiB}`);
  const layers = (name: string): OverlayLayers => ({ lower, upper: subdir(tmpfs.dir, name, 'upper'), work: subdir(tmpfs.dir, name, 'work') });
  const plain = subdir(tmpfs.dir, 'plain');

  const forLocks = await ovshift().mount(ctx.cleanup, layers('locks'), subdir(scratch, 'mnt-locks'));
  // The lock files are created through the mount, so they live in the upper (as on the tmpfs).
  const roundTrips = await lockRoundTrips(ctx, join(forLocks.dir, 'lock-cycle'), join(plain, 'lock-cycle'));
  await forLocks.unmount();

  const forLatency = await ovshift(['lower_timeout=0', 'watch=off']).mount(ctx.cleanup, layers('latency'), subdir(scratch, 'mnt-latency'));
  const latency = await statWithWaiters(ctx, forLatency.dir);
  await forLatency.unmount();
  await tmpfs.unmount();

  return [
    '### Locks (`scripts/bench locks`)',
    '',
    roundTrips,
    '',
    'Higher is better. One process, one open file, each lock and unlock a call of its own, never contended; ovshift with ' +
      'default options (locks=lower: each lock is also taken on the file underneath), its upper and the plain file on tmpfs.',
    '',
    latency,
  ].join('\n');
}

export const locksArea: BenchArea = {
  name: 'locks',
  summary: 'lock + unlock round trips through ovshift vs tmpfs (ratio), stat() latency with 1,000 lock waiters queued',
  run,
};
