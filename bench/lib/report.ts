/** What a benchmark prints: figures, ratios and Markdown tables (pasted into README as they are). */
import { readFileSync } from 'fs';
import { cpus, release } from 'os';

/** A number with `fractionDigits` decimals, thousands grouped. */
export function formatNumber(value: number, fractionDigits = 0): string {
  return value.toLocaleString('en-US', { minimumFractionDigits: fractionDigits, maximumFractionDigits: fractionDigits });
}

export function formatRatio(value: number): string {
  return `${value.toFixed(2)}×`;
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
  const line = readFileSync('/proc/cpuinfo', 'utf8').split('\n').find((l) => l.startsWith('model name'));
  return line?.split(':')[1]?.trim() ?? cpus()[0]?.model ?? 'unknown CPU';
}

/** One line saying when and where the figures were taken. */
export function machineLine(): string {
  const date = new Date().toISOString().slice(0, 16).replace('T', ' ');
  return `${date} UTC, Linux ${release()}, ${cpuModel()}, ${cpus().length} cores, Node ${process.version}`;
}
