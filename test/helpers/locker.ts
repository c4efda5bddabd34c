/** Driving test/helpers/locker.py: a real process taking real locks, one command at a time. */
import { spawn, type ChildProcess } from 'child_process';
import { resolve } from 'path';

const SCRIPT = resolve(__dirname, '..', '..', '..', 'test', 'helpers', 'locker.py');

export class Locker {
  readonly child: ChildProcess;
  private buffered = '';
  private readonly waiting: Array<(line: string) => void> = [];
  private readonly lines: string[] = [];
  stderr = '';

  /** `wrap` runs the script under another command (e.g. unshare for a pid namespace). */
  constructor(wrap: string[] = []) {
    const argv = [...wrap, 'python3', SCRIPT];
    this.child = spawn(argv[0]!, argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
    this.child.stdout!.setEncoding('utf8');
    this.child.stdout!.on('data', (d: string) => {
      this.buffered += d;
      let nl: number;
      while ((nl = this.buffered.indexOf('\n')) >= 0) {
        const line = this.buffered.slice(0, nl);
        this.buffered = this.buffered.slice(nl + 1);
        const w = this.waiting.shift();
        if (w) w(line);
        else this.lines.push(line);
      }
    });
    this.child.stderr!.on('data', (d: Buffer) => (this.stderr += d.toString()));
  }

  /** Sends a command; resolves with its answer line (later, for a lock that has to wait). */
  send(command: string): Promise<string> {
    this.child.stdin!.write(`${command}\n`);
    const ready = this.lines.shift();
    if (ready !== undefined) return Promise.resolve(ready);
    return new Promise((r) => this.waiting.push(r));
  }

  async open(path: string, mode: 'rw' | 'ro' = 'rw'): Promise<number> {
    const a = await this.send(`open ${path} ${mode}`);
    if (!a.startsWith('ok ')) throw new Error(`open ${path}: ${a} ${this.stderr}`);
    return Number(a.slice(3));
  }

  signal(sig: NodeJS.Signals): void {
    if (this.child.pid && this.child.exitCode === null) this.child.kill(sig);
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise((r) => this.child.once('close', r));
    this.child.kill('SIGKILL');
    await exited;
  }
}

/** Whether a promise has settled by now (without waiting for it). */
export async function settled(p: Promise<unknown>, ms = 50): Promise<boolean> {
  let done = false;
  void p.then(
    () => (done = true),
    () => (done = true),
  );
  await new Promise((r) => setTimeout(r, ms));
  return done;
}
