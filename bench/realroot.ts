/**
 * Real programs over a real root: this machine's `/` bind-mounted read-only as the lower, a
 * tmpfs upper, a fresh mount for every run, on ovshift, fuse-overlayfs and kernel overlayfs.
 * The programs run in a chroot of the mount (with /dev and /proc mounted in it for the run) or,
 * for the walk and the archive, on paths below it.
 */
import { existsSync, writeFileSync } from 'fs';
import { join } from 'path';
import type { BenchArea, BenchContext } from './area';
import type { Cleanup } from './lib/cleanup';
import { bindReadOnly, mountKernel } from './lib/mounts';
import { timeOnOverlays, type OverlayWorkload } from './lib/overlays';
import { THREE_WAY, threeWayReport } from './lib/three-way';
import { check, run, timed } from './lib/proc';
import { formatNumber } from './lib/report';
import { MiB, scratchDir, subdir } from './lib/trees';
import type { WorkloadResult } from './lib/workload';

const ROUNDS = 3;
const TARGET = 1.0;
/** What a chroot's programs get for an environment: nothing of the caller's. */
const CHROOT_ENV = { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', HOME: '/root', LANG: 'C.UTF-8' };
const PYTHON_IMPORTS = 'import json, re, subprocess, email, http.client, xml.dom.minidom, sqlite3, asyncio, decimal, unittest, argparse, logging';
const PYTHON_RUNS = 5;
/** Headers a C program of some size includes; gcc reads each through the mount. */
const HEADERS = [
  'stdio.h',
  'stdlib.h',
  'string.h',
  'unistd.h',
  'fcntl.h',
  'errno.h',
  'signal.h',
  'pthread.h',
  'math.h',
  'time.h',
  'locale.h',
  'wchar.h',
  'ctype.h',
  'dirent.h',
  'sys/socket.h',
  'sys/stat.h',
  'sys/mman.h',
  'sys/wait.h',
  'sys/ioctl.h',
  'netinet/in.h',
  'arpa/inet.h',
  'netdb.h',
  'poll.h',
  'regex.h',
  'glob.h',
  'termios.h',
  'linux/fs.h',
  'linux/fuse.h',
];
const C_SOURCE = `${HEADERS.map((h) => `#include <${h}>`).join('\n')}\nint main(void) { return 0; }\n`;

/** Runs `script` with sh in a chroot of `mnt`, /dev and /proc mounted there for the run. */
async function inChroot(cleanup: Cleanup, mnt: string, script: string): Promise<{ ms: number; stdout: string }> {
  await check('mount', ['--bind', '/dev', join(mnt, 'dev')]);
  const dev = cleanup.add(`/dev in ${mnt}`, () => run('umount', ['-l', join(mnt, 'dev')]).then(() => undefined));
  const proc = await mountKernel(cleanup, 'proc', 'proc', join(mnt, 'proc'), 'rw');
  try {
    return await timed('chroot', [mnt, '/bin/sh', '-c', script], { env: CHROOT_ENV });
  } finally {
    await proc.unmount();
    await dev();
  }
}

/** A workload run by `measure`, valid when it counts `expect`. */
function workload(name: string, expect: number, measure: (mnt: string) => Promise<WorkloadResult>): OverlayWorkload {
  return { name, expect, command: () => [], run: measure };
}

function lines(text: string): number {
  return text.split('\n').filter((l) => l !== '').length;
}

async function realrootWorkloads(ctx: BenchContext, lower: string): Promise<OverlayWorkload[]> {
  const tarPaths = ['usr/share/perl', 'usr/lib/python3.11'].filter((p) => existsSync(join(lower, p)));
  const tarScript = (root: string): string => `tar -C ${root} -cf - ${tarPaths.join(' ')} | tar -tf - | wc -l`;
  // What each program gives on the lower itself: the same on every mount, or it did not do the work.
  const walkCount = (await ctx.workloads.run('walk', join(lower, 'usr/lib'))).count;
  const tarEntries = Number((await check('sh', ['-c', tarScript(lower)])).trim());
  const aptLines = lines(await check('apt-cache', ['policy']));
  await check('/usr/bin/python3', ['-c', PYTHON_IMPORTS]);
  await check('dpkg', ['-S', '/bin/ls']);
  const source = join(scratchDir(ctx.cleanup, '/var/tmp', 'ovshift-bench-c-'), 'headers.c');
  writeFileSync(source, C_SOURCE);
  await check('gcc', ['-fsyntax-only', source]);
  return [
    {
      name: `find usr/lib: lstat of ${formatNumber(walkCount)} entries`,
      expect: walkCount,
      command: (mnt) => ['walk', join(mnt, 'usr/lib')],
    },
    workload(`tar of ${tarPaths.join(' + ')} (${formatNumber(tarEntries)} entries)`, tarEntries, async (mnt) => {
      const r = await timed('sh', ['-c', tarScript(mnt)]);
      return { ms: r.ms, count: Number(r.stdout.trim()) };
    }),
    workload(`python3 started ${PYTHON_RUNS} times, importing 12 stdlib modules`, PYTHON_RUNS, async (mnt) => {
      const r = await inChroot(
        ctx.cleanup,
        mnt,
        `for i in ${Array.from({ length: PYTHON_RUNS }, (_v, i) => i).join(' ')}; do /usr/bin/python3 -c '${PYTHON_IMPORTS}; print("ok")'; done`,
      );
      return { ms: r.ms, count: lines(r.stdout) };
    }),
    workload('dpkg -S /bin/ls', 1, async (mnt) => {
      const r = await inChroot(ctx.cleanup, mnt, 'dpkg -S /bin/ls');
      return { ms: r.ms, count: r.stdout.trim() === 'coreutils: /bin/ls' ? 1 : 0 };
    }),
    workload('apt-cache policy', aptLines, async (mnt) => {
      const r = await inChroot(ctx.cleanup, mnt, 'apt-cache policy');
      return { ms: r.ms, count: lines(r.stdout) };
    }),
    workload(`gcc -fsyntax-only of a file including ${HEADERS.length} headers`, 1, async (mnt) => {
      writeFileSync(join(mnt, 'tmp', 'ovshift-bench-headers.c'), C_SOURCE);
      const r = await inChroot(ctx.cleanup, mnt, 'gcc -fsyntax-only /tmp/ovshift-bench-headers.c && echo ok');
      return { ms: r.ms, count: lines(r.stdout) };
    }),
  ];
}

async function run_(ctx: BenchContext): Promise<string> {
  const scratch = scratchDir(ctx.cleanup, '/var/tmp', 'ovshift-bench-realroot-');
  const lower = (await bindReadOnly(ctx.cleanup, '/', subdir(scratch, 'root'))).dir;
  ctx.progress('realroot: reading the programs and trees once on the root itself (warm page cache)');
  const workloads = await realrootWorkloads(ctx, lower);
  const times = await timeOnOverlays(
    { ...ctx, progress: (m) => ctx.progress(`realroot: ${m}`) },
    { lower, scratch, upperSize: 512 * MiB, subjects: THREE_WAY, workloads, rounds: ROUNDS },
  );
  return threeWayReport({
    title: '### A real root (`scripts/bench realroot`)',
    names: workloads.map((w) => w.name),
    times,
    rounds: ROUNDS,
    target: TARGET,
    about:
      "Lower is better. The lower is this machine's root filesystem bind-mounted read-only (page cache warm: each program " +
      'ran once on it first), the upper a tmpfs, a fresh mount for every run, default options. The programs run in a ' +
      'chroot of the mount with /dev and /proc mounted in it (the walk and the archive on paths below the mount); times ' +
      'include starting them. CPU: the daemon, all threads.',
  });
}

export const realrootArea: BenchArea = {
  name: 'realroot',
  summary: "real programs over this machine's root as the lower (ovshift, fuse-overlayfs, kernel overlayfs)",
  run: run_,
};
