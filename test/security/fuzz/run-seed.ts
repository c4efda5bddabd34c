/**
 * One fuzzer seed, start to end: craft the layers, snapshot them, mount, walk from several
 * processes, check the daemon and what it served, unmount, snapshot again and compare.
 */
import { lstatSync, mkdirSync, mkdtempSync, rmSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { abortConnection, connectionId } from '../../../src/fuse/mount';
import { startDaemon, type Daemon } from '../../helpers/ovshift';
import { run } from '../../helpers/proc';
import { CANARY_NAMES, SMALL, craftScenario, describeScenario, layersOf, mountArgs, originsOf, type Scenario, type TreeSize } from './crafted-layers';
import { checkDaemon, checkServed, compareSnapshots, walkNames, type Facts } from './invariants';
import { snapshotLayers, writeLayers } from './layers-on-disk';
import { outsideInodes } from './outside';
import { Prng } from './prng';
import { rescueAfter } from './rescue';
import { errorCounts, walkMount, type WalkLimits } from './walk';

/** Where the mount puts the lowers' numbers when its private upper is on another filesystem. */
const SECOND_FS_RANGE = 2 ** 48;

export interface SeedOptions {
  size: TreeSize;
  walk: WalkLimits;
  /** Leave the scratch tree (unmounted) for a look afterwards. */
  keep?: boolean;
}

export interface SeedOutcome {
  seed: number;
  root: string;
  scenario: string;
  violations: string[];
  /** The mount was refused with this one-line error (not a violation: crafted layers may be). */
  refused?: string;
  /** Lookups the walkers made. */
  visited: number;
  /** The errors they met, by errno ("EIO 3, ENOENT 1"). */
  errors: string;
  ms: number;
  /** The command that runs this seed again. */
  reproduce: string;
}

export class SeedRun {
  readonly root: string;
  private daemon?: Daemon;

  constructor(
    readonly seed: number,
    private readonly opts: SeedOptions,
  ) {
    this.root = mkdtempSync(join(tmpdir(), 'ovshift-fuzz-'));
  }

  async run(): Promise<SeedOutcome> {
    const start = Date.now();
    const rng = new Prng(this.seed);
    const s = craftScenario(this.seed, rng, this.root, this.opts.size);
    const dirs = layersOf(s).map((l) => l.dir);
    const watched = [...dirs, s.canary.dir];
    mkdirSync(s.mnt);
    if (s.work) mkdirSync(s.work);
    await writeLayers([...layersOf(s), s.canary], join(this.root, 'plan.json'));
    const before = await snapshotLayers(watched);
    const facts: Facts = {
      layers: Object.fromEntries(dirs.map((d) => [d, before[d]!])),
      canaryDir: s.canary.dir,
      canary: before[s.canary.dir]!,
      canaryNames: CANARY_NAMES,
      // Before mounting: the mountpoint's own number is one of these.
      outside: outsideInodes(lstatSync(dirs[0]!).dev, this.root, dirs),
      inoOffsets: s.upper ? [0] : [0, SECOND_FS_RANGE],
      rootFromPrivateUpper: !s.upper,
      origins: originsOf(s),
    };
    const outcome: SeedOutcome = {
      seed: this.seed,
      root: this.root,
      scenario: describeScenario(s),
      violations: [],
      visited: 0,
      errors: 'none',
      ms: 0,
      reproduce: `npm run fuzz -- --seed ${this.seed}${this.opts.size === SMALL ? ' --small' : ''}`,
    };

    this.daemon = await this.mount(s, outcome);
    if (this.daemon) await this.walkAndCheck(s, this.daemon, facts, rng, outcome);

    const after = await snapshotLayers(watched);
    for (const d of watched) outcome.violations.push(...compareSnapshots(d, before[d]!, after[d]!));
    outcome.ms = Date.now() - start;
    return outcome;
  }

  private async mount(s: Scenario, outcome: SeedOutcome): Promise<Daemon | undefined> {
    try {
      return await startDaemon(mountArgs(s), s.mnt);
    } catch (err) {
      const message = (err as Error).message;
      // startDaemon words a daemon that died without its one-line refusal this way.
      if (message.startsWith('ovshift exited')) outcome.violations.push(`the daemon died while mounting: ${message}`);
      else outcome.refused = message;
      return undefined;
    }
  }

  /** Walks the mount, checks the daemon and what it served, and stops it. */
  private async walkAndCheck(s: Scenario, d: Daemon, facts: Facts, rng: Prng, outcome: SeedOutcome): Promise<void> {
    const id = await connectionId(s.mnt);
    const running = (): boolean => d.child.exitCode === null && d.child.signalCode === null;
    let aborted = false;
    const rescue = (what: string) => async (): Promise<void> => {
      outcome.violations.push(`the mount stopped answering (daemon ${running() ? 'still running' : 'gone'}): ${what} blocked in it; FUSE connection aborted`);
      aborted = true;
      if (id !== undefined) await abortConnection(id);
    };
    const walk = await walkMount(s.mnt, walkNames(facts), this.opts.walk, rng, rescue('walkers killed at their time limit stay'));
    outcome.visited = walk.visited;
    outcome.errors = errorCounts(walk.errors);
    const stat = await rescueAfter(run('stat', [s.mnt], { timeoutMs: 5000 }), 8000, rescue('`stat mnt` stays'));
    outcome.violations.push(...walk.failures);
    outcome.violations.push(...checkDaemon({ running: running(), answers: stat.code === 0, aborted, stderr: d.stderr() }));
    outcome.violations.push(...checkServed(facts, walk.seen));
    await d.stop();
    const exit = await d.exited;
    if (!aborted && exit.code !== 0) outcome.violations.push(`the daemon ended with ${exit.code ?? exit.signal}, not with status 0 at SIGTERM`);
  }

  /** Stops the daemon if it still runs, then removes the scratch tree (unless kept). */
  async dispose(): Promise<void> {
    await this.daemon?.stop();
    if (!this.opts.keep) rmSync(this.root, { recursive: true, force: true });
  }
}

/** The lines a failed seed prints: at most `perKind` of each kind of violation. */
export function failureReport(o: SeedOutcome, perKind = 5): string {
  const shown: string[] = [];
  const kinds = new Map<string, number>();
  for (const v of o.violations) {
    // The kind: the violation without the object's path and the numbers and names in it.
    const kind = v.replace(/^mnt\/\S*: /, '').replace(/"[^"]*"|\/tmp\/\S+|\d+/g, '…');
    const n = (kinds.get(kind) ?? 0) + 1;
    kinds.set(kind, n);
    if (n <= perKind) shown.push(`  - ${v}`);
  }
  const hidden = o.violations.length - shown.length;
  if (hidden > 0) shown.push(`  … and ${hidden} more of these kinds`);
  return [
    `seed ${o.seed}: ${o.violations.length} invariant violation(s) (${o.scenario}):`,
    ...shown,
    `reproduce: ${o.reproduce}   (add --keep to keep the layers for a look)`,
  ].join('\n');
}

/** One line on a seed that passed: what it mounted and walked. */
export function summaryLine(o: SeedOutcome): string {
  const what = o.refused ? `mount refused: ${o.refused}` : `${o.visited} lookups, errors: ${o.errors}`;
  return `ok, ${o.scenario}: ${what} (${o.ms} ms)`;
}
