/**
 * The ovshift command for tests that run it as another user (an unprivileged user, the root of
 * a user namespace): this checkout when every user can reach it, else a throwaway copy of what
 * the command needs (bin, compiled sources, native addon, runtime dependencies) in a 0755
 * temporary directory, removed when the test process exits. A checkout under /root (0700) is
 * reachable by root alone.
 */
import { chmodSync, cpSync, mkdtempSync, readdirSync, rmSync, statSync } from 'fs';
import { tmpdir } from 'os';
import { dirname, join, resolve } from 'path';
import { OVSHIFT } from './ovshift';

const CHECKOUT = resolve(OVSHIFT, '..', '..');
/** What the commands (bin/*, the native front end) load at run time, relative to the checkout. */
const RUNTIME = [
  'bin',
  'package.json',
  join('dist', 'src'),
  join('build', 'Release', 'ovshift_native.node'),
  join('build', 'Release', 'ovshift'),
  join('node_modules', 'debug'),
  join('node_modules', 'ms'),
  join('node_modules', 'lru-cache'),
];

let copy: string | undefined;

/** Every directory from / down to `path` lets others through, and `path` lets them read. */
function othersReach(path: string): boolean {
  for (let dir = dirname(path); ; dir = dirname(dir)) {
    if ((statSync(dir).mode & 0o001) === 0) return false;
    if (dirname(dir) === dir) break;
  }
  return (statSync(path).mode & 0o004) !== 0;
}

/** The root of a copy of the checkout any user can run from (the checkout itself if it can). */
function reachableRoot(): string {
  if (othersReach(join(CHECKOUT, 'dist', 'src', 'cli.js')) && othersReach(OVSHIFT) && othersReach(join(CHECKOUT, 'build', 'Release', 'ovshift')))
    return CHECKOUT;
  if (!copy) {
    const root = mkdtempSync(join(tmpdir(), 'ovshift-reachable-'));
    process.on('exit', () => rmSync(root, { recursive: true, force: true }));
    for (const part of RUNTIME) cpSync(join(CHECKOUT, part), join(root, part), { recursive: true });
    copy = root;
    makeReadable(root);
  }
  return copy;
}

/** The throwaway copy's front end, once one was made (its mount servers are this run's too). */
export function reachableCopyFrontEnd(): string | undefined {
  return copy === undefined ? undefined : join(copy, 'build', 'Release', 'ovshift');
}

/** The path of an ovshift Node command line (bin/ovshift) any user can run. */
export function reachableOvshift(): string {
  return join(reachableRoot(), 'bin', 'ovshift');
}

/** The path of the native front end (the installed `ovshift` command) any user can run. */
export function reachableFrontEnd(): string {
  return join(reachableRoot(), 'build', 'Release', 'ovshift');
}

/** Directories 0755 and files readable by all (mkdtemp makes 0700; a umask may have masked). */
function makeReadable(root: string): void {
  const walk = (p: string): void => {
    const st = statSync(p);
    chmodSync(p, st.isDirectory() ? 0o755 : st.mode & 0o111 ? 0o755 : 0o644);
    if (st.isDirectory()) for (const name of readdirSync(p)) walk(join(p, name));
  };
  walk(root);
}
