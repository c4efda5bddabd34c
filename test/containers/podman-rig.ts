/**
 * A podman of its own for one test: containers-storage (driver overlay, one mount program),
 * libpod's database, locks, events and temporary files all under one temporary directory, for
 * root or for a throwaway user (rootless, with subordinate ids), configured through
 * CONTAINERS_CONF / CONTAINERS_STORAGE_CONF / XDG_* and command-line flags, so that nothing of
 * the machine's podman configuration is read for storage or changed. `cleanup` removes
 * containers, images, mounts, the processes podman left (conmon, the rootless pause process,
 * mount programs and their servers) and the tree.
 *
 * What podman 4.3 needs here, and why:
 * - runtime runc: crun 1.8 refuses this kernel's hybrid cgroup layout.
 * - default_ulimits nofile/nproc 1024: podman's defaults (1048576, and the caller's nproc)
 *   are more than runc may set without CAP_SYS_RESOURCE ("error setting rlimit type 6/7").
 * - containers-storage's cached "idmapped-lower-dir-false": without it, it shifts the lower
 *   layers itself with idmapped mounts and still passes uidmapping= to the mount program, so
 *   the ids are shifted twice (everything 65534 under --uidmap).
 * - netns none in containers.conf, and `podman build --network=none`: a RUN step otherwise sets
 *   up CNI networking (a cni-podman0 bridge, iptables chains, /var/lib/cni, ip_forward).
 * - lock_type file: no /dev/shm/libpod_lock.
 * - short paths, see ROOT_PREFIX.
 * - the storage on every command line, see `podman`.
 */
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, rmdirSync, writeFileSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { run, type RunResult } from '../helpers/proc';
import { waitUntil } from '../helpers/wait';
import type { TestUser } from '../helpers/users';

export interface RigOptions {
  /** What the rig is for, in messages. */
  label: string;
  /** containers-storage's `mount_program`. */
  mountProgram: string;
  /** Rootless podman as this user (with subordinate ids); root when absent. */
  user?: TestUser;
  /** The user's subordinate id range (rootless only), to find the processes left in it. */
  subids?: { start: number; count: number };
}

const PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** Resource limits every container gets: low enough for runc to set without CAP_SYS_RESOURCE. */
const ULIMITS = ['nofile=1024:1024', 'nproc=1024:1024'];

const toml = (s: string): string => JSON.stringify(s);

/**
 * The rigs' temporary directories: /tmp/ovpod-XXXXXX. Kept short on purpose: podman refuses a
 * --runroot of more than 50 characters, and with a longer runroot from storage.conf it waits out
 * its 20 s conmon timeout after every container exits (seen here: 0.5 s with a 49-character
 * runroot, 20.5 s with 51).
 */
export const ROOT_PREFIX = 'ovpod-';

export class PodmanRig {
  readonly root: string;
  /** The directory the podman user owns (the rootless user's, or root's). */
  readonly top: string;
  readonly graphroot: string;
  readonly runroot: string;
  readonly env: NodeJS.ProcessEnv;
  private readonly uid: number;
  private readonly gid: number;

  constructor(readonly opts: RigOptions) {
    this.root = mkdtempSync(join(tmpdir().length <= 20 ? tmpdir() : '/tmp', ROOT_PREFIX));
    if (this.root.length > 40) throw new Error(`podman rig: ${this.root} is too long a root`);
    this.uid = opts.user?.uid ?? 0;
    this.gid = opts.user?.gid ?? 0;
    // The root stays root's and 0755 (the user can reach its own directory below it).
    chmodSync(this.root, 0o755);
    this.top = this.dir('p', 0o700);
    this.graphroot = this.dir('p/graph');
    this.runroot = this.dir('p/run');
    const tmp = this.dir('p/tmp');
    const xdgRuntime = this.dir('p/xdg-run', 0o700);
    const home = this.dir('p/home');
    const conf = this.dir('p/conf');
    const net = this.dir('p/net');
    // containers-storage shifts the ids of lower layers itself with idmapped mounts when it
    // finds the kernel can, and still passes uidmapping= to the mount program: the ids would
    // be shifted twice (everything 65534). Its cached probe result turns that off.
    this.dir('p/run/overlay');
    this.file('p/run/overlay/idmapped-lower-dir-false', '');
    this.file(
      'p/conf/storage.conf',
      [
        '[storage]',
        'driver = "overlay"',
        `graphroot = ${toml(this.graphroot)}`,
        `runroot = ${toml(this.runroot)}`,
        '[storage.options.overlay]',
        `mount_program = ${toml(opts.mountProgram)}`,
        '',
      ].join('\n'),
    );
    this.file(
      'p/conf/containers.conf',
      [
        '[containers]',
        'netns = "none"',
        `default_ulimits = [${ULIMITS.map(toml).join(', ')}]`,
        '[engine]',
        // crun 1.8 refuses the hybrid cgroup layout of this kernel; runc does not.
        'runtime = "runc"',
        'cgroup_manager = "cgroupfs"',
        'events_logger = "file"',
        `events_logfile_path = ${toml(join(tmp, 'events.log'))}`,
        'lock_type = "file"',
        `tmp_dir = ${toml(join(tmp, 'libpod'))}`,
        `static_dir = ${toml(join(this.graphroot, 'libpod'))}`,
        `volume_path = ${toml(join(this.graphroot, 'volumes'))}`,
        `image_copy_tmp_dir = ${toml(tmp)}`,
        '[network]',
        `network_config_dir = ${toml(net)}`,
        '',
      ].join('\n'),
    );
    this.file('p/conf/registries.conf', 'unqualified-search-registries = []\n');
    this.env = {
      PATH,
      HOME: home,
      TMPDIR: tmp,
      XDG_RUNTIME_DIR: xdgRuntime,
      XDG_CONFIG_HOME: join(home, '.config'),
      XDG_DATA_HOME: join(home, '.local', 'share'),
      CONTAINERS_CONF: join(conf, 'containers.conf'),
      CONTAINERS_STORAGE_CONF: join(conf, 'storage.conf'),
      CONTAINERS_REGISTRIES_CONF: join(conf, 'registries.conf'),
      LANG: 'C',
    };
    if (opts.user) this.dir('p/home/.config');
  }

