/**
 * ovshift as a container engine uses it, next to fuse-overlayfs: the mount command in its
 * background form (it returns with the mount ready, leaving a daemon or the per-user server to
 * serve it), the memory of 50 idle mounts, and a podman build with each as containers-storage's
 * mount_program. ovshift is ovshiftCommand(): the native front end once this checkout has it.
 *
 * The daemons are not our children: lib/daemons.ts finds them (every command runs with a token
 * in its environment), and the area ends, by PID, whatever it started that still runs at its
 * end (the ovshift server the first mount started).
 */
import { spawn } from 'child_process';
import { chmodSync, closeSync, copyFileSync, openSync, readFileSync, symlinkSync, writeFileSync } from 'fs';
import { promises as fsp } from 'fs';
import { join, relative, resolve } from 'path';
import { abortConnection, connectionId } from '../src/fuse/mount';
import type { BenchArea, BenchContext } from './area';
import type { Cleanup, Release } from './lib/cleanup';
import { DaemonWatch, describe, grewFuse, isServer, ovshiftCommand, type Candidate } from './lib/daemons';
import { median } from './lib/measure';
import { mountpoints } from './lib/mounts';
import { check, run, sleep } from './lib/proc';
import { clockTicksPerSecond, endProcess, footprint, fuseDescriptors, isRunning, reapedChildrenTicks } from './lib/processes';
import { formatNumber, formatRatio, markdownTable } from './lib/report';
import { GiB, MiB, removeTree, scratchDir, subdir } from './lib/trees';

const REPO = resolve(__dirname, '..', '..');

const LATENCY_MOUNTS = 20;
const LATENCY_TARGET = 3;
const IDLE_MOUNTS = 50;
const IDLE_MS = 2_000;
const MEMORY_TARGET = GiB;
const BUILD_ROUNDS = 3;
const MOUNT_TIMEOUT_MS = 60_000;
const BUILD_TIMEOUT_MS = 600_000;
/** How long a daemon may take to let go of its /dev/fuse descriptor once its mount is gone. */
const SETTLE_MS = 10_000;

interface Subject {
  name: string;
  command: string;
}

interface BackgroundMount {
  dir: string;
  /** From spawning the command to its exit, in ms. */
  ms: number;
  /** CPU time of the command (and whatever it waited for), in clock ticks. */
  commandTicks: number;
  /** CPU time the processes serving the mount spent until it was ready (all of it for new ones), ticks. */
  servingTicks: number;
  /** The processes whose /dev/fuse descriptors grew with this mount. */
  serving: Candidate[];
  /** New processes of ours still running once the mount was ready (a server or the mount's daemon). */
  started: Candidate[];
  unmount: Release;
}

/** Runs `command args` with `env`, stderr to `stderrFile`; resolves with its exit and ms from spawn to exit. */
function timedRun(
  command: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  stderrFile: string,
  timeoutMs: number,
): Promise<{ code: number | null; signal: NodeJS.Signals | null; ms: number }> {
  // A file, not a pipe: a daemon or server that inherits it must neither hold up our wait for
  // the command's end nor get SIGPIPE once we stop reading.
  const errFd = openSync(stderrFile, 'w');
  return new Promise((resolvePromise, reject) => {
    const started = process.hrtime.bigint();
    const child = spawn(command, args, { stdio: ['ignore', 'ignore', errFd], env });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      closeSync(errFd);
      reject(err);
    });
    child.on('exit', (code, signal) => {
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      clearTimeout(timer);
      closeSync(errFd);
      resolvePromise({ code, signal, ms });
    });
  });
}

function lastLines(text: string, n = 3): string {
  return text.trim().split('\n').filter(Boolean).slice(-n).join(' / ') || 'no message';
}

/**
 * Unmounts `dir` (aborting the connection if a plain unmount fails), then waits for the
 * processes that served it to let go: to exit, or (a server) to hold no more /dev/fuse
 * descriptors than before the mount. A daemon of this mount that stays is ended by its PID.
 */
