/**
 * The process table as /proc shows it, for benchmarks whose filesystems are served by detached
 * daemons or a long-lived server rather than by children of ours: which processes exist (a PID
 * with its start time, so a reused PID is another process), their CPU time, memory and threads,
 * how many /dev/fuse descriptors each holds, and ending one by its PID.
 */
import { promises as fsp } from 'fs';
import { isAbsolute, join } from 'path';
import { check, sleep } from './proc';

export interface ProcessInfo {
  pid: number;
  /** pid and start time: the same PID with another start time is another process. */
  key: string;
  /** One letter, as in ps (R, S, D, Z…). */
  state: string;
  ppid: number;
  /** user + system CPU time of the process itself, in clock ticks. */
  cpuTicks: number;
  argv: string[];
}

/** Clock ticks per second (`getconf CLK_TCK`; 100 on every Linux this runs on). */
let ticksPerSecond: number | undefined;

export async function clockTicksPerSecond(): Promise<number> {
  ticksPerSecond ??= Number((await check('getconf', ['CLK_TCK'])).trim()) || 100;
  return ticksPerSecond;
}

/** The fields of /proc/PID/stat after the command name (which may hold blanks and parentheses). */
function statFields(stat: string): string[] {
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
}

/** One process, or undefined when it is gone (or was never there). */
export async function processInfo(pid: number): Promise<ProcessInfo | undefined> {
  try {
    const [stat, cmdline] = await Promise.all([fsp.readFile(`/proc/${pid}/stat`, 'utf8'), fsp.readFile(`/proc/${pid}/cmdline`, 'utf8')]);
    // Field n of proc(5) is fields[n - 3]: state 3, ppid 4, utime 14, stime 15, starttime 22.
    const f = statFields(stat);
    return {
      pid,
      key: `${pid}@${f[19]}`,
      state: f[0]!,
      ppid: Number(f[1]),
      cpuTicks: Number(f[11]) + Number(f[12]),
      argv: cmdline.split('\0').filter((a, i, all) => a !== '' || i < all.length - 1),
    };
  } catch {
    return undefined;
  }
}

/** Every process but kernel threads (those have no command line). */
export async function listProcesses(): Promise<ProcessInfo[]> {
  const pids = (await fsp.readdir('/proc')).filter((name) => /^\d+$/.test(name)).map(Number);
  const infos = await Promise.all(pids.map(processInfo));
  return infos.filter((p): p is ProcessInfo => p !== undefined && p.argv.length > 0);
}

/** Whether the process is still there and not a zombie waiting to be reaped. */
export async function isRunning(key: string): Promise<boolean> {
  const info = await processInfo(Number(key.split('@')[0]));
  return info !== undefined && info.key === key && info.state !== 'Z' && info.state !== 'X';
}

/** Whether the process's initial environment has NAME=VALUE. */
export async function environHas(pid: number, name: string, value: string): Promise<boolean> {
  try {
    return (await fsp.readFile(`/proc/${pid}/environ`, 'utf8')).split('\0').includes(`${name}=${value}`);
  } catch {
    return false;
  }
}

/** The real path of the process's executable, or undefined. */
export async function executable(pid: number): Promise<string | undefined> {
  try {
    return await fsp.realpath(await fsp.readlink(`/proc/${pid}/exe`));
  } catch {
    return undefined;
  }
}

/** The real path of `arg` as the process would open it (relative to its working directory). */
export async function argumentPath(pid: number, arg: string): Promise<string | undefined> {
  try {
    return await fsp.realpath(isAbsolute(arg) ? arg : join(await fsp.readlink(`/proc/${pid}/cwd`), arg));
  } catch {
    return undefined;
  }
}

/** How many of the process's descriptors are open on /dev/fuse (0 when it is gone). */
export async function fuseDescriptors(pid: number): Promise<number> {
  let names: string[];
  try {
    names = await fsp.readdir(`/proc/${pid}/fd`);
  } catch {
    return 0;
  }
  const targets = await Promise.all(names.map((fd) => fsp.readlink(`/proc/${pid}/fd/${fd}`).catch(() => '')));
  return targets.filter((t) => t === '/dev/fuse').length;
}

export interface Footprint {
  /** VmRSS, bytes. */
  rss: number;
  threads: number;
}

/** VmRSS and thread count from /proc/PID/status; undefined when the process is gone or a zombie. */
export async function footprint(pid: number): Promise<Footprint | undefined> {
  try {
    const status = await fsp.readFile(`/proc/${pid}/status`, 'utf8');
    const kib = /^VmRSS:\s+(\d+) kB$/m.exec(status)?.[1];
    const threads = /^Threads:\s+(\d+)$/m.exec(status)?.[1];
    if (kib === undefined || threads === undefined) return undefined;
    return { rss: Number(kib) * 1024, threads: Number(threads) };
  } catch {
    return undefined;
  }
}

/**
 * CPU time of this process's children that have ended and been reaped (cutime + cstime of
 * /proc/self/stat), in clock ticks: read around one child's run, the difference is its CPU time
 * and that of the children it waited for, not that of any it left running.
 */
export async function reapedChildrenTicks(): Promise<number> {
  const f = statFields(await fsp.readFile('/proc/self/stat', 'utf8'));
  return Number(f[13]) + Number(f[14]);
}

/**
 * Ends a process by its PID (never by name): SIGTERM, then SIGKILL if it is still there after
 * `graceMs`. Resolves with how it ended: 'gone' (already), 'SIGTERM' or 'SIGKILL'; rejects if it
 * survives SIGKILL for as long again.
 */
export async function endProcess(key: string, graceMs: number): Promise<'gone' | 'SIGTERM' | 'SIGKILL'> {
  const pid = Number(key.split('@')[0]);
  const exitedWithin = async (ms: number): Promise<boolean> => {
    const deadline = Date.now() + ms;
    while (await isRunning(key)) {
      if (Date.now() > deadline) return false;
      await sleep(20);
    }
    return true;
  };
  if (!(await isRunning(key))) return 'gone';
  process.kill(pid, 'SIGTERM');
  if (await exitedWithin(graceMs)) return 'SIGTERM';
  if (await isRunning(key)) process.kill(pid, 'SIGKILL');
  if (await exitedWithin(graceMs)) return 'SIGKILL';
  throw new Error(`pid ${pid} still running ${graceMs / 1000} s after SIGKILL`);
}
