/**
 * scripts/xfstests: runs xfstests (a checkout the user fetched) on ovshift, fuse-overlayfs and
 * kernel overlayfs side by side, test by test, and prints one comparison table. See usage().
 */
import { appendFileSync, existsSync, readdirSync, readFileSync } from 'fs';
import { resolve } from 'path';
import { Cleanup } from '../../bench/lib/cleanup';
import { check } from '../../bench/lib/proc';
import { scratchDir, subdir } from '../../bench/lib/trees';
import { loopFs, mountDevice, ovshiftCommand, suiteUsers, type BaseFs } from './machine';
import { report, type Verdicts } from './report';
import { clearMounts, killChecks, runTests, type Outcome } from './run-test';
import { notACheckout, prepareSuite, type Suite } from './suite';
import { makeTargets, TARGET_NAMES, type Target, type TargetName } from './targets';

/** Tests per ./check run (see runTests). */
const BATCH = 20;

function usage(): string {
  return `usage: scripts/xfstests [options] CHECKOUT [TEST...]
  TEST is a test (generic/120) or a directory of tests (generic: every test in tests/generic;
  no -g group has them all, -g generic/auto leaves out a dozen).
  Runs xfstests from CHECKOUT (e.g. a clone of kdave/xfstests; never changed: it is copied,
  patched and built in the run's directory) on each filesystem, test by test, and prints a
  Markdown table of the verdicts to stdout (progress goes to stderr). Needs root.
  -g GROUP        a group to run, as ./check -g takes it (default generic/quick); repeatable
  --fs LIST       filesystems, comma-separated (default ${TARGET_NAMES.join(',')})
  --limit S       seconds a test may take on one filesystem before it is killed (default 600)
  --verdicts F    appends each verdict to F (JSON lines); tests already in F are not run again
  --work DIR      where the run's files go (default a new directory in /var/tmp, removed after)
  --base xfs|ext4 the filesystem the layers live on (default xfs: xfstests expects 64 KiB
                  xattr values and 1,000 xattrs a file of FSTYP=fuse, which ext4 cannot hold)
`;
}

interface Args {
  checkout: string;
  groups: string[];
  tests: string[];
  targets: TargetName[];
  limit: number;
  verdictsFile?: string;
  work?: string;
  base: BaseFs;
}

function parseArgs(argv: string[]): Args {
  const a: Args = { checkout: '', groups: [], tests: [], targets: [...TARGET_NAMES], limit: 600, base: 'xfs' };
  const value = (i: number): string => {
    const v = argv[i + 1];
    if (v === undefined) throw new Error(`${argv[i]} needs a value`);
    return v;
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '-h' || arg === '--help') {
      process.stdout.write(usage());
      process.exit(0);
    } else if (arg === '-g') a.groups.push(value(i++));
    else if (arg === '--fs') {
      const names = value(i++).split(',');
      const bad = names.find((n) => !(TARGET_NAMES as readonly string[]).includes(n));
      if (bad) throw new Error(`--fs: unknown filesystem ${bad} (known: ${TARGET_NAMES.join(', ')})`);
      a.targets = names as TargetName[];
    } else if (arg === '--limit') {
      a.limit = Number(value(i++));
      if (!(a.limit > 0)) throw new Error(`--limit: ${argv[i]} is not a number of seconds`);
    } else if (arg === '--verdicts') a.verdictsFile = resolve(value(i++));
    else if (arg === '--work') a.work = resolve(value(i++));
    else if (arg === '--base') {
      const base = value(i++);
      if (base !== 'xfs' && base !== 'ext4') throw new Error(`--base: ${base} is neither xfs nor ext4`);
      a.base = base;
    } else if (arg.startsWith('-')) throw new Error(`unknown option ${arg}`);
    else if (!a.checkout) a.checkout = resolve(arg);
    else a.tests.push(arg);
  }
  if (!a.checkout) throw new Error('no xfstests checkout named');
  if (!a.groups.length && !a.tests.length) a.groups.push('generic/quick');
  return a;
}

/** The tests the groups and names select, in check's order. */
async function selectTests(suite: Suite, target: Target, a: Args): Promise<string[]> {
  const tests = a.tests.flatMap((t) => testsIn(suite, t) ?? [t]);
  const args = ['-n', ...target.checkArgs, ...a.groups.flatMap((g) => ['-g', g]), ...tests];
  // Minutes on a busy machine for a long list (two minutes did not do for 180 tests beside another lane).
  const out = await check('./check', args, { timeoutMs: 900_000, cwd: suite.dir, env: { ...process.env, HOST_OPTIONS: target.config } });
  return out
    .split('\n')
    .filter((l) => /^[a-z0-9-]+\/\d+$/.test(l.trim()))
    .map((l) => l.trim());
}

