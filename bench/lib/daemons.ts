/**
 * The processes that serve mounts made by commands we run, found in /proc: FUSE daemons that
 * detach from the command (fuse-overlayfs, ovshift's Node daemon per mount) and ovshift's
 * long-lived per-user server, none of them children of ours.
 *
 * Every command run through DaemonWatch.env() carries a token in its environment, inherited by
 * the daemons, servers and engine children it starts; those (and processes naming the scratch
 * dir on their command line) are ours, once started after DaemonWatch.start(). The processes
 * serving a set of mounts are those, or an ovshift server someone else started, whose /dev/fuse
 * descriptors grew while the mounts were made. Other people's daemons are never counted, and
 * only ours are ever ended (by PID).
 */
import { randomBytes } from 'crypto';
import { existsSync, realpathSync } from 'fs';
import { basename, join, resolve } from 'path';
import { argumentPath, endProcess, environHas, executable, fuseDescriptors, isRunning, listProcesses, type ProcessInfo } from './processes';

const REPO = resolve(__dirname, '..', '..', '..');
const TOKEN_ENV = 'OVSHIFT_BENCH_TOKEN';

/**
 * The ovshift mount command of this checkout: build/Release/ovshift (the native front end that
 * asks the per-user server to mount, starting it when none runs) once it is built, else
 * bin/ovshift (Node, a daemon per mount). OVSHIFT_BENCH_COMMAND=PATH picks another.
 */
export function ovshiftCommand(): string {
  const override = process.env.OVSHIFT_BENCH_COMMAND;
  if (override) return resolve(override);
  const native = join(REPO, 'build', 'Release', 'ovshift');
  return existsSync(native) ? native : join(REPO, 'bin', 'ovshift');
}

/** The paths through which a process is ovshift's: its executable, or the script node runs. */
function ovshiftPaths(): { executables: Set<string>; scripts: Set<string>; scriptDirs: string[] } {
  const real = (p: string): string => {
    try {
      return realpathSync(p);
    } catch {
      return p;
    }
  };
  return {
    executables: new Set([join(REPO, 'build', 'Release', 'ovshift'), ovshiftCommand()].map(real)),
    scripts: new Set(['bin/ovshift', 'bin/ovshift-server', 'dist/src/server.js', 'dist/src/cli.js'].map((p) => real(join(REPO, p)))),
    scriptDirs: [`${real(join(REPO, 'dist', 'src', 'server'))}/`],
  };
}

export interface Candidate {
  info: ProcessInfo;
  fuseFds: number;
  ovshift: boolean;
  /** Started since start() by a command run with env() (it carries the token), or names the scratch dir. */
  ours: boolean;
}

/** Serves a mount without naming one on its command line: ovshift's long-lived server. */
export const isServer = (c: Candidate): boolean => c.ovshift && !c.info.argv.some((a) => a.includes('lowerdir='));

/** What the commands we run started, and which processes serve the mounts they make. */
export class DaemonWatch {
  readonly token = randomBytes(8).toString('hex');
  private readonly paths = ovshiftPaths();
  private readonly identity = new Map<string, boolean>();
  private baseline = new Set<string>();

  constructor(readonly scratch: string) {}

  /** The processes running now count as not ours, whatever they look like. */
  async start(): Promise<void> {
    this.baseline = new Set((await listProcesses()).map((p) => p.key));
  }

  env(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
    return { ...process.env, [TOKEN_ENV]: this.token, ...extra };
  }

  private async isOvshift(p: ProcessInfo): Promise<boolean> {
    let known = this.identity.get(p.key);
    if (known === undefined) {
      known = this.paths.executables.has((await executable(p.pid)) ?? '');
      for (const arg of p.argv.slice(0, 4)) {
        if (known || !/ovshift|server/.test(arg)) continue;
        const path = await argumentPath(p.pid, arg);
        known = path !== undefined && (this.paths.scripts.has(path) || this.paths.scriptDirs.some((d) => path.startsWith(d)));
      }
      this.identity.set(p.key, known);
    }
    return known;
  }

  /**
   * Processes that may serve our mounts, with their /dev/fuse descriptor counts: ours, and
   * ovshift's (a server someone else started would serve our mounts too).
   */
  async candidates(): Promise<Map<string, Candidate>> {
    const found = new Map<string, Candidate>();
    await Promise.all(
      (await listProcesses()).map(async (info) => {
        if (info.pid === process.pid || info.state === 'Z') return;
        const fresh = !this.baseline.has(info.key);
        const ours = fresh && (info.argv.some((a) => a.includes(this.scratch)) || (await environHas(info.pid, TOKEN_ENV, this.token)));
        const ovshift = await this.isOvshift(info);
        if (ours || ovshift) found.set(info.key, { info, fuseFds: await fuseDescriptors(info.pid), ovshift, ours });
      }),
    );
    return found;
  }

  /** ovshift servers running now that this area did not start. */
  async foreignServers(): Promise<Candidate[]> {
    return [...(await this.candidates()).values()].filter((c) => isServer(c) && !c.ours && c.info.state !== 'Z');
  }

  /**
   * Ends (SIGTERM, then SIGKILL) the processes of ours still running that `which` picks;
   * returns one line per process ended.
   */
  async endOurs(which: (c: Candidate) => boolean): Promise<string[]> {
    const ended: string[] = [];
    for (const c of (await this.candidates()).values()) {
      if (!c.ours || !which(c) || !(await isRunning(c.info.key))) continue;
      const how = await endProcess(c.info.key, 10_000);
      if (how !== 'gone') ended.push(`${describe(c)} (PID ${c.info.pid}, ${how})`);
    }
    return ended;
  }
}

/** The program's name: the script for node, else the executable. */
export function describe(c: Candidate): string {
  const [first, ...rest] = c.info.argv;
  const script = basename(first ?? '?') === 'node' ? rest.find((a) => !a.startsWith('-')) : first;
  return basename(script ?? first ?? '?');
}

/**
 * Processes whose /dev/fuse descriptors grew from `before` to `after`: those serving what was
 * mounted in between. Ours, or an ovshift server someone else started (it serves our mounts
 * too); never another's daemon of a mount of its own.
 */
export function grewFuse(before: Map<string, Candidate>, after: Map<string, Candidate>): Candidate[] {
  return [...after.values()].filter((c) => (c.ours || isServer(c)) && c.fuseFds > (before.get(c.info.key)?.fuseFds ?? 0));
}
