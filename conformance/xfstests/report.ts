/** The comparison a run prints: verdict counts per filesystem and the tests whose verdicts differ. */
import type { Outcome, Verdict } from './run-test';
import type { TargetName } from './targets';

export type Verdicts = Map<string, Map<TargetName, Outcome>>;

const COLUMNS: Verdict[] = ['pass', 'fail', 'not run', 'timeout', 'error'];

function cell(o: Outcome | undefined): string {
  if (!o) return '—';
  const detail = o.detail.replace(/\|/g, '\\|').replace(/\s+/g, ' ').slice(0, 90);
  return o.verdict === 'pass' || !detail ? o.verdict : `${o.verdict}: ${detail}`;
}

export function report(title: string, names: readonly TargetName[], verdicts: Verdicts): string {
  const out: string[] = [`## ${title}`, '', `| | ${COLUMNS.join(' | ')} |`, `|---|${COLUMNS.map(() => '---').join('|')}|`];
  for (const name of names) {
    const counts = COLUMNS.map((v) => [...verdicts.values()].filter((m) => m.get(name)?.verdict === v).length);
    out.push(`| ${name} | ${counts.join(' | ')} |`);
  }
  const differing = [...verdicts.entries()].filter(([, m]) => new Set(names.map((n) => m.get(n)?.verdict)).size > 1);
  out.push('', `### Verdicts that differ (${differing.length} of ${verdicts.size} tests)`, '');
  if (differing.length) {
    out.push(`| test | ${names.join(' | ')} |`, `|---|${names.map(() => '---').join('|')}|`);
    for (const [test, m] of differing) out.push(`| ${test} | ${names.map((n) => cell(m.get(n))).join(' | ')} |`);
  }
  if (names.includes('overlay') && names.includes('ovshift')) {
    const passOnOverlay = [...verdicts.entries()].filter(([, m]) => m.get('overlay')?.verdict === 'pass');
    const failing = passOnOverlay.filter(([, m]) => ['fail', 'timeout', 'error'].includes(m.get('ovshift')?.verdict ?? '')).map(([t]) => t);
    const notRun = passOnOverlay.filter(([, m]) => m.get('ovshift')?.verdict === 'not run').map(([t]) => t);
    out.push('', `Passing on kernel overlayfs, failing on ovshift: ${failing.length ? failing.join(', ') : 'none'}.`);
    out.push(`Passing on kernel overlayfs, not run on ovshift: ${notRun.length ? notRun.join(', ') : 'none'}.`);
  }
  return `${out.join('\n')}\n`;
}
