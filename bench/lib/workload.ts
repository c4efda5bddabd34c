/**
 * The workload helper: bench/workloads.c, compiled with gcc into a temp dir for this run (no
 * binary is ever kept), and run as a child process that times its own work.
 */
import { mkdtempSync, rmSync } from 'fs';
import { tmpdir } from 'os';
import { join, resolve } from 'path';
import type { Cleanup } from './cleanup';
import { check } from './proc';

const SOURCE = resolve(__dirname, '..', '..', '..', 'bench', 'workloads.c');

export interface WorkloadResult {
  /** Time the work itself took, in milliseconds (process start and setup excluded). */
  ms: number;
  /** What the command counts: calls, entries or bytes (see workloads.c). */
  count: number;
}

export class Workloads {
  private constructor(private readonly binary: string) {}

  static async build(cleanup: Cleanup): Promise<Workloads> {
    const dir = mkdtempSync(join(tmpdir(), 'ovshift-bench-bin-'));
    cleanup.add(`helper dir ${dir}`, () => rmSync(dir, { recursive: true, force: true }));
    const binary = join(dir, 'workload');
    await check('gcc', ['-O2', '-Wall', '-Werror', '-o', binary, SOURCE]);
    return new Workloads(binary);
  }

  /** Runs one workload command (see workloads.c for the commands and their arguments). */
  async run(...args: Array<string | number>): Promise<WorkloadResult> {
    const out = await check(this.binary, args.map(String), { timeoutMs: 600_000 });
    const { ns, count } = JSON.parse(out) as { ns: number; count: number };
    return { ms: ns / 1e6, count };
  }
}
