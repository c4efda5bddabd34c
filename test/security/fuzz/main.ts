/**
 * `npm run fuzz -- [--seconds N] [--seed S] [--keep] [--small]`: runs crafted-layer seeds until
 * N seconds have passed (default 60), or the one seed S alone; with both, S, S+1, S+2…
 * Prints a line per seed; exits 1 at the first seed that breaks an invariant, with its seed.
 */
import { randomInt } from 'crypto';
import { NORMAL, SMALL } from './crafted-layers';
import { failureReport, SeedRun, summaryLine } from './run-seed';
import { LONG_WALK, SHORT_WALK } from './walk';

interface Args {
  seconds?: number;
  seed?: number;
  keep: boolean;
  small: boolean;
}

function parseArgs(argv: string[]): Args {
  const args: Args = { keep: false, small: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const value = (): number => {
      const v = Number(argv[++i]);
      if (!Number.isInteger(v) || v < 0) throw new Error(`${a} needs a non-negative integer`);
      return v;
    };
    if (a === '--seconds') args.seconds = value();
    else if (a === '--seed') args.seed = value() >>> 0;
    else if (a === '--keep') args.keep = true;
    else if (a === '--small') args.small = true;
    else throw new Error(`unknown argument ${a} (usage: npm run fuzz -- [--seconds N] [--seed S] [--keep] [--small])`);
  }
  return args;
}

async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2));
  const seconds = args.seconds ?? (args.seed === undefined ? 60 : 0);
  const opts = { size: args.small ? SMALL : NORMAL, walk: args.small ? SHORT_WALK : LONG_WALK, keep: args.keep };
  const start = Date.now();
  let current: SeedRun | undefined;
  let interrupted = false;
  const onSignal = (): void => {
    interrupted = true;
    console.log('interrupted: stopping the mount');
    void current?.dispose().finally(() => process.exit(130));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  let seed = args.seed ?? randomInt(2 ** 32);
  let runs = 0;
  do {
    current = new SeedRun(seed, opts);
    // The seed goes out first: a seed that hangs is still named.
    process.stdout.write(`seed ${seed}: `);
    const outcome = await current.run().finally(() => current!.dispose());
    if (interrupted) return 130;
    runs++;
    if (outcome.violations.length > 0) {
      console.log(`FAILED\n${failureReport(outcome)}`);
      if (args.keep) console.log(`layers kept in ${outcome.root}`);
      return 1;
    }
    console.log(summaryLine(outcome));
    seed = args.seed === undefined ? randomInt(2 ** 32) : (seed + 1) >>> 0;
  } while (Date.now() - start < seconds * 1000);
  console.log(`${runs} seed(s) in ${((Date.now() - start) / 1000).toFixed(1)} s: no invariant broken`);
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err: Error) => {
    console.error(`fuzz: ${err.message}`);
    process.exit(2);
  },
);
