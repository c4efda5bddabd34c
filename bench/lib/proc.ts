/**
 * Running commands from the benchmarks: asynchronously (the event loop may be serving a mount);
 * and what /proc says about a running process.
 */
import { spawn } from 'child_process';
import { promises as fsp } from 'fs';

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

/** Runs `cmd` to its end; a child still running after `timeoutMs` is killed (by its PID). */
export function run(cmd: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: opts.env ?? process.env, cwd: opts.cwd });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** Runs `cmd` and insists on exit status 0; returns its stdout. */
export async function check(cmd: string, args: string[], opts: RunOptions = {}): Promise<string> {
  const r = await run(cmd, args, opts);
  if (r.code !== 0) {
    throw new Error(`${cmd} ${args.join(' ')}: exited ${r.code ?? r.signal}: ${r.stderr.trim().split('\n').slice(-3).join(' / ')}`);
  }
  return r.stdout;
}

/**
 * Runs a command, timing it from spawn to exit (start-up included); fails on a non-zero exit,
 * and kills it (by its PID) after `timeoutMs`.
 */
export async function timed(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<{ ms: number; stdout: string }> {
  const start = process.hrtime.bigint();
  const r = await run(cmd, args, { timeoutMs: 600_000, ...opts });
  const ms = Number(process.hrtime.bigint() - start) / 1e6;
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')}: exited ${r.code ?? r.signal}: ${(r.stderr.trim() || r.stdout.trim()).slice(-500)}`);
  return { ms, stdout: r.stdout };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** The resident set size of process `pid` (VmRSS in /proc/PID/status), in bytes. */
export async function residentBytes(pid: number): Promise<number> {
  const status = await fsp.readFile(`/proc/${pid}/status`, 'utf8');
  const kib = /^VmRSS:\s+(\d+) kB$/m.exec(status)?.[1];
  if (kib === undefined) throw new Error(`no VmRSS in /proc/${pid}/status`);
  return Number(kib) * 1024;
}

/**
 * CPU time process `pid` has used so far, all its threads (user and system), in milliseconds:
 * the sum of /proc/PID/task/TID/schedstat, which counts nanoseconds (where /proc/PID/stat counts
 * clock ticks of 10 ms). A thread that ends takes its share with it; the daemons measured keep
 * theirs for their whole life (a thread pool, libfuse's workers).
 */
export async function cpuMs(pid: number): Promise<number> {
  let ns = 0;
  for (const tid of await fsp.readdir(`/proc/${pid}/task`)) {
    try {
      ns += Number((await fsp.readFile(`/proc/${pid}/task/${tid}/schedstat`, 'utf8')).split(' ')[0]);
    } catch {
      // ended meanwhile
    }
  }
  return ns / 1e6;
}