async function unmountAndSettle(dir: string, serving: Candidate[], before: Map<string, Candidate>): Promise<void> {
  const id = await connectionId(dir);
  if (id !== undefined && (await run('umount', [dir])).code !== 0) {
    await abortConnection(id);
    await check('umount', ['-l', dir]);
  }
  const deadline = Date.now() + SETTLE_MS;
  for (const c of serving) {
    const settled = async (): Promise<boolean> =>
      !(await isRunning(c.info.key)) || (await fuseDescriptors(c.info.pid)) <= (before.get(c.info.key)?.fuseFds ?? 0);
    while (!(await settled()) && Date.now() < deadline) await sleep(10);
    if (await settled()) continue;
    if (c.ours && !isServer(c)) await endProcess(c.info.key, 5_000);
    else process.stderr.write(`bench: containers: ${describe(c)} (PID ${c.info.pid}) still holds /dev/fuse ${SETTLE_MS / 1000} s after ${dir} went\n`);
  }
}

/** Mounts with `subject`'s command in the background form, registered for unmounting; throws if it fails. */
async function backgroundMount(
  cleanup: Cleanup,
  watch: DaemonWatch,
  subject: Subject,
  layers: { lower: string; upper: string; work: string },
  dir: string,
  stderrFile: string,
): Promise<BackgroundMount> {
  const before = await watch.candidates();
  const ticksBefore = await reapedChildrenTicks();
  const options = `lowerdir=${layers.lower},upperdir=${layers.upper},workdir=${layers.work}`;
  const exit = await timedRun(subject.command, ['-o', options, dir], watch.env(), stderrFile, MOUNT_TIMEOUT_MS);
  const commandTicks = (await reapedChildrenTicks()) - ticksBefore;
  let serving: Candidate[] = [];
  // Registered whatever the outcome: a failed command may still have left the mount behind.
  const unmount = cleanup.add(`${subject.name} on ${dir}`, () => unmountAndSettle(dir, serving, before));
  if (exit.code !== 0 || (await connectionId(dir)) === undefined) {
    await unmount();
    const why = exit.code !== 0 ? `exited ${exit.code ?? exit.signal}` : 'exited 0 but nothing is mounted there';
    throw new Error(`${subject.name} -o ${options} ${dir}: ${why}: ${lastLines(readFileSync(stderrFile, 'utf8'))}`);
  }
  const after = await watch.candidates();
  serving = grewFuse(before, after);
  const servingTicks = serving.reduce((sum, c) => sum + c.info.cpuTicks - (before.get(c.info.key)?.info.cpuTicks ?? 0), 0);
  const started = [...after.values()].filter((c) => c.ours && !before.has(c.info.key));
  return { dir, ms: exit.ms, commandTicks, servingTicks, serving, started, unmount };
}

/** A lower of a few files: an /etc, a binary-sized file, a directory of small ones. */
function makeSmallLower(dir: string): void {
  writeFileSync(join(subdir(dir, 'etc'), 'hostname'), 'bench\n');
  writeFileSync(join(subdir(dir, 'bin'), 'tool'), Buffer.alloc(64 * 1024, 0x5a));
  for (let i = 0; i < 3; i++) writeFileSync(join(subdir(dir, 'data'), `f${i}`), `file ${i}\n`);
}

const ms = (ticks: number, hz: number): number => (ticks * 1000) / hz;

/** Nearest-rank percentile. */
function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

function commandLabel(command: string): string {
  const rel = relative(REPO, command);
  return rel.startsWith('..') ? command : rel;
}

