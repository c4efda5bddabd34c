/**
 * xfstests' tests on one filesystem, many to one `./check` (its start-up, and mounting the test
 * filesystem, cost seconds per run), each with a time limit: check runs in a process group of
 * its own; when a test passes its limit the group is killed, whatever it left mounted under the
 * target's mount points is taken down (a FUSE connection aborted first, so a daemon stuck in the
 * test cannot hold the unmount), and the tests after it run in a new `./check`.
 *
 * Verdicts come from check's output: each test's record starts with its name at the start of a
 * line, followed by how it went ("[not run] why", "- output mismatch", "[failed, …]", or its
 * time); the summary at the end ("Ran:", "Not run:", "Failures:") has the last word.
 */
import { spawn } from 'child_process';
import { existsSync, readFileSync } from 'fs';
import { join } from 'path';
import { abortConnection, connectionId } from '../../src/fuse/mount';
import { mountpoints } from '../../bench/lib/mounts';
import { run } from '../../bench/lib/proc';
import type { Suite } from './suite';
import type { Target } from './targets';

export type Verdict = 'pass' | 'fail' | 'not run' | 'timeout' | 'error';

export interface Outcome {
  verdict: Verdict;
  /** check's own line about the test (why it was not run, how it failed), or what went wrong. */
  detail: string;
  seconds: number;
}

const SUMMARY = /^(Ran|Not run|Failures):(.*)$/;

/** How one test's record in check's output reads. */
export function recordVerdict(record: string): { verdict: Verdict; detail: string } {
  const first = record.split('\n')[0]!.trim();
  if (/\[not run\]|\[expunged\]/.test(first)) return { verdict: 'not run', detail: first.replace(/^.*\[not run\]\s*/, '') };
  if (/output mismatch|\[failed|_check_|no qualified output|no such test/.test(record)) return { verdict: 'fail', detail: first };
  return { verdict: 'pass', detail: '' };
}

/** The tests check's summary lines list under each label. */
function summary(output: string): Map<string, Verdict> {
  const v = new Map<string, Verdict>();
  const verdictOf: Record<string, Verdict> = { Ran: 'pass', 'Not run': 'not run', Failures: 'fail' };
  // Ran comes first: the other two override it for the tests they name.
  for (const label of ['Ran', 'Not run', 'Failures']) {
    for (const line of output.split('\n')) {
      const m = SUMMARY.exec(line);
      if (m?.[1] !== label) continue;
      for (const t of m[2]!.trim().split(/\s+/)) if (t) v.set(t, verdictOf[label]!);
    }
  }
  return v;
}

/** Takes down every mount at or below the target's mount points, deepest first. */
export async function clearMounts(target: Target): Promise<void> {
  const roots = target.mountPoints;
  const left = (await mountpoints()).filter((m) => roots.some((r) => m === r || m.startsWith(`${r}/`)));
  for (const dir of left.sort((a, b) => b.length - a.length)) {
    const id = await connectionId(dir);
    if (id !== undefined) await abortConnection(id);
    await run('umount', ['-l', dir]);
  }
}

/**
 * Whether a failed test's output, less the lines the target's mount command always prints, is
 * what the test expects (and the output was all that failed: check wrote no other reason).
 */
function passesWithoutNoise(suite: Suite, target: Target, test: string): boolean {
  if (!target.mountNoise.length) return false;
  const bad = join(target.results, `${test}.out.bad`);
  const expected = join(suite.dir, 'tests', `${test}.out`);
  if (!existsSync(bad) || !existsSync(expected) || existsSync(join(target.results, `${test}.dmesg`))) return false;
  const got = readFileSync(bad, 'utf8')
    .split('\n')
    .filter((l) => !target.mountNoise.includes(l));
  return got.join('\n') === readFileSync(expected, 'utf8');
}

/** Process groups of the ./check runs under way, for killChecks. */
const running = new Set<number>();
/** Set by killChecks: what the killed runs got to is no verdict. */
let stopping = false;

/** Ends every ./check under way and all its test's processes (the run is being stopped). */
export function killChecks(): void {
  stopping = true;
  for (const pid of running) {
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      // gone already
    }
  }
  running.clear();
}

interface TestRecord {
  test: string;
  text: string;
  started: number;
  ended?: number;
}