/** Every test in directory `name` of the suite's tests/ (generic/001, …), or undefined if none. */
function testsIn(suite: Suite, name: string): string[] | undefined {
  const dir = `${suite.dir}/tests/${name}`;
  if (!/^[a-z0-9-]+$/.test(name) || !existsSync(dir)) return undefined;
  return readdirSync(dir)
    .filter((f) => /^\d+$/.test(f))
    .sort()
    .map((f) => `${name}/${f}`);
}

function loadVerdicts(file: string | undefined): Verdicts {
  const v: Verdicts = new Map();
  if (!file || !existsSync(file)) return v;
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    if (!line.trim()) continue;
    const r = JSON.parse(line) as { test: string; fs: TargetName } & Outcome;
    if (!v.has(r.test)) v.set(r.test, new Map());
    v.get(r.test)!.set(r.fs, { verdict: r.verdict, detail: r.detail, seconds: r.seconds });
  }
  return v;
}

async function main(): Promise<void> {
  const a = parseArgs(process.argv.slice(2));
  const bad = notACheckout(a.checkout);
  if (bad) throw new Error(bad);
  if (process.getuid?.() !== 0) throw new Error('xfstests mounts filesystems and creates users: run it as root');
  const progress = (line: string): boolean => process.stderr.write(`xfstests: ${line}\n`);
  const cleanup = new Cleanup();
  cleanup.onSignals();
  try {
    const work = a.work ? subdir(a.work) : scratchDir(cleanup, '/var/tmp', 'ovshift-xfstests-');
    const suite = await prepareSuite(a.checkout, subdir(work, 'src'), progress);
    if (a.targets.includes('ovshift')) ovshiftCommand(cleanup, resolve(__dirname, '../../..'));
    await suiteUsers(cleanup);
    const fuseBase = subdir(work, 'base');
    await mountDevice(cleanup, await loopFs(cleanup, `${work}/fuse.img`, '24G', a.base), fuseBase);
    const overlay = a.targets.includes('overlay');
    const targets = makeTargets(a.targets, {
      work,
      fuseBase,
      overlayTestDevice: overlay ? await loopFs(cleanup, `${work}/overlay-test.img`, '12G', a.base) : '',
      overlayScratchDevice: overlay ? await loopFs(cleanup, `${work}/overlay-scratch.img`, '12G', a.base) : '',
      baseFs: a.base,
    });
    // ./check -n mounts the test filesystem too, and a run may be stopped mid-test.
    cleanup.add('mounts left under the mount points', async () => {
      for (const t of targets) await clearMounts(t);
    });
    // Runs first when the run is stopped (steps run newest first): before the unmounts.
    cleanup.add('running ./check processes', killChecks);
    const tests = await selectTests(suite, targets.find((t) => t.name !== 'overlay') ?? targets[0]!, a);
    const verdicts = loadVerdicts(a.verdictsFile);
    progress(`${tests.length} tests on ${a.targets.join(', ')} side by side, at most ${a.limit} s each`);
    for (const test of tests) if (!verdicts.has(test)) verdicts.set(test, new Map());
    // One lane per filesystem, side by side (each mostly waits: on its disk, its daemon, sleeps).
    await Promise.all(
      targets.map((t) => {
        const todo = tests.filter((test) => !verdicts.get(test)!.has(t.name));
        let done = tests.length - todo.length;
        return runTests(suite, t, todo, { limitSeconds: a.limit, batch: BATCH }, (test, o) => {
          verdicts.get(test)!.set(t.name, o);
          if (a.verdictsFile) appendFileSync(a.verdictsFile, `${JSON.stringify({ test, fs: t.name, ...o })}\n`);
          progress(`${t.name} [${++done}/${tests.length}] ${test} ${o.verdict} ${o.seconds}s${o.verdict === 'pass' ? '' : `: ${o.detail.slice(0, 100)}`}`);
        });
      }),
    );
    const selected: Verdicts = new Map(tests.map((t) => [t, verdicts.get(t)!]));
    const date = new Date().toISOString().slice(0, 10);
    const named = a.tests.length > 8 ? [`${a.tests.length} tests named, ${a.tests[0]} to ${a.tests[a.tests.length - 1]}`] : a.tests;
    const what = [...a.groups.map((g) => `-g ${g}`), ...named].join(' ');
    process.stdout.write(report(`xfstests ${what}, commit ${suite.commit}, ${date}, layers on ${a.base}, limit ${a.limit} s per test`, a.targets, selected));
  } finally {
    await cleanup.runAll();
  }
}

main().catch((err: Error) => {
  process.stderr.write(`xfstests: ${err.message}\n`);
  process.exit(1);
});