async function mountLatency(ctx: BenchContext, watch: DaemonWatch, root: string, ovshift: Subject): Promise<string> {
  const subjects: Subject[] = [ovshift, { name: 'fuse-overlayfs', command: 'fuse-overlayfs' }];
  const lower = subdir(root, 'lower');
  makeSmallLower(lower);
  const stderrFile = join(root, 'stderr');
  const hz = await clockTicksPerSecond();
  let runs = 0;
  const mountOnce = async (subject: Subject): Promise<BackgroundMount> => {
    const run = subdir(root, `${++runs}`);
    const layers = { lower, upper: subdir(run, 'upper'), work: subdir(run, 'work') };
    const mounted = await backgroundMount(ctx.cleanup, watch, subject, layers, subdir(run, 'mnt'), stderrFile);
    await mounted.unmount();
    await removeTree(run);
    return mounted;
  };

  // What spawning a command costs here, in both columns alike.
  const spawnMs: number[] = [];
  for (let i = 0; i < LATENCY_MOUNTS; i++) spawnMs.push((await timedRun('true', [], watch.env(), stderrFile, MOUNT_TIMEOUT_MS)).ms);

  const serversBefore = await watch.foreignServers();
  ctx.progress('containers: mount latency, first (cold) mounts');
  const cold: BackgroundMount[] = [];
  for (const subject of subjects) cold.push(await mountOnce(subject));
  const ovshiftStarted = cold[0]!.started;
  const warm: BackgroundMount[][] = subjects.map(() => []);
  for (let round = 0; round < LATENCY_MOUNTS; round++) {
    if (round % 5 === 0) ctx.progress(`containers: mount latency, rounds ${round + 1}-${Math.min(round + 5, LATENCY_MOUNTS)} of ${LATENCY_MOUNTS}`);
    for (const [i, subject] of subjects.entries()) warm[i]!.push(await mountOnce(subject));
  }

  const cell = (v: number): string => formatNumber(v, 1);
  const row = (label: string, values: number[], target = '—'): string[] => [
    label,
    ...values.map(cell),
    values[1]! > 0 ? formatRatio(values[0]! / values[1]!) : '—',
    target,
  ];
  const medians = warm.map((w) => median(w.map((m) => m.ms)));
  const met = medians[0]! <= LATENCY_TARGET * medians[1]!;
  const meanTicks = (w: BackgroundMount[], pick: (m: BackgroundMount) => number): number =>
    ms(
      w.reduce((s, m) => s + pick(m), 0),
      hz,
    ) / w.length;
  const table = markdownTable(
    ['mount command, background form (ms)', ...subjects.map((s) => s.name), `${subjects[0]!.name} ÷ ${subjects[1]!.name}`, 'ovshift target'],
    [
      row(
        'first mount, cold (not in the median)',
        cold.map((m) => m.ms),
      ),
      row(`median of ${LATENCY_MOUNTS} (after the first)`, medians, `≤ ${formatRatio(LATENCY_TARGET)} ${met ? 'met' : '**missed**'}`),
      row(
        `90th percentile of ${LATENCY_MOUNTS}`,
        warm.map((w) =>
          percentile(
            w.map((m) => m.ms),
            90,
          ),
        ),
      ),
      row(
        'CPU per mount, mean: the command',
        warm.map((w) => meanTicks(w, (m) => m.commandTicks)),
      ),
      row(
        'CPU per mount, mean: serving process until ready',
        warm.map((w) => meanTicks(w, (m) => m.servingTicks)),
      ),
    ],
  );

  const serverNote = serversBefore.length
    ? `An ovshift server was already running when the area began (${serversBefore.map((c) => `PID ${c.info.pid}`).join(', ')}), so the first mount did not start one. `
    : ovshiftStarted.some(isServer)
      ? `The first ovshift mount started the server (${ovshiftStarted
          .filter(isServer)
          .map((c) => `PID ${c.info.pid}`)
          .join(', ')}); it served the later mounts. `
      : cold[0]!.serving.length
        ? `Every ovshift mount started a daemon of its own (${describe(cold[0]!.serving[0]!)}); no server was involved. `
        : '';
  return [
    table,
    '',
    `Lower is better. \`${commandLabel(ovshift.command)} -o lowerdir=…,upperdir=…,workdir=… MNT\` and the same for fuse-overlayfs, without -f, ` +
      'timed from spawning the command to its exit (the mount is then ready: checked after, untimed); each mount has a fresh ' +
      'upper and work dir on ext4 over a lower of 5 files, and is unmounted (untimed) before the next; the rounds alternate the ' +
      `two. Spawning \`true\` the same way takes ${cell(median(spawnMs))} ms (median), included in both columns. ` +
      serverNote +
      "CPU: the command's own (user + system, with what it waited for) and that of the processes whose /dev/fuse descriptors " +
      `grew with the mount, from their start or from before the mount (clock ticks of ${formatNumber(1000 / hz)} ms, so a mean over the ${LATENCY_MOUNTS}).`,
    met ? 'ovshift meets its mount latency target.' : `ovshift misses its mount latency target (${formatRatio(medians[0]! / medians[1]!)} of fuse-overlayfs).`,
  ].join('\n');
}

interface IdleFigures {
  processes: number;
  /** Of which not started by the area: an ovshift server someone else started. */
  foreign: number;
  /** Of which already served other mounts before ours (counted by their growth). */
  shared: number;
  fuseFds: number;
  rss: number;
  threads: number;
  cpuMs: number;
}

