/**
 * ovshift beside fuse-overlayfs (the baseline of its targets) and kernel overlayfs (the limit it
 * closes on): the subjects, and each table row's comparison cells, wall time and daemon CPU.
 */
import { fuseOverlayfs, kernelOverlayfs, ovshift, type OverlaySubject } from './overlays';
import { formatNumber, formatRatio } from './report';

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
