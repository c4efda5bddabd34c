/**
 * A short run of the crafted-layer fuzzer (test/security/fuzz/): a few seeds with small trees,
 * fixed ones and fresh random ones (or OVSHIFT_FUZZ_SEED's), each printed with how to run it again. The long run is
 * `npm run fuzz -- --seconds N`.
 */
import assert from 'assert/strict';
import { randomInt } from 'crypto';
import { SMALL } from './fuzz/crafted-layers';
import { failureReport, SeedRun } from './fuzz/run-seed';
import { SHORT_WALK } from './fuzz/walk';

/**
 * Seeds that broke confinement before the fix (f3564c2): 2, a redirect in the upper dir reads
 * the canary; 5, the same with the private upper; 18, a redirect to ".." hangs the mount.
 */
const FIXED_SEEDS = [2, 5, 18];
const RANDOM_SEEDS = 1;

/** OVSHIFT_FUZZ_SEED (decimal or 0x hex) replaces the fresh random seeds with that one. */
function givenSeed(): number | undefined {
  const given = process.env.OVSHIFT_FUZZ_SEED;
  if (given === undefined || given === '') return undefined;
  const n = Number(given);
  if (!Number.isInteger(n) || n < 0 || n >= 2 ** 32) throw new Error(`OVSHIFT_FUZZ_SEED=${given}: not a 32-bit unsigned integer`);
  return n;
}

describe('security: crafted-layer fuzzer (short run)', function () {
  this.timeout(60000);
  let current: SeedRun | undefined;

  afterEach(async () => {
    await current?.dispose();
    current = undefined;
  });

  const given = givenSeed();
  const seeds = [...FIXED_SEEDS, ...(given !== undefined ? [given] : Array.from({ length: RANDOM_SEEDS }, () => randomInt(2 ** 32)))];
  for (const seed of seeds) {
    it(`keeps every invariant for seed ${seed} (npm run fuzz -- --seed ${seed} --small)`, async () => {
      current = new SeedRun(seed, { size: SMALL, walk: SHORT_WALK });
      const outcome = await current.run();
      if (outcome.violations.length > 0) assert.fail(failureReport(outcome));
      assert.ok(outcome.refused !== undefined || outcome.visited > 0, 'the walkers visited the mount');
    });
  }
});