async function idleMemoryOf(ctx: BenchContext, watch: DaemonWatch, subject: Subject, lowers: string[], root: string): Promise<IdleFigures> {
  const hz = await clockTicksPerSecond();
  const before = await watch.candidates();
  const footprintsBefore = new Map<string, { rss: number; threads: number }>();
  for (const c of before.values()) {
    const f = c.fuseFds ? await footprint(c.info.pid) : undefined;
    if (f) footprintsBefore.set(c.info.key, f);
  }
  const mounts: BackgroundMount[] = [];
  try {
    for (const [i, lower] of lowers.entries()) {
      const base = subdir(root, `${i}`);
      mounts.push(
        await backgroundMount(
          ctx.cleanup,
          watch,
          subject,
          { lower, upper: subdir(base, 'upper'), work: subdir(base, 'work') },
          subdir(base, 'mnt'),
          join(root, 'stderr'),
        ),
      );
    }
    await Promise.all(mounts.map((m) => fsp.stat(m.dir)));
    await sleep(IDLE_MS);
    const after = await watch.candidates();
    const serving = grewFuse(before, after);
    const figures: IdleFigures = {
      processes: serving.length,
      foreign: serving.filter((c) => !c.ours).length,
      shared: 0,
      fuseFds: 0,
      rss: 0,
      threads: 0,
      cpuMs: 0,
    };
    for (const c of serving) {
      const now = await footprint(c.info.pid);
      if (!now) throw new Error(`${subject.name}: PID ${c.info.pid}, serving the mounts, went away`);
      const was = footprintsBefore.get(c.info.key) ?? { rss: 0, threads: 0 };
      if (footprintsBefore.has(c.info.key)) figures.shared++;
      figures.fuseFds += c.fuseFds - (before.get(c.info.key)?.fuseFds ?? 0);
      figures.rss += now.rss - was.rss;
      figures.threads += now.threads - was.threads;
      figures.cpuMs += ms(c.info.cpuTicks - (before.get(c.info.key)?.info.cpuTicks ?? 0), hz);
    }
    return figures;
  } finally {
    ctx.progress(`containers: unmounting the ${mounts.length} ${subject.name} mounts`);
    for (const m of mounts.reverse()) await m.unmount();
  }
}

async function idleMemory(ctx: BenchContext, watch: DaemonWatch, root: string, ovshift: Subject): Promise<string> {
  const subjects: Subject[] = [ovshift, { name: 'fuse-overlayfs', command: 'fuse-overlayfs' }];
  const lowers = Array.from({ length: IDLE_MOUNTS }, (_v, i) => {
    const lower = subdir(root, 'lowers', `${i}`);
    makeSmallLower(lower);
    return lower;
  });
  const figures: IdleFigures[] = [];
  for (const [i, subject] of subjects.entries()) {
    ctx.progress(`containers: ${IDLE_MOUNTS} idle ${subject.name} mounts`);
    figures.push(await idleMemoryOf(ctx, watch, subject, lowers, subdir(root, `${i}`)));
    await removeTree(join(root, `${i}`));
  }
  const [ours, theirs] = figures as [IdleFigures, IdleFigures];
  const met = ours.rss <= MEMORY_TARGET;
  const mib = (b: number): string => formatNumber(b / MiB, 1);
  const ratio = (a: number, b: number): string => (b > 0 ? formatRatio(a / b) : '—');
  const table = markdownTable(
    [`${IDLE_MOUNTS} idle mounts`, ...subjects.map((s) => s.name), `${subjects[0]!.name} ÷ ${subjects[1]!.name}`, 'ovshift target'],
    [
      ['processes serving them', formatNumber(ours.processes), formatNumber(theirs.processes), ratio(ours.processes, theirs.processes), '—'],
      ['threads', formatNumber(ours.threads), formatNumber(theirs.threads), ratio(ours.threads, theirs.threads), '—'],
      [
        'total RSS (MiB)',
        mib(ours.rss),
        mib(theirs.rss),
        ratio(ours.rss, theirs.rss),
        `≤ ${formatNumber(MEMORY_TARGET / MiB)} MiB ${met ? 'met' : '**missed**'}`,
      ],
      ['RSS per mount (MiB)', mib(ours.rss / IDLE_MOUNTS), mib(theirs.rss / IDLE_MOUNTS), ratio(ours.rss, theirs.rss), '—'],
      [
        'CPU time of those processes, first mount to sample (s)',
        formatNumber(ours.cpuMs / 1000, 2),
        formatNumber(theirs.cpuMs / 1000, 2),
        ratio(ours.cpuMs, theirs.cpuMs),
        '—',
      ],
    ],
  );
  const notes: string[] = [];
  for (const [i, f] of figures.entries()) {
    if (f.fuseFds < IDLE_MOUNTS) notes.push(`only ${f.fuseFds} new /dev/fuse descriptors were found for ${subjects[i]!.name}'s ${IDLE_MOUNTS} mounts`);
    if (f.foreign)
      notes.push(`${f.foreign} of ${subjects[i]!.name}'s serving processes are an ovshift server the area did not start (it may serve other mounts too)`);
    if (f.shared) notes.push(`${f.shared} of ${subjects[i]!.name}'s serving processes already served other mounts and count by their growth only`);
  }
  return [
    table,
    '',
    `Lower is better. ${IDLE_MOUNTS} mounts made one after the other with the background command, each over a lower of its own ` +
      `(5 files) with its own upper and work dir on ext4; then a stat() of every mount's root and ${IDLE_MS / 1000} s idle. ` +
      'Counted: every process whose /dev/fuse descriptors grew while they were mounted, each once (VmRSS and Threads from ' +
      '/proc/PID/status; CPU user + system from its start, or from before the mounts for one already running).' +
      (notes.length ? ` **Note:** ${notes.join('; ')}.` : ''),
    met
      ? `ovshift meets its memory target (${mib(ours.rss)} MiB for ${IDLE_MOUNTS} mounts).`
      : `ovshift misses its memory target: ${mib(ours.rss)} MiB for ${IDLE_MOUNTS} mounts, ${mib(ours.rss / IDLE_MOUNTS)} MiB each.`,
  ].join('\n');
}