/** One `./check` over `tests`; returns the outcomes of those it got to (in order). */
async function checkRun(suite: Suite, target: Target, tests: string[], limitSeconds: number): Promise<Map<string, Outcome>> {
  const names = new Set(tests);
  const child = spawn('./check', [...target.checkArgs, ...tests], {
    cwd: suite.dir,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, HOST_OPTIONS: target.config },
  });
  if (child.pid !== undefined) running.add(child.pid);
  let output = '';
  let pending = '';
  const records: TestRecord[] = [];
  /** A test starts when check prints its name, before the rest of its line (its outcome). */
  const started = (line: string): string | undefined => {
    const name = line.split(/\s/)[0]!;
    if (!names.has(name) || records.some((r) => r.test === name)) return undefined;
    const last = records.at(-1);
    if (last && last.ended === undefined) last.ended = Date.now();
    records.push({ test: name, text: '', started: Date.now() });
    return name;
  };
  const onLine = (line: string): void => {
    const name = line.split(/\s/)[0]!;
    const current = records.at(-1);
    if (names.has(name) && (started(line) !== undefined || (current?.test === name && current.text === ''))) {
      records.at(-1)!.text = line.slice(name.length) || ' ';
    } else if (SUMMARY.test(line) || /^(Failed|Passed all) /.test(line)) {
      const last = records.at(-1);
      if (last && last.ended === undefined) last.ended = Date.now();
    } else {
      const last = records.at(-1);
      if (last && last.ended === undefined) last.text += `\n${line}`;
    }
  };
  const onData = (d: Buffer): void => {
    output += d.toString();
    pending += d.toString();
    const lines = pending.split('\n');
    pending = lines.pop()!;
    for (const l of lines) onLine(l);
    started(pending);
  };
  child.stdout.on('data', onData);
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  const killGroup = (): void => {
    try {
      if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
    } catch {
      // the group is gone already
    }
  };
  let timedOut: string | undefined;
  const watchdog = setInterval(() => {
    const current = records.at(-1);
    if (current && current.ended === undefined && Date.now() - current.started > limitSeconds * 1000) {
      timedOut = current.test;
      killGroup();
    }
  }, 1000);
  await new Promise<void>((resolve) => {
    child.on('error', (err) => {
      output += `\n${err.message}`;
      resolve();
    });
    child.on('close', () => resolve());
  });
  clearInterval(watchdog);
  if (pending) onLine(pending);
  // A test's background processes may outlive check.
  killGroup();
  if (child.pid !== undefined) running.delete(child.pid);
  const outcomes = new Map<string, Outcome>();
  const final = summary(output);
  for (const r of records) {
    const seconds = Math.round(((r.ended ?? Date.now()) - r.started) / 1000);
    if (r.test === timedOut) {
      outcomes.set(r.test, { verdict: 'timeout', detail: `killed after ${limitSeconds} s`, seconds });
      break;
    }
    if (r.ended === undefined) break;
    let v = recordVerdict(r.text);
    const said = final.get(r.test);
    if (said && said !== v.verdict) v = { verdict: said, detail: v.detail };
    if (v.verdict === 'fail' && passesWithoutNoise(suite, target, r.test))
      v = { verdict: 'pass', detail: "once the mount command's warnings are taken out of its output" };
    outcomes.set(r.test, { ...v, seconds });
  }
  // check unmounts what it mounted, except where a test was killed, or where unmounting by
  // source name fails (fuse-overlayfs, whose mounts all have one name).
  await clearMounts(target);
  if (!records.length) {
    const last = output
      .split('\n')
      .filter((l) => l.trim() !== '')
      .slice(-2)
      .join(' / ');
    outcomes.set(tests[0]!, { verdict: 'error', detail: `check did not run the test: ${last || 'no output'}`, seconds: 0 });
  }
  return outcomes;
}

/**
 * Runs `tests` on `target`, `batch` to a `./check`, and reports each outcome as it is known;
 * a test check never reached (its run ended early) is tried again in the next run.
 */
export async function runTests(
  suite: Suite,
  target: Target,
  tests: string[],
  opts: { limitSeconds: number; batch: number },
  report: (test: string, o: Outcome) => void,
): Promise<void> {
  let rest = tests;
  while (rest.length) {
    const batch = rest.slice(0, opts.batch);
    const outcomes = await checkRun(suite, target, batch, opts.limitSeconds);
    if (stopping) return;
    for (const [test, o] of outcomes) report(test, o);
    rest = rest.filter((t) => !outcomes.has(t));
    if (rest.length && rest[0] === batch[0]) {
      // Nothing came of the run at all: the first test is the one to blame, and is reported.
      report(rest[0], { verdict: 'error', detail: 'check ended before the test started', seconds: 0 });
      rest = rest.slice(1);
    }
  }
}
