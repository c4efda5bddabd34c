/**
 * Mounts through ovshift's mount server, as the installed `ovshift` makes them: the native
 * front end (build/Release/ovshift) hands each mount to one long-lived server per user and
 * namespace, starting it when none runs. So a mount costs no process start, and the server's
 * JIT-compiled code is warm from the mounts before. A server this run started is stopped by its
 * PID when the run ends; one that ran before (a user's) is left alone.
 */
import { existsSync, readFileSync, readdirSync } from 'fs';
import { join, resolve } from 'path';
import type { Cleanup } from './cleanup';
import { type Mounted, unmountFuse } from './mounts';
import { check, sleep } from './proc';

const FRONT_END = resolve(__dirname, '..', '..', '..', 'build', 'Release', 'ovshift');
const SERVER_SCRIPT = resolve(__dirname, '..', '..', '..', 'bin', 'ovshift-server');
const SERVER_DIR = '/run/ovshift';
const STOP_WAIT_MS = 10_000;

/** The pids of this checkout's mount servers running now. */
function serversOfThisCheckout(): number[] {
  if (!existsSync(SERVER_DIR)) return [];
  const pids: number[] = [];
  for (const name of readdirSync(SERVER_DIR)) {
    if (!/^server-.*\.pid$/.test(name)) continue;
    const pid = Number(readFileSync(join(SERVER_DIR, name), 'utf8').trim());
    try {
      if (readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').includes(SERVER_SCRIPT)) pids.push(pid);
    } catch {
      // gone
    }
  }
  return pids;
}

/** Per area (its cleanup): the servers that ran before its first mount through one. */
const runningBefore = new WeakMap<Cleanup, Set<number>>();

/** Mounts `options` at `dir` through the mount server; `pid`: the server's. */
export async function mountThroughServer(cleanup: Cleanup, label: string, options: string, dir: string): Promise<Mounted> {
  if (!runningBefore.has(cleanup)) {
    const before = new Set(serversOfThisCheckout());
    runningBefore.set(cleanup, before);
    cleanup.add('the mount servers this area started', async () => {
      for (const pid of serversOfThisCheckout().filter((p) => !before.has(p))) await stopProcess(pid);
    });
  }
  await check(FRONT_END, ['-o', options, dir]);
  const unmount = cleanup.add(`${label} on ${dir}`, () => unmountFuse(dir));
  return { dir, pid: await theServer(), unmount };
}

/**
 * The one server of this checkout running once the mount is made. A server left idle by an
 * earlier run may still be exiting then (it goes after OVSHIFT_SERVER_IDLE seconds), and the
 * mount was made by a new one: wait for the old one to go rather than guess.
 */
async function theServer(): Promise<number> {
  let servers = serversOfThisCheckout();
  for (let waited = 0; servers.length > 1 && waited < STOP_WAIT_MS; waited += 50) {
    await sleep(50);
    servers = serversOfThisCheckout();
  }
  if (servers.length !== 1) throw new Error(`expected one ovshift mount server of this checkout, found ${servers.length} (${servers.join(', ')})`);
  return servers[0]!;
}

async function stopProcess(pid: number): Promise<void> {
  const alive = (): boolean => existsSync(`/proc/${pid}`);
  process.kill(pid, 'SIGTERM');
  for (let waited = 0; alive() && waited < STOP_WAIT_MS; waited += 50) await sleep(50);
  if (alive()) process.kill(pid, 'SIGKILL');
}