/** Runs `command` with `env` to its end, output kept; killed by its PID after `timeoutMs`. */
function runWithEnv(command: string, args: string[], env: NodeJS.ProcessEnv, timeoutMs: number): Promise<{ code: number | null; output: string; ms: number }> {
  return new Promise((resolvePromise, reject) => {
    const started = process.hrtime.bigint();
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
    let output = '';
    const keep = (d: Buffer): void => void (output = (output + d.toString()).slice(-20_000));
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    // Timed to its exit; the output is complete once its pipes close (a daemon it left holding
    // them is its fault: it is on the storage and ends with it).
    let ms = 0;
    child.on('exit', () => (ms = Number(process.hrtime.bigint() - started) / 1e6));
    child.on('close', (code) => {
      clearTimeout(timer);
      resolvePromise({ code, output, ms });
    });
  });
}

/** /bin/busybox of Debian's busybox-static, installed if missing. */
async function busyboxStatic(ctx: BenchContext): Promise<string> {
  const installed = async (): Promise<boolean> => (await run('dpkg-query', ['-W', '-f=${Status}', 'busybox-static'])).stdout.includes('install ok installed');
  if (!(await installed())) {
    ctx.progress('containers: installing busybox-static');
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    let r = await runWithEnv('apt-get', ['install', '-y', '-qq', '--no-install-recommends', 'busybox-static'], env, BUILD_TIMEOUT_MS);
    if (r.code !== 0) {
      await runWithEnv('apt-get', ['update', '-qq'], env, BUILD_TIMEOUT_MS);
      r = await runWithEnv('apt-get', ['install', '-y', '-qq', '--no-install-recommends', 'busybox-static'], env, BUILD_TIMEOUT_MS);
    }
    if (r.code !== 0 || !(await installed())) throw new Error(`cannot install busybox-static: ${lastLines(r.output)}`);
  }
  const path = (await check('dpkg', ['-L', 'busybox-static'])).split('\n').find((l) => /\/bin\/busybox$/.test(l));
  if (!path) throw new Error('busybox-static installs no bin/busybox');
  return path;
}

const BASE_IMAGE = 'localhost/ovshift-bench-base';
const BUILT_IMAGE = 'localhost/ovshift-bench-built';
const BUILD_OK = 'ovshift-bench-build-ok';

