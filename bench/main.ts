/**
 * `scripts/bench [AREA…]`: runs the benchmark areas named (all by default) and prints their
 * reports in Markdown on stdout, progress on stderr. Whatever an area mounts or creates is
 * undone at the end, also when it fails or the run is interrupted.
 */
import type { BenchArea } from './area';
import { containersArea } from './containers';
import { fsxArea } from './fsx';
import { fuseArea } from './fuse';
import { Cleanup } from './lib/cleanup';
import { machineLine } from './lib/report';
import { Workloads } from './lib/workload';
import { locksArea } from './locks';
import { nfsArea } from './nfs';
import { overlayArea } from './overlay';
import { realrootArea } from './realroot';
import { revalidateArea } from './revalidate';
import { transportArea } from './transport';

const AREAS: readonly BenchArea[] = [fuseArea, transportArea, overlayArea, realrootArea, fsxArea, nfsArea, revalidateArea, locksArea, containersArea];

function usage(): string {
  return ['usage: scripts/bench [AREA…]   (all areas when none is named; needs root)', ...AREAS.map((a) => `  ${a.name.padEnd(10)} ${a.summary}`), ''].join(
    '\n',
  );
}

async function main(argv: string[]): Promise<number> {
  if (argv.includes('-h') || argv.includes('--help')) {
    process.stdout.write(usage());
    return 0;
  }
  const unknown = argv.filter((name) => !AREAS.some((a) => a.name === name));
  if (unknown.length) {
    process.stderr.write(`bench: unknown area ${unknown.join(', ')}\n${usage()}`);
    return 2;
  }
  if (process.geteuid?.() !== 0) {
    process.stderr.write('bench: the benchmarks mount filesystems and need root\n');
    return 1;
  }
  const areas = argv.length ? AREAS.filter((a) => argv.includes(a.name)) : AREAS;
  const cleanup = new Cleanup();
  cleanup.onSignals();
  try {
    const workloads = await Workloads.build(cleanup);
    const progress = (message: string): void => void process.stderr.write(`bench: ${message}\n`);
    process.stdout.write(`Measured ${await machineLine()}.\n`);
    for (const area of areas) {
      const scope = cleanup.scope(`area ${area.name}`);
      try {
        process.stdout.write(`\n${await area.run({ cleanup: scope, workloads, progress })}\n`);
      } finally {
        await scope.runAll();
      }
    }
    return 0;
  } catch (err) {
    process.stderr.write(`bench: ${(err as Error).stack ?? err}\n`);
    return 1;
  } finally {
    await cleanup.runAll();
  }
}

void main(process.argv.slice(2)).then((status) => process.exit(status));
