/** What a benchmark prints: figures, ratios and Markdown tables (pasted into README as they are). */
import { readFileSync } from 'fs';
import { cpus, loadavg, release } from 'os';
import { resolve } from 'path';
import { run } from './proc';

/** A number with `fractionDigits` decimals, thousands grouped. */
export function formatNumber(value: number, fractionDigits = 0): string {
  return value.toLocaleString('en-US', { minimumFractionDigits: fractionDigits, maximumFractionDigits: fractionDigits });
}

/** Two decimals; below 0.1, two significant digits instead (two decimals would show 0.00×). */
export function formatRatio(value: number): string {
  return `${value > 0 && value < 0.1 ? value.toPrecision(2) : value.toFixed(2)}×`;
}

/** The first column (names) is left-aligned, the others (figures) right-aligned. */
export function markdownTable(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const cell = (text: string, i: number): string => (i === 0 ? text.padEnd(widths[i]!) : text.padStart(widths[i]!));
  const line = (cells: string[]): string => `| ${cells.map(cell).join(' | ')} |`;
  const rule = `|${widths.map((w, i) => (i === 0 ? `:${'-'.repeat(w + 1)}` : `${'-'.repeat(w + 1)}:`)).join('|')}|`;
  return [line(headers), rule, ...rows.map(line)].join('\n');
}

function cpuModel(): string {
  const line = readFileSync('/proc/cpuinfo', 'utf8')
    .split('\n')
    .find((l) => l.startsWith('model name'));
  return line?.split(':')[1]?.trim() ?? cpus()[0]?.model ?? 'unknown CPU';
}

/** The commit of this checkout, marked when the working tree differs from it. */
async function checkoutCommit(): Promise<string> {
  const repo = resolve(__dirname, '..', '..', '..');
  const head = await run('git', ['-C', repo, 'rev-parse', '--short', 'HEAD']);
  if (head.code !== 0) return 'unknown commit';
  const changes = await run('git', ['--no-optional-locks', '-C', repo, 'status', '--porcelain', '--untracked-files=no']);
  return `${head.stdout.trim()}${changes.stdout.trim() ? ' + uncommitted changes' : ''}`;
}

/**
 * One line saying when, where and on what the figures were taken. The load average tells
 * whether something else was running (a shared machine makes ratios noisier).
 */
export async function machineLine(): Promise<string> {
  const date = new Date().toISOString().slice(0, 16).replace('T', ' ');
  return (
    `${date} UTC; Linux ${release()}; ${cpuModel()}, ${cpus().length} cores; Node ${process.version}; ` +
    `ovshift ${await checkoutCommit()}; load average ${loadavg()[0]!.toFixed(2)} at start`
  );
}
