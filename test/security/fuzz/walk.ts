/**
 * Walking a mount from several concurrent processes (walker.py), each in its own order, some
 * by descriptor and some by full path, bounded in objects and time.
 */
import { resolve } from 'path';
import { run } from '../../helpers/proc';
import { PYTHON } from './layers-on-disk';
import type { Prng } from './prng';
import { rescueAfter } from './rescue';

const SCRIPT = resolve(__dirname, '..', '..', '..', '..', 'test', 'security', 'fuzz', 'walker.py');

/** What a walker saw of one object. */
export interface Seen {
  p: string;
  t: string;
  ino: number;
  names?: string[];
  sha?: string;
  target?: string;
  rdev?: [number, number];
  xattrs?: string[];
}

export interface WalkError {
  p: string;
  op: string;
  err: string;
}

export interface WalkResult {
  seen: Seen[];
  errors: WalkError[];
  visited: number;
  /** Walkers that did not end by themselves (killed at the time limit, or crashed), with why. */
  failures: string[];
}

export interface WalkLimits {
  walkers: number;
  maxObjects: number;
  maxDepth: number;
  passes: number;
  seconds: number;
}

export const SHORT_WALK: WalkLimits = { walkers: 3, maxObjects: 300, maxDepth: 6, passes: 2, seconds: 2 };
export const LONG_WALK: WalkLimits = { walkers: 4, maxObjects: 2000, maxDepth: 8, passes: 3, seconds: 6 };

export interface WalkNames {
  /** Names the walkers may enter: the layers' own. */
  enter: string[];
  /** Overlay-private names, only looked up: none may answer. */
  probe: string[];
}

/**
 * Runs the walkers at once. `rescue` is called when a
 * walker killed at its time limit still has not exited: it must unblock the mount.
 */
export async function walkMount(mnt: string, names: WalkNames, limits: WalkLimits, rng: Prng, rescue: () => Promise<void>): Promise<WalkResult> {
  const configs = Array.from({ length: limits.walkers }, (_, i) => ({
    mnt,
    names: names.enter,
    private: names.probe,
    seed: rng.uint32(),
    mode: i % 3 === 2 ? 'path' : 'fd',
    maxObjects: limits.maxObjects,
    maxDepth: limits.maxDepth,
    passes: limits.passes,
    seconds: limits.seconds,
  }));
  // A walker stops itself at `seconds`; one still running well after is stuck in the mount.
  const timeoutMs = limits.seconds * 1000 + 5000;
  const walkers = Promise.all(configs.map((c) => run(PYTHON, [SCRIPT, JSON.stringify(c)], { timeoutMs })));
  const runs = await rescueAfter(walkers, timeoutMs + 3000, rescue);
  const result: WalkResult = { seen: [], errors: [], visited: 0, failures: [] };
  runs.forEach((r, i) => {
    let done = false;
    const lines = r.stdout.split('\n').filter((l) => l);
    for (const line of lines) {
      let obj: Seen | WalkError | { done: true; visited: number };
      try {
        obj = JSON.parse(line) as typeof obj;
      } catch {
        continue; // The line a walker was writing when it was killed.
      }
      if ('done' in obj) {
        done = true;
        result.visited += obj.visited;
      } else if ('err' in obj) result.errors.push(obj);
      else result.seen.push(obj);
    }
    if (!done || r.code !== 0) {
      const how = r.signal === 'SIGKILL' ? `still running ${timeoutMs / 1000} s after it started (stuck in the mount?)` : `exited ${r.code ?? r.signal}`;
      const last = lines.length ? `; its last line: ${lines[lines.length - 1]!.slice(0, 300)}` : '';
      result.failures.push(`walker ${i} (${configs[i]!.mode}) ${how}${last}${r.stderr.trim() ? `; stderr: ${r.stderr.trim().slice(-600)}` : ''}`);
    }
  });
  return result;
}

/** "EIO 3, ENOENT 1" */
export function errorCounts(errors: WalkError[]): string {
  const counts = new Map<string, number>();
  for (const e of errors) counts.set(e.err, (counts.get(e.err) ?? 0) + 1);
  return (
    [...counts]
      .sort((a, b) => b[1] - a[1])
      .map(([err, n]) => `${err} ${n}`)
      .join(', ') || 'none'
  );
}