  /** A directory under the root, owned by the podman user. */
  dir(rel: string, mode = 0o755): string {
    const p = join(this.root, rel);
    mkdirSync(p, { recursive: true, mode });
    chownSync(p, this.uid, this.gid);
    chmodSync(p, mode);
    return p;
  }

  file(rel: string, content: string | Buffer): string {
    const p = join(this.root, rel);
    writeFileSync(p, content);
    chownSync(p, this.uid, this.gid);
    return p;
  }

  /**
   * `podman ARGS` as the rig's user. The storage is given on the command line too, all of it:
   * a rootless podman takes neither the directories nor the mount program from a storage.conf
   * that is not the user's own (it would keep its images under XDG_DATA_HOME and mount them with
   * the kernel's overlayfs), and a podman given any storage flag (--root, --storage-driver)
   * drops the storage.conf's driver options, mount_program included, silently. The tests check
   * that the container's root is the mount program's.
   */
  podman(args: string[], opts: { timeoutMs?: number; input?: string } = {}): Promise<RunResult> {
    const timeoutMs = opts.timeoutMs ?? 60000;
    const all = [
      '--root',
      this.graphroot,
      '--runroot',
      this.runroot,
      '--storage-driver',
      'overlay',
      '--storage-opt',
      `overlay.mount_program=${this.opts.mountProgram}`,
      ...args,
    ];
    const u = this.opts.user;
    if (!u) return run('podman', all, { env: this.env, cwd: this.top, timeoutMs, input: opts.input });
    return run('setpriv', [`--reuid=${u.uid}`, `--regid=${u.gid}`, '--clear-groups', '--', 'podman', ...all], {
      env: this.env,
      cwd: this.top,
      timeoutMs,
      input: opts.input,
    });
  }

  /** `podman ARGS`, insisting on exit status 0; returns stdout. */
  async ok(args: string[], opts: { timeoutMs?: number } = {}): Promise<string> {
    const r = await this.podman(args, opts);
    if (r.code !== 0) throw new Error(`podman ${args.join(' ')}: exit ${r.code ?? r.signal}: ${tail(r.stderr || r.stdout)}`);
    return r.stdout;
  }

  /** Mounts of the rig's storage that are still there (in this mount namespace). */
  mounts(): string[] {
    return readFileSync('/proc/self/mounts', 'utf8')
      .split('\n')
      .filter((l) => l.includes(this.root));
  }

  /**
   * Processes podman left that belong to this rig: for root, those whose command line names the
   * rig's directory (conmon, mount programs); for a rootless user, every process of the user or
   * of its subordinate ids (the pause process that holds podman's user namespace, conmon, mount
   * programs inside it, container processes). Never another process.
   */
  leftovers(): { pid: number; cmd: string }[] {
    const found: { pid: number; cmd: string }[] = [];
    for (const name of readdirSync('/proc')) {
      if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
      try {
        const cmd = readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0').join(' ').trim();
        const status = readFileSync(`/proc/${name}/status`, 'utf8');
        const ruid = Number(/^Uid:\s+(\d+)/m.exec(status)?.[1]);
        if (/^State:\s+Z/m.test(status)) continue;
        const u = this.opts.user;
        const s = this.opts.subids;
        const mine = u ? ruid === u.uid || (s !== undefined && ruid >= s.start && ruid < s.start + s.count) : cmd.includes(this.root);
        if (mine) found.push({ pid: Number(name), cmd });
      } catch {
        // gone meanwhile
      }
    }
    return found;
  }