/** The base image's rootfs as a tarball (busybox and a few files), and the build context. */
async function makeImageInputs(ctx: BenchContext, dir: string): Promise<{ tarball: string; context: string }> {
  const rootfs = subdir(dir, 'rootfs');
  copyFileSync(await busyboxStatic(ctx), join(subdir(rootfs, 'bin'), 'busybox'));
  chmodSync(join(rootfs, 'bin', 'busybox'), 0o755);
  for (const applet of ['sh', 'rm', 'mv', 'chmod', 'cat', 'echo', 'test', 'stat', 'ls', 'mkdir', 'true']) {
    symlinkSync('busybox', join(rootfs, 'bin', applet));
  }
  subdir(rootfs, 'tmp');
  for (let i = 1; i <= 6; i++) writeFileSync(join(subdir(rootfs, 'data'), `f${i}`), `file ${i}\n`.repeat(100 * i));
  for (let i = 1; i <= 3; i++) writeFileSync(join(subdir(rootfs, 'data', 'dir'), `g${i}`), `g ${i}\n`);
  const tarball = join(dir, 'rootfs.tar');
  await check('tar', ['--numeric-owner', '--owner=0', '--group=0', '-C', rootfs, '-cf', tarball, '.']);

  const context = subdir(dir, 'context');
  writeFileSync(join(context, 'note'), 'note\n');
  writeFileSync(
    join(context, 'Containerfile'),
    [
      `FROM ${BASE_IMAGE}`,
      'RUN rm /data/f1 /data/dir/g1',
      'RUN mv /data/f2 /data/renamed && mv /data/dir /data/moved',
      'RUN chmod 0600 /data/f3 && chmod 0700 /data/moved',
      'COPY note /data/note',
      'RUN echo written > /data/new && echo appended >> /data/f4 && test ! -e /data/f1 && test ! -e /data/f2 && ' +
        'test -f /data/renamed && test ! -e /data/dir && test ! -e /data/moved/g1 && test -f /data/moved/g2 && ' +
        `test "$(stat -c %a /data/f3)" = 600 && test "$(cat /data/note)" = note && echo ${BUILD_OK}`,
      '',
    ].join('\n'),
  );
  return { tarball, context };
}

/**
 * Removes a podman storage: unmounts whatever is mounted below it (podman leaves the bind
 * mount of graphroot/overlay), ends the processes of ours that outlived the build (a daemon of a
 * mount, anything podman left), then the files (owned by whatever ids: we are root).
 */
async function removeStorage(watch: DaemonWatch, store: string, leftovers: string[]): Promise<void> {
  const inside = (await mountpoints()).filter((m) => m === store || m.startsWith(`${store}/`));
  for (const dir of inside.sort((a, b) => b.length - a.length)) {
    const id = await connectionId(dir);
    if ((await run('umount', [dir])).code === 0) continue;
    if (id !== undefined) await abortConnection(id);
    await check('umount', ['-l', dir]);
  }
  const deadline = Date.now() + SETTLE_MS;
  const lingering = async (): Promise<Candidate[]> => [...(await watch.candidates()).values()].filter((c) => c.ours && !isServer(c) && c.info.state !== 'Z');
  while ((await lingering()).length && Date.now() < deadline) await sleep(50);
  leftovers.push(...(await watch.endOurs((c) => !isServer(c))));
  await removeTree(store);
}

/**
 * The gist of a failed build's output: its last error line, with what was printed just before
 * it (the failing RUN's complaint) as context. Ids and the Containerfile step podman repeats in
 * the error (three copies of the RUN line) are left out, so equal failures read alike.
 */
function buildError(output: string): { error: string; context: string } {
  const noise = /^(STEP \d|--> |Copying |Writing |Getting |Storing |COMMIT )/;
  const lines = output
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !noise.test(l) && l !== BUILD_OK);
  let at = lines.map((l) => /^Error: /.test(l)).lastIndexOf(true);
  if (at < 0) at = lines.length - 1;
  const cut = (l: string): string => {
    const line = l
      .replace(/step \{.*\}: /, 'step: ')
      .replace(/^time="[^"]*" /, '')
      .replace(/[0-9a-f]{12,64}/g, '…')
      .replace(/containers-storage:\S+-working-container/g, 'containers-storage:…-working-container')
      .replace(/storage-\d+/g, 'storage-N');
    return line.length > 300 ? `${line.slice(0, 120)} … ${line.slice(-160)}` : line;
  };
  return {
    error: cut(lines[at] ?? 'no message'),
    context: lines
      .slice(Math.max(0, at - 2), Math.max(0, at))
      .map(cut)
      .join(' / '),
  };
}

