/**
 * Shared fixtures for the native addon tests: real directories on the root filesystem and on
 * a tmpfs mounted for the test, child processes that are always reaped, errno assertions.
 */
import assert from 'assert/strict';
import { ChildProcess, execFileSync, spawn, SpawnOptions } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

export function makeTempDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'ovshift-native-'));
}

export function isMounted(dir: string): boolean {
  return fs
    .readFileSync('/proc/self/mounts', 'utf8')
    .split('\n')
    .some((line) => line.split(' ')[1] === dir);
}

/** A tmpfs on a fresh temp dir; `release` unmounts it (if still mounted) and removes the dir. */
export function mountTmpfs(): { dir: string; release: () => void } {
  const dir = makeTempDir();
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=16m,mode=0755', 'tmpfs', dir]);
  return {
    dir,
    release() {
      if (isMounted(dir)) execFileSync('umount', [dir]);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface Filesystem {
  readonly kind: string;
  /** The test directory; valid from the describe's `before` hook on. */
  dir(): string;
}

/**
 * Runs `body` once for the root filesystem (/tmp) and once for a tmpfs, each in its own
 * describe block that creates and removes its directory.
 */
export function onEachFilesystem(body: (filesystem: Filesystem) => void): void {
  for (const kind of ['root fs', 'tmpfs']) {
    describe(`on ${kind}`, function () {
      let dir = '';
      let release = (): void => {};
      before(function () {
        if (kind === 'tmpfs') {
          ({ dir, release } = mountTmpfs());
        } else {
          dir = makeTempDir();
          release = () => fs.rmSync(dir, { recursive: true, force: true });
        }
      });
      after(function () {
        release();
      });
      body({ kind, dir: () => dir });
    });
  }
}

let fileCounter = 0;

/** A path in `dir` no other test uses. */
export function freshPath(dir: string, stem = 'f'): string {
  fileCounter += 1;
  return path.join(dir, `${stem}-${process.pid}-${fileCounter}`);
}

export function errnoOf(code: string): number {
  const value = (os.constants.errno as Record<string, number | undefined>)[code];
  if (value === undefined) throw new Error(`unknown errno ${code}`);
  return value;
}

interface SystemError extends Error {
  code: string;
  errno: number;
  syscall: string;
}

function isSystemError(e: unknown): e is SystemError {
  return e instanceof Error && typeof (e as Partial<SystemError>).code === 'string';
}

/** Asserts the promise rejects with a Node-shaped system error whose code is one of `codes`. */
export async function rejectsWithCode(promise: Promise<unknown>, codes: string | string[], syscall?: string): Promise<SystemError> {
  const accepted = Array.isArray(codes) ? codes : [codes];
  let caught: unknown;
  try {
    await promise;
  } catch (e) {
    caught = e;
  }
  assert.ok(caught !== undefined, `expected a rejection with ${accepted.join('/')}, got a resolution`);
  assert.ok(isSystemError(caught), `expected a system error, got ${String(caught)}`);
  assert.ok(accepted.includes(caught.code), `expected ${accepted.join('/')}, got ${caught.code}`);
  assert.equal(caught.errno, -errnoOf(caught.code));
  if (syscall !== undefined) assert.equal(caught.syscall, syscall);
  return caught;
}

/** Node's combined dev_t split like the kernel's new_encode_dev. */
export function devMajor(dev: bigint): number {
  return Number(((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn));
}

export function devMinor(dev: bigint): number {
  return Number((dev & 0xffn) | ((dev >> 12n) & ~0xffn));
}

/** Open-file flags from /proc/self/fdinfo (octal there). */
export function fdFlags(fd: number): number {
  const info = fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8');
  const match = /^flags:\s+([0-7]+)$/m.exec(info);
  if (match === null) throw new Error(`no flags in fdinfo of ${fd}`);
  return parseInt(match[1], 8);
}

export interface ChildResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Spawns children for one test file and kills whichever are still running in `killAll`. */
export class Children {
  private readonly running = new Set<ChildProcess>();

  start(command: string, args: string[], options: SpawnOptions = {}): ChildProcess {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], ...options });
    this.running.add(child);
    child.on('exit', () => this.running.delete(child));
    return child;
  }

  /** Runs to completion and collects its output. */
  run(command: string, args: string[], options: SpawnOptions = {}): Promise<ChildResult> {
    const child = this.start(command, args, options);
    return collect(child);
  }

  killAll(): void {
    for (const child of this.running) child.kill('SIGKILL');
    this.running.clear();
  }
}

export function collect(child: ChildProcess): Promise<ChildResult> {
  let stdout = '';
  let stderr = '';
  child.stdout?.setEncoding('utf8').on('data', (s: string) => {
    stdout += s;
  });
  child.stderr?.setEncoding('utf8').on('data', (s: string) => {
    stderr += s;
  });
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

/** Where the compiled addon wrapper lives, for child Node processes to require. */
export const nativeModulePath = path.join(__dirname, '..', '..', 'src', 'native', 'index.js');