  /**
   * Removes everything: containers (stopped at once), images, the storage (podman system
   * reset, which also unmounts), then ends by PID what podman left running, lazily unmounts
   * what is still mounted, and removes the tree (files of subordinate ids included: we are root).
   * Returns what had to be cleaned up by force, for the caller to report.
   */
  async cleanup(): Promise<string[]> {
    const forced: string[] = [];
    await this.podman(['rm', '--all', '--force', '--time', '0'], { timeoutMs: 60000 });
    await this.podman(['rmi', '--all', '--force'], { timeoutMs: 60000 });
    const reset = await this.podman(['system', 'reset', '--force'], { timeoutMs: 60000 });
    if (reset.code !== 0) forced.push(`podman system reset: ${tail(reset.stderr)}`);
    for (let round = 0; round < 2; round++) {
      const left = this.leftovers();
      if (!left.length) break;
      for (const p of left) {
        // Expected to outlive podman system reset: the rootless pause process, whose user
        // namespace the storage lives in, and ovshift's mount servers (long-lived by design;
        // a rootless one's socket is in the rig's XDG_RUNTIME_DIR). Anything else is reported.
        const expected = /^podman pause|catatonit|\/ovshift-server /.test(p.cmd);
        if (!expected && round === 0) forced.push(`process ${p.pid} left running: ${p.cmd}`);
        try {
          process.kill(p.pid, round === 0 ? 'SIGTERM' : 'SIGKILL');
        } catch {
          // already gone
        }
      }
      // Not gone within the second: the next round kills what is left.
      await waitUntil(() => this.leftovers().length === 0, { timeoutMs: 1000, what: 'the processes podman left to end' }).catch(() => undefined);
    }
    for (const m of this.mounts().reverse()) {
      const target = m.split(' ')[1]!;
      forced.push(`left mounted: ${m}`);
      await run('umount', ['-l', target.replace(/\\040/g, ' ')]);
    }
    rmSync(this.root, { recursive: true, force: true });
    return forced;
  }
}

export function tail(text: string, lines = 12): string {
  return text.trim().split('\n').slice(-lines).join('\n');
}

/**
 * What root's podman creates outside any configured directory (the blob info cache of
 * containers/image, runc's state root) or could create if misconfigured (CNI state and its
 * bridge, libpod's shared-memory locks): the paths missing before the tests are removed after
 * them when they are still no more than what podman makes there.
 */
export const MACHINE_PATHS = [
  '/var/lib/containers/cache/blob-info-cache-v1.boltdb',
  '/var/lib/containers/cache',
  '/var/lib/containers',
  '/run/runc',
  '/dev/shm/libpod_lock',
  '/var/lib/cni',
  '/run/containers',
  '/run/libpod',
  '/sys/class/net/cni-podman0',
];

export function existingMachinePaths(): Set<string> {
  return new Set(MACHINE_PATHS.filter((p) => existsSync(p)));
}

/**
 * Removes what appeared since `before` among the paths podman is expected to create (the blob
 * info cache and its directories, an empty runc state root); returns the paths that appeared
 * and that a test must not create (network state, shared-memory locks), left for a person.
 */
export function removeMachineLeftovers(before: Set<string>): string[] {
  const unexpected: string[] = [];
  for (const p of MACHINE_PATHS) {
    if (before.has(p) || !existsSync(p)) continue;
    switch (p) {
      case '/var/lib/containers/cache/blob-info-cache-v1.boltdb':
        rmSync(p, { force: true });
        break;
      case '/var/lib/containers/cache':
      case '/var/lib/containers':
      case '/run/runc':
        try {
          rmdirSync(p);
        } catch {
          unexpected.push(`${p} (not empty)`);
        }
        break;
      default:
        unexpected.push(p);
    }
  }
  return unexpected;
}

/** Adds a subordinate uid and gid range for `name` (usermod); `removeSubids` takes it away. */
export async function addSubids(name: string, start: number, count: number): Promise<void> {
  const range = `${start}-${start + count - 1}`;
  const r = await run('usermod', ['--add-subuids', range, '--add-subgids', range, name]);
  if (r.code !== 0) throw new Error(`usermod --add-subuids ${range} ${name}: ${r.stderr.trim()}`);
}

export async function removeSubids(name: string, start: number, count: number): Promise<void> {
  const range = `${start}-${start + count - 1}`;
  const r = await run('usermod', ['--del-subuids', range, '--del-subgids', range, name]);
  if (r.code !== 0 && !/does not exist/.test(r.stderr)) throw new Error(`usermod --del-subuids ${range} ${name}: ${r.stderr.trim()}`);
}

/** A start for a subordinate range of `count` ids that no line of /etc/subuid or /etc/subgid overlaps. */
export function freeSubidStart(count: number): number {
  const used: [number, number][] = [];
  for (const f of ['/etc/subuid', '/etc/subgid']) {
    if (!existsSync(f)) continue;
    for (const line of readFileSync(f, 'utf8').split('\n')) {
      const [, s, c] = line.split(':');
      if (s && c) used.push([Number(s), Number(s) + Number(c)]);
    }
  }
  // Well above the ranges useradd hands out (100000 up), randomized against concurrent runs.
  for (let tries = 0; tries < 1000; tries++) {
    const start = 1_000_000_000 + Math.floor(Math.random() * 2_000_000) * 1000;
    if (!used.some(([a, b]) => start < b && a < start + count)) return start;
  }
  throw new Error('no free subordinate id range');
}