interface BuildSubject {
  name: string;
  program: string;
  ms: number[];
  attempts: number;
  /** Why builds failed: each error once, with how often and what the first such build printed before it. */
  errors: Map<string, { count: number; context: string }>;
}

async function buildOnce(
  ctx: BenchContext,
  watch: DaemonWatch,
  subject: BuildSubject,
  store: string,
  inputs: { tarball: string; context: string; tmpdir: string },
  leftovers: string[],
): Promise<void> {
  const graph = subdir(store, 'graph');
  const runroot = subdir(store, 'run');
  const tmp = subdir(store, 'tmp');
  // podman 4.3 tests whether overlay takes idmapped lowers and may then shift ids twice; say it does not.
  writeFileSync(join(subdir(runroot, 'overlay'), 'idmapped-lower-dir-false'), '');
  writeFileSync(
    join(store, 'storage.conf'),
    [
      '[storage]',
      'driver = "overlay"',
      `graphroot = "${graph}"`,
      `runroot = "${runroot}"`,
      '[storage.options.overlay]',
      `mount_program = "${subject.program}"`,
      '',
    ].join('\n'),
  );
  writeFileSync(
    join(store, 'containers.conf'),
    [
      '[engine]',
      'runtime = "runc"',
      'cgroup_manager = "cgroupfs"',
      'events_logger = "file"',
      `events_logfile_path = "${join(tmp, 'events.log')}"`,
      `tmp_dir = "${tmp}"`,
      `image_copy_tmp_dir = "${tmp}"`,
      '[network]',
      `network_config_dir = "${subdir(store, 'networks')}"`,
      '',
    ].join('\n'),
  );
  const env = watch.env({
    CONTAINERS_STORAGE_CONF: join(store, 'storage.conf'),
    CONTAINERS_CONF: join(store, 'containers.conf'),
    TMPDIR: inputs.tmpdir,
  });
  subject.attempts++;
  const release = ctx.cleanup.add(`podman storage ${store}`, () => removeStorage(watch, store, leftovers));
  try {
    const imported = await runWithEnv('podman', ['import', inputs.tarball, BASE_IMAGE], env, BUILD_TIMEOUT_MS);
    if (imported.code !== 0) throw new Error(`podman import: ${lastLines(imported.output)}`);
    const built = await runWithEnv('podman', ['build', '--pull=never', '--isolation', 'chroot', '-t', BUILT_IMAGE, inputs.context], env, BUILD_TIMEOUT_MS);
    // The last RUN prints BUILD_OK on a line of its own once it has checked the others' work.
    if (built.code === 0 && built.output.split('\n').some((l) => l.trim() === BUILD_OK)) {
      subject.ms.push(built.ms);
    } else {
      const { error, context } = buildError(built.output);
      const seen = subject.errors.get(error);
      if (seen) seen.count++;
      else subject.errors.set(error, { count: 1, context });
    }
  } finally {
    await release();
  }
}

