/**
 * xfstests' own load generators (ltp/fsx, ltp/fsstress), built for this run from a checkout
 * the user fetched and names in XFSTESTS: the checkout is copied to a scratch directory and
 * built there, so nothing of it is kept, committed or changed.
 */
import { existsSync } from 'fs';
import { join } from 'path';
import type { Cleanup } from './cleanup';
import { check, run } from './proc';
import { scratchDir } from './trees';

export const XFSTESTS_VARIABLE = 'XFSTESTS';

export interface XfstestsTools {
  fsx: string;
  fsstress: string;
  /** The checkout's commit (or "unknown" when it is not a git checkout). */
  commit: string;
}

/** The checkout XFSTESTS names, or why there is none to use. */
export function xfstestsCheckout(): { dir: string } | { missing: string } {
  const dir = process.env[XFSTESTS_VARIABLE];
  if (!dir) return { missing: `${XFSTESTS_VARIABLE} is not set (an xfstests checkout, e.g. of kdave/xfstests)` };
  if (!existsSync(join(dir, 'ltp', 'fsx.c'))) return { missing: `${XFSTESTS_VARIABLE}=${dir} has no ltp/fsx.c: not an xfstests checkout` };
  return { dir };
}

/** Builds fsx and fsstress from `checkout` in a scratch copy (removed at cleanup). */
export async function buildXfstestsTools(cleanup: Cleanup, checkout: string): Promise<XfstestsTools> {
  const commit = await run('git', ['-C', checkout, 'rev-parse', 'HEAD']);
  const build = scratchDir(cleanup, '/var/tmp', 'ovshift-bench-xfstests-');
  await check('cp', ['-a', `${checkout}/.`, build]);
  const make = (...targets: string[]): Promise<string> => check('make', ['-C', build, '-j2', ...targets], { timeoutMs: 900_000 });
  // Its configure runs as part of this target; the libraries come before the tools.
  await make('include/builddefs');
  await make('include', 'lib');
  await make('ltp');
  return {
    fsx: join(build, 'ltp', 'fsx'),
    fsstress: join(build, 'ltp', 'fsstress'),
    commit: commit.code === 0 ? commit.stdout.trim().slice(0, 12) : 'unknown',
  };
}
