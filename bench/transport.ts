/**
 * The FUSE transport alone: bench/fuse-transport.c, a minimal C server answering LOOKUP and
 * GETATTR, timed under a stat() loop over each device loop it has (/dev/fuse read and write,
 * sleeping or spinning first as ovshift's loop does; FUSE over io_uring, waiting or spinning).
 * What it decides: whether ovshift's device loop should move to io_uring on this machine.
 * io_uring needs the fuse module's enable_uring parameter: set for each io_uring run and put
 * back at once, also when the run fails.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'fs';
import { tmpdir } from 'os';
import { join, resolve } from 'path';
import type { BenchArea, BenchContext } from './area';
import type { Cleanup } from './lib/cleanup';
import { median } from './lib/measure';
import { startFuseDaemon } from './lib/mounts';
import { check, cpuMs } from './lib/proc';
import { formatNumber, formatRatio, markdownTable } from './lib/report';
import { scratchDir, subdir } from './lib/trees';

const SOURCE = resolve(__dirname, '..', '..', 'bench', 'fuse-transport.c');
const ENABLE_URING = '/sys/module/fuse/parameters/enable_uring';
const ROUNDS = 5;
const WARM_CALLS = 2_000;
const STAT_CALLS = 100_000;

interface Transport {
  mode: string;
  what: string;
  uring: boolean;
}

const TRANSPORTS: readonly Transport[] = [
  { mode: 'dev-spin', what: '/dev/fuse, reads for 50 µs, then sleeps (ovshift today)', uring: false },
  { mode: 'dev-block', what: '/dev/fuse, read sleeps', uring: false },
  { mode: 'uring-spin', what: 'io_uring, spin 50 µs on completions then wait', uring: true },
  { mode: 'uring-wait', what: 'io_uring, commit and wait in one call', uring: true },
];

/** Sets enable_uring for the duration of `work`, then puts the old value back. */
async function withUring<T>(cleanup: Cleanup, work: () => Promise<T>): Promise<T> {
  const before = readFileSync(ENABLE_URING, 'utf8').trim();
  const restore = cleanup.add(`fuse.enable_uring back to ${before}`, () => writeFileSync(ENABLE_URING, before));
  writeFileSync(ENABLE_URING, 'Y');
  try {
    return await work();
  } finally {
    await restore();
  }
}

function uringAvailable(): string | undefined {
  try {
    readFileSync(ENABLE_URING);
    return undefined;
  } catch {
    return `this kernel has no ${ENABLE_URING} (no FUSE over io_uring)`;
  }
}

async function run(ctx: BenchContext): Promise<string> {
  const { cleanup, workloads } = ctx;
  const bin = mkdtempSync(join(tmpdir(), 'ovshift-bench-transport-'));
  cleanup.add(`helper dir ${bin}`, () => rmSync(bin, { recursive: true, force: true }));
  const server = join(bin, 'fuse-transport');
  await check('gcc', ['-O2', '-Wall', '-Werror', '-o', server, SOURCE, '-luring']);
  const scratch = scratchDir(cleanup, '/tmp', 'ovshift-bench-transport-');
  const noUring = uringAvailable();
  const measured = TRANSPORTS.filter((t) => !t.uring || noUring === undefined);

  /** One run: a fresh mount, a warm-up, then the timed loop; µs per stat() and daemon CPU µs per stat(). */
  const once = async (t: Transport, round: number): Promise<{ us: number; cpuUs: number }> => {
    const mounted = await startFuseDaemon(
      cleanup,
      `fuse-transport ${t.mode}`,
      server,
      [subdir(scratch, `${t.mode}-${round}`), t.mode],
      join(scratch, `${t.mode}-${round}`),
    );
    try {
      const file = join(mounted.dir, 'f');
      await workloads.run('stat', WARM_CALLS, file);
      const cpuBefore = await cpuMs(mounted.pid!);
      const r = await workloads.run('stat', STAT_CALLS, file);
      const cpuUsed = (await cpuMs(mounted.pid!)) - cpuBefore;
      return { us: (r.ms * 1000) / r.count, cpuUs: (cpuUsed * 1000) / r.count };
    } finally {
      await mounted.unmount();
    }
  };
  const results = new Map<string, Array<{ us: number; cpuUs: number }>>();
  for (let round = 0; round < ROUNDS; round++) {
    for (const t of measured) {
      ctx.progress(`transport: ${t.mode}, round ${round + 1} of ${ROUNDS}`);
      const r = t.uring ? await withUring(cleanup, () => once(t, round)) : await once(t, round);
      results.set(t.mode, [...(results.get(t.mode) ?? []), r]);
    }
  }
  const medians = new Map(
    measured.map((t) => [t.mode, { us: median(results.get(t.mode)!.map((r) => r.us)), cpuUs: median(results.get(t.mode)!.map((r) => r.cpuUs)) }]),
  );
  const base = medians.get('dev-spin')!;
  const rows = measured.map((t) => {
    const m = medians.get(t.mode)!;
    return [t.what, formatNumber(m.us, 1), formatNumber(m.cpuUs, 1), formatRatio(m.us / base.us), formatRatio(m.cpuUs / base.cpuUs)];
  });
  return [
    '### The FUSE transport alone (`scripts/bench transport`)',
    '',
    markdownTable([`device loop (median of ${ROUNDS})`, 'µs per stat()', 'server CPU µs per stat()', 'time ÷ today', 'CPU ÷ today'], rows),
    '',
    `Lower is better. A minimal C server (bench/fuse-transport.c) answers LOOKUP and GETATTR with 0 s timeouts; ` +
      `${formatNumber(STAT_CALLS)} stat() calls of one file, each a LOOKUP and a GETATTR round trip. ` +
      (noUring ?? 'io_uring runs set fuse.enable_uring for themselves and restore it; one queue per CPU, 2 entries each.'),
  ].join('\n');
}

export const transportArea: BenchArea = {
  name: 'transport',
  summary: 'the FUSE transport alone: /dev/fuse vs FUSE over io_uring, a minimal C server under a stat() loop',
  run,
};
