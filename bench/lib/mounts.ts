/**
 * Mounting, each mount registered for guaranteed unmounting: kernel mounts (tmpfs, overlay),
 * FUSE daemons run in the foreground as children of this process (ovshift, fuse-overlayfs,
 * bindfs), and a protocol-layer handler served by this very process.
 */
import { spawn } from 'child_process';
import { promises as fsp } from 'fs';
import type { FuseHandler } from '../../src/fuse/handler';
import { abortConnection, connectionId } from '../../src/fuse/mount';
import { serveFuse } from '../../src/fuse/serve';
import type { Cleanup, Release } from './cleanup';
import { check, run, sleep } from './proc';

export interface Mounted {
  readonly dir: string;
  /** The process serving the mount, when it is a FUSE daemon of its own. */
  readonly pid?: number;
  readonly unmount: Release;
}

/** Mount points in this mount namespace, as absolute paths. */
export async function mountpoints(): Promise<string[]> {
  const info = await fsp.readFile('/proc/self/mountinfo', 'utf8');
  return info
    .split('\n')
    .filter(Boolean)
    .map((line) =>
      // mountinfo escapes blanks and backslashes in paths as octal (\040).
      line.split(' ')[4]!.replace(/\\([0-7]{3})/g, (_m, oct: string) => String.fromCharCode(parseInt(oct, 8))),
    );
}

async function unmountKernel(dir: string): Promise<void> {
  if (!(await mountpoints()).includes(dir)) return;
  const r = await run('umount', [dir]);
  if (r.code !== 0) await check('umount', ['-l', dir]);
}

/** mount -t TYPE; the options string goes to -o as is. */
export async function mountKernel(cleanup: Cleanup, type: string, source: string, dir: string, options: string): Promise<Mounted> {
  await check('mount', ['-t', type, '-o', options, source, dir]);
  return { dir, unmount: cleanup.add(`${type} on ${dir}`, () => unmountKernel(dir)) };
}

/** A read-only bind mount of `source` (its mounts below not included) at `dir`. */
export async function bindReadOnly(cleanup: Cleanup, source: string, dir: string): Promise<Mounted> {
  await check('mount', ['--bind', source, dir]);
  const unmount = cleanup.add(`bind of ${source} on ${dir}`, () => unmountKernel(dir));
  await check('mount', ['-o', 'remount,bind,ro', dir]);
  return { dir, unmount };
}

export function mountTmpfs(cleanup: Cleanup, dir: string, size: string): Promise<Mounted> {
  return mountKernel(cleanup, 'tmpfs', 'ovshift-bench', dir, `size=${size},mode=0755`);
}

const DAEMON_START_MS = 15_000;
const DAEMON_EXIT_MS = 10_000;

/** Removes the FUSE mount at `dir`, aborting its connection if it will not go. */
export async function unmountFuse(dir: string): Promise<void> {
  const id = await connectionId(dir);
  if (id !== undefined && (await run('umount', [dir])).code !== 0) {
    await abortConnection(id);
    await check('umount', ['-l', dir]);
  }
}

/**
 * Runs a FUSE daemon in the foreground (its own `-f`) and resolves once `dir` is a FUSE mount.
 * Unmounting removes the mount (aborting the connection if it will not go) and waits for the
 * daemon to exit, ending it by its PID if it does not.
 */
export async function startFuseDaemon(cleanup: Cleanup, label: string, command: string, args: string[], dir: string): Promise<Mounted> {
  const child = spawn(command, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
  const exited = new Promise<void>((resolve) => child.on('close', () => resolve()));
  const running = (): boolean => child.exitCode === null && child.signalCode === null;
  const exitedWithin = (ms: number): Promise<boolean> => Promise.race([exited.then(() => true), sleep(ms).then(() => false)]);

  const unmount = cleanup.add(`${label} on ${dir}`, async () => {
    await unmountFuse(dir);
    if (!running() || (await exitedWithin(DAEMON_EXIT_MS))) return;
    child.kill('SIGTERM');
    if (await exitedWithin(DAEMON_EXIT_MS)) return;
    child.kill('SIGKILL');
    await exited;
  });

  const start = Date.now();
  while ((await connectionId(dir)) === undefined) {
    if (!running() || Date.now() - start > DAEMON_START_MS) {
      await unmount();
      throw new Error(`${label} did not mount ${dir}: ${stderr.trim() || 'no message'}`);
    }
    await sleep(10);
  }
  return { dir, pid: child.pid, unmount };
}

/** bindfs of `source` on `dir`; `options` go to -o. */
export function mountBindfs(cleanup: Cleanup, source: string, dir: string, options: readonly string[]): Promise<Mounted> {
  return startFuseDaemon(cleanup, 'bindfs', 'bindfs', ['-f', '-o', options.join(','), source, dir], dir);
}

/** Mounts `handler` on `dir`, served by this process's event loop through FuseSession. */
export async function mountSession(cleanup: Cleanup, handler: FuseHandler, dir: string): Promise<Mounted> {
  let unmount: Release | undefined;
  try {
    await serveFuse({ mountpoint: dir, fsname: 'ovshift-bench', subtype: 'ovshift-bench' }, handler, {
      // Registered before INIT, so a signal while waiting for it still unmounts.
      beforeStart: (served) => {
        // A workload child still blocked on the mount would keep a plain unmount from finishing.
        unmount = cleanup.add(`protocol-layer filesystem on ${dir}`, () => served.stop({ abort: true }));
      },
    });
  } catch (err) {
    // serveFuse undid the mount; this only drops the step.
    await unmount?.();
    throw err;
  }
  return { dir, unmount: unmount! };
}
