/**
 * The mount servers the native `ovshift` front end starts (one per user and namespace, found by
 * the pid files beside their sockets). Tests that mount through the front end take a snapshot
 * of the servers running before them and stop, by PID, only those that appeared since.
 */
import { existsSync, readdirSync, readFileSync, realpathSync, statSync } from 'fs';
import { tmpdir } from 'os';
import { dirname, join, resolve } from 'path';
import { waitUntil } from './wait';
import { processExists } from '../../src/util/process-alive';
import { reachableCopyFrontEnd } from './reachable';

/** The native front end of this checkout (build/Release/ovshift). */
export const FRONT_END = resolve(__dirname, '..', '..', '..', 'build', 'Release', 'ovshift');

/** Every directory a server's socket and pid file can be in: root's, and each uid's. */
export function serverDirs(): string[] {
  const base = process.env.XDG_RUNTIME_DIR || tmpdir();
  const perUser = existsSync(base)
    ? readdirSync(base)
        .filter((n) => /^ovshift-\d+$/.test(n))
        .map((n) => join(base, n))
    : [];
  return ['/run/ovshift', ...perUser];
}

export interface ServerProcess {
  pid: number;
  pidFile: string;
}

/** Whether `pid` is an ovshift server (a stale pid file may name a pid reused since). */
function isServer(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8')
      .split('\0')
      .some((a) => a.endsWith('/ovshift-server'));
  } catch {
    return false;
  }
}

/** Servers running now whose pid files are in `dirs`. */
export function runningServers(dirs: string[]): ServerProcess[] {
  const found: ServerProcess[] = [];
  for (const dir of dirs) {
    if (!existsSync(dir)) continue;
    for (const name of readdirSync(dir)) {
      if (!/^server-.*\.pid$/.test(name)) continue;
      const pidFile = join(dir, name);
      const pid = Number(readFileSync(pidFile, 'utf8').trim());
      if (Number.isInteger(pid) && pid > 0 && isServer(pid)) found.push({ pid, pidFile });
    }
  }
  return found;
}

/** Waits up to `ms` for a process to be gone. */
export function waitGone(pid: number, ms: number): Promise<boolean> {
  return waitUntil(() => !processExists(pid), { timeoutMs: ms, intervalMs: 50, what: `process ${pid} to end` }).then(
    () => true,
    () => false,
  );
}

/** Servers that were running before this test process loaded this module: not ours to stop. */
const preexisting = new Set(runningServers(serverDirs()).map((s) => s.pid));

/**
 * The installation part of a server's file names, as the front end computes it (installation_id
 * in src/front/ovshift.c): FNV-1a over the package root, then the inode and mtime (a struct
 * timespec) of its dist/src/server/server.js, in the machine's byte order.
 */
export function installationId(frontEnd = FRONT_END): string {
  const root = dirname(dirname(dirname(realpathSync(frontEnd))));
  const st = statSync(join(root, 'dist', 'src', 'server', 'server.js'), { bigint: true });
  const bytes = Buffer.alloc(24);
  bytes.writeBigUInt64LE(st.ino, 0);
  bytes.writeBigInt64LE(st.mtimeNs / 1_000_000_000n, 8);
  bytes.writeBigInt64LE(st.mtimeNs % 1_000_000_000n, 16);
  let h = 0xcbf29ce484222325n;
  for (const b of [...Buffer.from(root), ...bytes]) h = ((h ^ BigInt(b)) * 0x100000001b3n) & 0xffffffffffffffffn;
  return h.toString(16).padStart(16, '0');
}

/**
 * Servers of this checkout's build (or of the copy other users run it from) started since this
 * test process began (by any test of it).
 */
export function startedServersOfThisBuild(): ServerProcess[] {
  const copy = reachableCopyFrontEnd();
  const ids = [installationId(), ...(copy === undefined ? [] : [installationId(copy)])];
  return startedServers().filter((s) => ids.some((id) => s.pidFile.endsWith(`-${id}.pid`)));
}

/** Servers started since this test process began (by any test of it). */
export function startedServers(): ServerProcess[] {
  return runningServers(serverDirs()).filter((s) => !preexisting.has(s.pid));
}

/**
 * For after-hooks of tests that mounted through the front end: ends (SIGTERM, then SIGKILL
 * after 5 s) every server of this checkout's build the test process started, which unmounts
 * what they still serve. Servers of other checkouts (another test run, a benchmark, a user's
 * mounts) started meanwhile are not this run's to end.
 */
export async function stopOvshiftServers(servers: ServerProcess[] = startedServersOfThisBuild()): Promise<void> {
  for (const s of servers) {
    process.kill(s.pid, 'SIGTERM');
    if (!(await waitGone(s.pid, 5000))) {
      process.kill(s.pid, 'SIGKILL');
      await waitGone(s.pid, 5000);
    }
  }
}
