/**
 * One xfstests test on one filesystem, with a time limit: `./check TEST` in a process group
 * of its own, killed whole when the limit passes, after which whatever it left mounted under
 * the target's mount points is taken down (a FUSE connection aborted first, so a daemon stuck
 * in the test cannot hold the unmount).
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

/** Reads the verdict from check's summary lines ("Ran:", "Not run:", "Failures:"). */
export function verdictOf(test: string, output: string): { verdict: Verdict; detail: string } {
  const lines = output.split('\n');
  const listed = (label: string): boolean =>
    lines.some(
      (l) =>
        l.startsWith(`${label}:`) &&
        l
          .slice(label.length + 1)
          .trim()
          .split(/\s+/)
          .includes(test),
    );
  const own =
    lines
      .find((l) => l.startsWith(`${test} `))
      ?.slice(test.length)
      .trim() ?? '';
  if (listed('Failures')) return { verdict: 'fail', detail: own };
  if (listed('Not run')) return { verdict: 'not run', detail: own.replace(/^\[not run\]\s*/, '') };
  if (listed('Ran')) return { verdict: 'pass', detail: own };
  const last = lines
    .filter((l) => l.trim() !== '')
    .slice(-2)
    .join(' / ');
  return { verdict: 'error', detail: `check did not run the test: ${last || 'no output'}` };
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

export async function runTest(suite: Suite, target: Target, test: string, limitSeconds: number): Promise<Outcome> {
  const start = Date.now();
  const child = spawn('./check', [...target.checkArgs, test], {
    cwd: suite.dir,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, HOST_OPTIONS: target.config },
  });
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  let timedOut = false;
  const killGroup = (): void => {
    try {
      if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
    } catch {
      // the group is gone already
    }
  };
  const timer = setTimeout(() => {
    timedOut = true;
    killGroup();
  }, limitSeconds * 1000);
  const code = await new Promise<number | null>((resolve) => {
    child.on('error', (err) => {
      output += `\n${err.message}`;
      resolve(null);
    });
    child.on('close', (c) => resolve(c));
  });
  clearTimeout(timer);
  // A test's background processes may outlive check.
  killGroup();
  const seconds = Math.round((Date.now() - start) / 1000);
  if (timedOut) {
    await clearMounts(target);
    return { verdict: 'timeout', detail: `killed after ${limitSeconds} s`, seconds };
  }
  let v = verdictOf(test, output);
  if (v.verdict === 'error') await clearMounts(target);
  if (v.verdict === 'fail' && passesWithoutNoise(suite, target, test))
    v = { verdict: 'pass', detail: "once the mount command's warnings are taken out of its output" };
  return { ...v, detail: v.verdict === 'error' && code !== 0 ? `${v.detail} (exit ${code})` : v.detail, seconds };
}
