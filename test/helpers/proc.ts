/** Running real programs from tests: every child has a timeout and is killed by PID. */
import { spawn, type ChildProcess, type SpawnOptions } from 'child_process';

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export function run(cmd: string, args: string[], opts: SpawnOptions & { timeoutMs?: number; input?: string } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { ...opts, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 20000);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
    // A child that exits without reading its input must not fail the run with EPIPE.
    child.stdin!.on('error', () => undefined);
    child.stdin!.end(opts.input ?? '');
  });
}

/** Runs and insists on exit status 0; returns stdout. */
export async function sh(script: string, opts: SpawnOptions & { timeoutMs?: number } = {}): Promise<string> {
  const r = await run('bash', ['-euo', 'pipefail', '-c', script], opts);
  if (r.code !== 0) throw new Error(`bash -c ${JSON.stringify(script)} exited ${r.code ?? r.signal}: ${r.stderr.trim()}`);
  return r.stdout;
}

export function python(code: string, args: string[] = [], opts: SpawnOptions & { timeoutMs?: number } = {}): Promise<RunResult> {
  return run('python3', ['-c', code, ...args], opts);
}

/** A long-running child that a test ends itself (after-hooks call `stop`). */
export class Background {
  readonly child: ChildProcess;
  stdout = '';
  stderr = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private closed = false;

  constructor(cmd: string, args: string[], opts: SpawnOptions = {}) {
    this.child = spawn(cmd, args, { ...opts, stdio: ['ignore', 'pipe', 'pipe'] });
    this.child.stdout!.on('data', (d: Buffer) => (this.stdout += d.toString()));
    this.child.stderr!.on('data', (d: Buffer) => (this.stderr += d.toString()));
    this.exited = new Promise((resolve) =>
      this.child.on('close', (code, signal) => {
        this.closed = true;
        resolve({ code, signal });
      }),
    );
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Resolves once stdout contains `text` (checked on each 'data'), or rejects at 'close' without it, or after `ms`. */
  waitFor(text: string, ms = 10000): Promise<void> {
    if (this.stdout.includes(text)) return Promise.resolve();
    if (this.closed) return Promise.reject(new Error(`exited before printing ${text}: ${this.stderr}`));
    return new Promise((resolve, reject) => {
      const finish = (err?: Error): void => {
        clearTimeout(timer);
        this.child.stdout!.off('data', onData);
        this.child.off('close', onClose);
        if (err) reject(err);
        else resolve();
      };
      // The constructor's listener, added first, has already appended the chunk.
      const onData = (): void => {
        if (this.stdout.includes(text)) finish();
      };
      const onClose = (): void => finish(this.stdout.includes(text) ? undefined : new Error(`exited before printing ${text}: ${this.stderr}`));
      const timer = setTimeout(() => finish(new Error(`timed out waiting for ${text}; stdout: ${this.stdout}`)), ms);
      this.child.stdout!.on('data', onData);
      this.child.on('close', onClose);
    });
  }

  signal(sig: NodeJS.Signals): void {
    if (this.running && this.child.pid) process.kill(this.child.pid, sig);
  }

  async stop(): Promise<void> {
    this.signal('SIGKILL');
    await this.exited;
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