async function podmanBuilds(ctx: BenchContext, watch: DaemonWatch, root: string, ovshift: Subject): Promise<string> {
  const version = (await check('podman', ['--version'])).trim();
  // One TMPDIR for every build: the ovshift server a build starts keeps the environment it
  // started with, and the storages (with their tmp dirs) go after each build.
  const inputs = { ...(await makeImageInputs(ctx, subdir(root, 'image'))), tmpdir: subdir(root, 'tmp') };
  const subjects: BuildSubject[] = [
    { name: `ovshift (\`${commandLabel(ovshift.command)}\`)`, program: ovshift.command, ms: [], attempts: 0, errors: new Map() },
    { name: 'fuse-overlayfs', program: (await check('sh', ['-c', 'command -v fuse-overlayfs'])).trim(), ms: [], attempts: 0, errors: new Map() },
  ];
  const [ours, baseline] = subjects as [BuildSubject, BuildSubject];
  const leftovers: string[] = [];
  let stores = 0;
  for (let round = 0; round < BUILD_ROUNDS; round++) {
    for (const subject of subjects) {
      ctx.progress(`containers: podman build with ${subject.name}, round ${round + 1} of ${BUILD_ROUNDS}`);
      await buildOnce(ctx, watch, subject, subdir(root, `storage-${++stores}`), inputs, leftovers);
    }
  }

  const seconds = (s: BuildSubject): number | undefined => (s.ms.length ? median(s.ms) / 1000 : undefined);
  const [mine, theirs] = [seconds(ours), seconds(baseline)];
  const rows = subjects.map((s) => [s.name, seconds(s) === undefined ? '**failed**' : formatNumber(seconds(s)!, 2), `${s.ms.length} of ${s.attempts}`]);
  const failures = subjects.flatMap((s) =>
    [...s.errors].map(([error, { count, context }]) => `${s.name}, ${count} of ${s.attempts}: ${context ? `${context} / ` : ''}${error}`),
  );
  return [
    markdownTable([`podman build, 5 steps (s, median of the builds that succeeded)`, 'wall clock', 'succeeded'], rows),
    '',
    `ovshift ÷ fuse-overlayfs: ${mine !== undefined && theirs !== undefined ? formatRatio(mine / theirs) : '— (no successful build to compare)'} ` +
      '(lower is better; no target).',
    '',
    `${version}, \`podman build --pull=never --isolation chroot\` of a Containerfile of 5 steps (RUN rm, RUN mv of a file and ` +
      'a directory, RUN chmod, COPY, RUN that writes and appends and checks what the others did) from a base image ' +
      "`podman import`ed (untimed) from a tarball of Debian's busybox-static and a few files; wall clock of the build, " +
      `${BUILD_ROUNDS} builds each, alternating, each on a fresh storage (graphroot, runroot and tmp dirs in a temp dir through ` +
      'CONTAINERS_STORAGE_CONF and CONTAINERS_CONF: runtime runc, cgroupfs, file events; `overlay/idmapped-lower-dir-false` ' +
      'in the runroot; TMPDIR one dir for all builds, as an ovshift server started by one build serves the next) with the ' +
      'mount_program named. Chroot isolation runs the RUN steps in a chroot on the mount: no ' +
      'runtime, network or cgroup setup (podman refuses --network none with it, and host networking sets nothing up).' +
      (leftovers.length ? ` Processes still running after their storage was unmounted, ended by PID: ${leftovers.join(', ')}.` : ''),
    ...(failures.length ? ['', `**Builds that failed:** ${failures.join('; ')}.`] : []),
  ].join('\n');
}

async function runArea(ctx: BenchContext): Promise<string> {
  const scratch = scratchDir(ctx.cleanup, '/var/tmp', 'ovshift-bench-containers-');
  const watch = new DaemonWatch(scratch);
  await watch.start();
  const ended: string[] = [];
  const endOurs = async (which: (c: Candidate) => boolean, when: string): Promise<void> => {
    for (const line of await watch.endOurs(which)) ended.push(`${line} ${when}`);
  };
  // Registered before any mount, so it runs after every unmount, also on failure: ends, by
  // PID, whatever this area started that still runs (the ovshift server, above all).
  const endAll = ctx.cleanup.add('processes started by the containers area', () => endOurs(() => true, 'at the end'));
  const ovshift: Subject = { name: 'ovshift', command: ovshiftCommand() };

  // Each part starts with no server of ours, so its first ovshift mount starts one (as the
  // first container of a host would).
  const latency = await mountLatency(ctx, watch, subdir(scratch, 'latency'), ovshift);
  await endOurs(isServer, 'after the mount latency');
  const memory = await idleMemory(ctx, watch, subdir(scratch, 'memory'), ovshift);
  await endOurs(isServer, 'after the idle mounts');
  const builds = await podmanBuilds(ctx, watch, subdir(scratch, 'podman'), ovshift);
  await endAll();

  const how = commandLabel(ovshift.command);
  const kind =
    how === 'build/Release/ovshift' ? ' (the native front end, asking the per-user server)' : how === 'bin/ovshift' ? ' (Node, a daemon per mount)' : '';
  return [
    '### Containers (`scripts/bench containers`)',
    '',
    `ovshift is \`${how}\`${kind}.`,
    '',
    latency,
    '',
    memory,
    '',
    builds,
    '',
    ended.length ? `Processes the area started and ended by PID: ${ended.join('; ')}.` : 'Nothing the area started was left running.',
  ].join('\n');
}

export const containersArea: BenchArea = {
  name: 'containers',
  summary: 'ovshift vs fuse-overlayfs for container engines: background mount latency, memory of 50 idle mounts, podman build',
  run: runArea,
};
