/**
 * Starting the real ovshift daemon from tests and stopping it by PID. Each mount made here is
 * removed in `stop()` even when the daemon hangs (abort through fusectl, lazy unmount).
 */
import { spawn, type ChildProcess } from 'child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync } from 'fs';
import { tmpdir } from 'os';
import { join, resolve } from 'path';
import { abortConnection, connectionId } from '../../src/fuse/mount';
import { run } from './proc';

export const OVSHIFT = resolve(__dirname, '..', '..', '..', 'bin', 'ovshift');

export interface Daemon {
  readonly pid: number;
  readonly mnt: string;
  readonly child: ChildProcess;
  /** What the daemon printed on stderr so far. */
  stderr(): string;
  /** Resolves with the exit status once the daemon has exited. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGTERM, then whatever it takes; leaves nothing mounted. Idempotent. */
  stop(): Promise<void>;
}

/**
 * Runs `ovshift -f ARGS` and resolves once its mount is ready (the daemon's own readiness
 * report), or rejects with the daemon's error line.
 */
export async function startDaemon(
  args: string[],
  mnt: string,
  opts: { env?: NodeJS.ProcessEnv; uid?: number; gid?: number; command?: string } = {},
): Promise<Daemon> {
  const child = spawn(opts.command ?? OVSHIFT, ['-f', ...args], {
    stdio: ['ignore', 'ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...opts.env, OVSHIFT_READY_FD: '3' },
    uid: opts.uid,
    gid: opts.gid,
  });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => child.on('close', (code, signal) => r({ code, signal })));
  const answer = await new Promise<string>((resolveAnswer) => {
    let text = '';
    const pipe = child.stdio[3] as NodeJS.ReadableStream;
    pipe.on('data', (d: Buffer) => (text += d.toString()));
    pipe.on('end', () => resolveAnswer(text.trim()));
    pipe.on('error', () => resolveAnswer(text.trim()));
  });
  if (answer !== 'ready') {
    await exited;
    throw new Error(answer.startsWith('error ') ? answer.slice(6) : `ovshift exited: ${stderr.trim()}`);
  }
  const id = await connectionId(mnt);
  let stopping: Promise<void> | undefined;
  return {
    pid: child.pid!,
    mnt,
    child,
    stderr: () => stderr,
    exited,
    stop() {
      stopping ??= (async () => {
        if (child.exitCode === null && child.signalCode === null) {
          child.kill('SIGTERM');
          const done = await Promise.race([exited.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 5000))]);
          if (!done) {
            child.kill('SIGKILL');
            await exited;
          }
        }
        if ((await connectionId(mnt)) !== undefined) {
          if (id !== undefined) await abortConnection(id);
          await run('umount', ['-l', mnt]);
        }
      })();
      return stopping;
    },
  };
}

/**
 * For after-hooks: removes the control socket directories (`ovshift-UID`) that daemons of these
 * host uids made during the suite, leaving any that existed before it.
 */
export function controlDirsMadeBy(uids: number[]): () => void {
  const dirs = uids.map((uid) => join(process.env.XDG_RUNTIME_DIR || tmpdir(), `ovshift-${uid}`)).filter((d) => !existsSync(d));
  return () => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  };
}

/** A scratch tree for one test: lower(s), upper, work and mountpoint under a temp dir. */
export class Scratch {
  readonly root: string;
  readonly lower: string;
  readonly upper: string;
  readonly work: string;
  readonly mnt: string;
  private readonly daemons: Daemon[] = [];

  constructor(prefix = 'ovshift-test-') {
    this.root = mkdtempSync(join(tmpdir(), prefix));
    // Reachable by the unprivileged callers tests switch to.
    chmodSync(this.root, 0o755);
    this.lower = this.dir('lower');
    this.upper = this.dir('upper');
    this.work = this.dir('work');
    this.mnt = this.dir('mnt');
  }

  dir(name: string): string {
    const p = join(this.root, name);
    mkdirSync(p, { recursive: true });
    return p;
  }

  /** The usual fuse-overlayfs-style arguments for this tree. */
  args(extra = ''): string[] {
    return ['-o', `lowerdir=${this.lower},upperdir=${this.upper},workdir=${this.work}${extra ? `,${extra}` : ''}`, this.mnt];
  }

  /** Mounts this tree (`extra`: more -o options); `dispose` stops the daemon. */
  async mount(extra = '', opts: { env?: NodeJS.ProcessEnv } = {}): Promise<Daemon> {
    const d = await startDaemon(this.args(extra), this.mnt, opts);
    this.daemons.push(d);
    return d;
  }

  remove(): void {
    rmSync(this.root, { recursive: true, force: true });
  }

  /** For afterEach: stops the daemons `mount` started, then removes the tree. */
  async dispose(): Promise<void> {
    for (const d of this.daemons.splice(0).reverse()) await d.stop();
    this.remove();
  }
}
