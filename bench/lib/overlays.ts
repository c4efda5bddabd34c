/**
 * Timing workloads on overlay filesystems over one lower tree: each run gets a fresh mount and
 * a fresh upper (on a tmpfs mounted for the purpose), so no filesystem starts with warm dentry
 * or attribute caches or with files already copied up; rounds interleave the filesystems.
 */
import { join, resolve } from 'path';
import type { BenchContext } from '../area';
import type { Cleanup } from './cleanup';
import { median, medianOfRounds } from './measure';
import { mountKernel, mountTmpfs, startFuseDaemon, type Mounted } from './mounts';
import { check, cpuMs } from './proc';
import { mountThroughServer } from './server';
import { removeTree, subdir } from './trees';
import type { WorkloadResult } from './workload';

const OVSHIFT = resolve(__dirname, '..', '..', '..', 'bin', 'ovshift');

export interface OverlayLayers {
  lower: string;
  upper: string;
  work: string;
}

export interface OverlaySubject {
  /** Its column in the tables. */
  name: string;
  mount(cleanup: Cleanup, layers: OverlayLayers, dir: string): Promise<Mounted>;
}

export interface OverlayWorkload {
  name: string;
  /** A command run on the fresh mount before the timed one, untimed (to warm its caches, say). */
  prepare?(mnt: string): Array<string | number>;
  /** The workload command for the mount at `mnt` (see workloads.c). */
  command(mnt: string): Array<string | number>;
  /** Runs and times the work itself instead of `command` (programs other than workloads.c). */
  run?(mnt: string): Promise<WorkloadResult>;
  /** The count the command must report, or the filesystem did not do all the work. */
  expect: number;
}

function layerOptions(layers: OverlayLayers, extra: readonly string[]): string {
  return [`lowerdir=${layers.lower}`, `upperdir=${layers.upper}`, `workdir=${layers.work}`, ...extra].join(',');
}

/**
 * ovshift from this checkout with mount options `options`, as a user runs it: through its mount
 * server (see server.ts); `ownProcess`: a daemon of its own (`bin/ovshift -f`), a child of ours.
 */
export function ovshift(options: readonly string[] = [], name = 'ovshift', ownProcess = false): OverlaySubject {
  return {
    name,
    mount: (cleanup, layers, dir) =>
      ownProcess
        ? startFuseDaemon(cleanup, name, OVSHIFT, ['-f', '-o', layerOptions(layers, options), dir], dir)
        : mountThroughServer(cleanup, name, layerOptions(layers, options), dir),
  };
}

/**
 * The numeric counts `ovshift ctl MNT status` reports for the ovshift mount at `mnt`: nodes,
 * open files and dirs, pending requests (those still unanswered, lock waiters among them).
 */
export async function ovshiftCounts(mnt: string): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  for (const line of (await check(OVSHIFT, ['ctl', mnt, 'status'])).split('\n')) {
    const match = /^(.+) (\d+)$/.exec(line);
    if (match) counts[match[1]!] = Number(match[2]);
  }
  return counts;
}

/** fuse-overlayfs with its default options. */
export const fuseOverlayfs: OverlaySubject = {
  name: 'fuse-overlayfs',
  mount: (cleanup, layers, dir) => startFuseDaemon(cleanup, 'fuse-overlayfs', 'fuse-overlayfs', ['-f', '-o', layerOptions(layers, []), dir], dir),
};

/** Kernel overlayfs with its default options. */
export const kernelOverlayfs: OverlaySubject = {
  name: 'overlayfs',
  mount: (cleanup, layers, dir) => mountKernel(cleanup, 'overlay', 'overlay', dir, layerOptions(layers, [])),
};

/** Medians, [workload][subject]: wall time, and the CPU time of the subject's daemon (none for a kernel filesystem). */
export interface OverlayTimes {
  ms: number[][];
  cpuMs: Array<Array<number | undefined>>;
}

/**
 * Times every workload on every subject, `rounds` times, over the lower tree `lower`; works in
 * `scratch` (not on the lower's filesystem).
 */
export async function timeOnOverlays(
  ctx: BenchContext,
  opts: {
    lower: string;
    scratch: string;
    upperSize: number;
    subjects: readonly OverlaySubject[];
    workloads: readonly OverlayWorkload[];
    rounds: number;
  },
): Promise<OverlayTimes> {
  const { cleanup, workloads: helper } = ctx;
  const upperFs = await mountTmpfs(cleanup, subdir(opts.scratch, 'upper'), `${opts.upperSize}`);
  let runs = 0;
  let cpu: Array<Array<number | undefined>> = [];
  const timeOnce = async (subject: OverlaySubject, workload: OverlayWorkload): Promise<number> => {
    const run = `${++runs}`;
    const layers = { lower: opts.lower, upper: subdir(upperFs.dir, run, 'upper'), work: subdir(upperFs.dir, run, 'work') };
    const mounted = await subject.mount(cleanup, layers, subdir(opts.scratch, `mnt-${run}`));
    let result;
    let cpuUsed: number | undefined;
    try {
      if (workload.prepare) await helper.run(...workload.prepare(mounted.dir));
      const cpuBefore = mounted.pid === undefined ? undefined : await cpuMs(mounted.pid);
      result = workload.run ? await workload.run(mounted.dir) : await helper.run(...workload.command(mounted.dir));
      if (cpuBefore !== undefined) cpuUsed = (await cpuMs(mounted.pid!)) - cpuBefore;
    } finally {
      await mounted.unmount();
      await removeTree(mounted.dir);
      await removeTree(join(upperFs.dir, run));
    }
    if (result.count !== workload.expect) {
      throw new Error(`${subject.name}: ${workload.name}: counted ${result.count}, expected ${workload.expect}`);
    }
    cpu[opts.subjects.indexOf(subject)]!.push(cpuUsed);
    return result.ms;
  };
  const times: OverlayTimes = { ms: [], cpuMs: [] };
  for (const workload of opts.workloads) {
    ctx.progress(workload.name);
    cpu = opts.subjects.map(() => []);
    times.ms.push(await medianOfRounds(opts.subjects, opts.rounds, (subject) => timeOnce(subject, workload)));
    times.cpuMs.push(cpu.map((values) => (values.every((v) => v !== undefined) ? median(values as number[]) : undefined)));
  }
  await upperFs.unmount();
  return times;
}
