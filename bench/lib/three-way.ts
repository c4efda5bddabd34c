/**
 * ovshift beside fuse-overlayfs (the baseline of its targets) and kernel overlayfs (the limit it
 * closes on): the subjects, and each table row's comparison cells, wall time and daemon CPU.
 */
import { fuseOverlayfs, kernelOverlayfs, ovshift, type OverlaySubject, type OverlayTimes } from './overlays';
import { formatNumber, formatRatio, markdownTable } from './report';

export const THREE_WAY: readonly OverlaySubject[] = [ovshift(), fuseOverlayfs, kernelOverlayfs];
const [OVSHIFT, FUSE_OVERLAYFS, KERNEL] = [0, 1, 2];

/** Column headers after the workload's, before the targets'. */
export const THREE_WAY_HEADERS = [
  ...THREE_WAY.map((s) => s.name),
  'ovshift ÷ fuse-overlayfs',
  'ovshift ÷ overlayfs',
  'ovshift CPU ms',
  'fuse-overlayfs CPU ms',
  'CPU ÷',
];

/** One workload's medians (wall ms, daemon CPU ms, per subject): its cells and ovshift's ratios to fuse-overlayfs. */
export function threeWayRow(ms: readonly number[], cpu: ReadonlyArray<number | undefined>): { cells: string[]; ratio: number; cpuRatio: number } {
  const ratio = ms[OVSHIFT]! / ms[FUSE_OVERLAYFS]!;
  const cpuRatio = cpu[OVSHIFT]! / cpu[FUSE_OVERLAYFS]!;
  return {
    ratio,
    cpuRatio,
    cells: [
      ...ms.map((m) => formatNumber(m, 1)),
      formatRatio(ratio),
      formatRatio(ms[OVSHIFT]! / ms[KERNEL]!),
      formatNumber(cpu[OVSHIFT]!, 1),
      formatNumber(cpu[FUSE_OVERLAYFS]!, 1),
      formatRatio(cpuRatio),
    ],
  };
}

/** A target's cell. */
export function targetCell(ratio: number, target: number | undefined): string {
  return target === undefined ? '—' : `≤ ${formatRatio(target)} ${ratio <= target ? 'met' : '**missed**'}`;
}

/**
 * An area's report for workloads timed on THREE_WAY with one target for all: its title, the
 * table, what was measured how (`about`), and the workloads that missed the target.
 */
export function threeWayReport(opts: { title: string; names: readonly string[]; times: OverlayTimes; rounds: number; target: number; about: string }): string {
  const misses: string[] = [];
  const rows = opts.names.map((name, i) => {
    const { cells, ratio } = threeWayRow(opts.times.ms[i]!, opts.times.cpuMs[i]!);
    if (ratio > opts.target) misses.push(`${name} (${formatRatio(ratio)})`);
    return [name, ...cells, targetCell(ratio, opts.target)];
  });
  return [
    opts.title,
    '',
    markdownTable([`workload (ms, median of ${opts.rounds})`, ...THREE_WAY_HEADERS, 'target'], rows),
    '',
    opts.about,
    misses.length ? `ovshift misses its target on: ${misses.join('; ')}.` : 'Every ovshift workload meets its target.',
  ].join('\n');
}
