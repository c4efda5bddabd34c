/**
 * The workload helper: bench/workloads.c, compiled with gcc into a temp dir for this run (no
 * binary is ever kept), and run as a child process that times its own work.
 */
import { spawn } from 'child_process';
import { mkdtempSync, rmSync } from 'fs';
import { tmpdir } from 'os';
import { join, resolve } from 'path';
import type { Cleanup, Release } from './cleanup';
import { check, sleep } from './proc';

const SOURCE = resolve(__dirname, '..', '..', '..', 'bench', 'workloads.c');
const EXIT_WAIT_MS = 10_000;

export interface WorkloadResult {
  /** Time the work itself took, in milliseconds (process start and setup excluded). */
  ms: number;
  /** What the command counts: calls, entries or bytes (see workloads.c). */
  count: number;
  /** Per-call latency, for the commands that time every call (stat-latency). */
  latencyNs?: { median: number; p99: number };
}

function parseResult(line: string): WorkloadResult {
  const out = JSON.parse(line) as { ns: number; count: number; median_ns?: number; p99_ns?: number };
  const result: WorkloadResult = { ms: out.ns / 1e6, count: out.count };
  if (out.median_ns !== undefined && out.p99_ns !== undefined) result.latencyNs = { median: out.median_ns, p99: out.p99_ns };
  return result;
}

/**
 * A workload that runs alongside the benchmark (lock-waiters): it announces its stages on
 * stdout, takes its cue on stdin, and prints its result when it ends.
 */
export class RunningWorkload {
  private stdout = '';
  private stderr = '';
  private readonly exited: Promise<number | null>;
  private running = true;
  /** Writes a line to its stdin. */
  readonly cue: (line: string) => void;
  /** Ends it by its PID if it is still running; resolves once it has exited. */
  readonly stop: Release;

  constructor(
    cleanup: Cleanup,
    binary: string,
    private readonly args: string[],
  ) {
    const child = spawn(binary, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    child.stdout.on('data', (d: Buffer) => (this.stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (this.stderr = (this.stderr + d.toString()).slice(-4000)));
    // Its stdin closes when it exits early; a late cue must not crash the run.
    child.stdin.on('error', () => undefined);
    this.exited = new Promise((resolve) =>
      child.on('close', (code) => {
        this.running = false;
        resolve(code);
      }),
    );
    this.cue = (line) => void child.stdin.write(`${line}\n`);
    this.stop = cleanup.add(`workload ${args.join(' ')} (pid ${child.pid})`, async () => {
      if (!this.running) return;
      child.kill('SIGKILL');
      // Threads blocked in a FUSE request exit only once the daemon answers (or the mount goes).
      const gone = await Promise.race([this.exited.then(() => true), sleep(EXIT_WAIT_MS).then(() => false)]);
      if (!gone) throw new Error(`pid ${child.pid} still running ${EXIT_WAIT_MS / 1000} s after SIGKILL`);
    });
  }

  /** Waits until it prints a line starting with `prefix`; returns that line. */
  async untilLine(prefix: string, timeoutMs: number): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const line = this.stdout
        .split('\n')
        .slice(0, -1)
        .find((l) => l.startsWith(prefix));
      if (line !== undefined) return line;
      if (!this.running) throw new Error(`workload ${this.args.join(' ')} ended before "${prefix}": ${this.stderr.trim() || 'no message'}`);
      if (Date.now() > deadline) throw new Error(`workload ${this.args.join(' ')}: no "${prefix}" within ${timeoutMs / 1000} s`);
      await sleep(10);
    }
  }

  /** Waits for it to end; its result, or an error if it failed. */
  async result(): Promise<WorkloadResult> {
    const code = await this.exited;
    await this.stop();
    if (code !== 0) throw new Error(`workload ${this.args.join(' ')}: exited ${code}: ${this.stderr.trim() || 'no message'}`);
    return parseResult(this.stdout.trim().split('\n').pop()!);
  }
}

export class Workloads {
  private constructor(private readonly binary: string) {}

  static async build(cleanup: Cleanup): Promise<Workloads> {
    const dir = mkdtempSync(join(tmpdir(), 'ovshift-bench-bin-'));
    cleanup.add(`helper dir ${dir}`, () => rmSync(dir, { recursive: true, force: true }));
    const binary = join(dir, 'workload');
    await check('gcc', ['-O2', '-Wall', '-Werror', '-pthread', '-o', binary, SOURCE]);
    return new Workloads(binary);
  }

  /** Runs one workload command (see workloads.c for the commands and their arguments). */
  async run(...args: Array<string | number>): Promise<WorkloadResult> {
    return parseResult(await check(this.binary, args.map(String), { timeoutMs: 600_000 }));
  }

  /** Starts a workload that runs alongside; ended by its PID at cleanup if it has not ended. */
  start(cleanup: Cleanup, ...args: Array<string | number>): RunningWorkload {
    return new RunningWorkload(cleanup, this.binary, args.map(String));
  }
}
