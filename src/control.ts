/**
 * The control socket of a running mount: `ovshift ctl MOUNTPOINT COMMAND…` talks to the daemon
 * serving MOUNTPOINT over a unix socket named after the mount's device, in a directory only
 * the daemon's user can reach (/run/ovshift for root, else XDG_RUNTIME_DIR or /tmp,
 * `ovshift-UID`). One request line in, reply lines out; the first is "ok" or "error: …".
 *
 *   inject add RULE    add fault rules (see src/layers/faults.ts for the syntax)
 *   inject list        the rules in force, with their hit counts
 *   inject clear       remove every rule
 *   status             node and handle counts
 */
import createDebug from 'debug';
import * as fs from 'fs';
import * as net from 'net';
import { join } from 'path';
import { FaultRuleError, parseRules, type FaultPlan } from './layers/faults';
import { errorCode } from './util/errno';
import { MountError } from './util/mount-error';

const log = createDebug('ovshift:control');

const ROOT_DIR = '/run/ovshift';

/** Root that owns /run: not the root of a user namespace whose ids map elsewhere on the host. */
function ownsRun(): boolean {
  if (process.geteuid?.() !== 0) return false;
  try {
    return fs.statSync('/run').uid === 0;
  } catch {
    return false;
  }
}

/**
 * Our uid as the parent user namespace knows it: the roots of two user namespaces (rootless
 * containers) are both uid 0 inside, but must not share, or refuse each other's, directory.
 */
function outerUid(): number {
  const uid = process.geteuid?.() ?? 0;
  try {
    for (const line of fs.readFileSync('/proc/self/uid_map', 'utf8').split('\n')) {
      const [inside, outside, count] = line.trim().split(/\s+/).map(Number);
      if (inside !== undefined && outside !== undefined && count !== undefined && uid >= inside && uid < inside + count) {
        return outside + (uid - inside);
      }
    }
  } catch {
    // No /proc: the uid as we see it.
  }
  return uid;
}

/** Where control sockets may live, most specific first: root's /run, else a per-user directory. */
function controlDirs(): string[] {
  const user = join(process.env.XDG_RUNTIME_DIR || '/tmp', `ovshift-${outerUid()}`);
  return ownsRun() ? [ROOT_DIR, user] : [user];
}

/** The socket of the mount whose device is `dev` (st_dev of its root), wherever it was made. */
export function controlPath(dev: number): string {
  const dirs = controlDirs();
  const name = `mount-${dev}.sock`;
  return dirs.map((d) => join(d, name)).find((p) => fs.existsSync(p)) ?? join(dirs[0]!, name);
}

/** Why `dir` may not hold our socket (someone else made it, or could reach into it), if so. */
function whyNotPrivate(dir: string): string | undefined {
  const st = fs.lstatSync(dir);
  const uid = process.geteuid?.() ?? 0;
  if (st.isSymbolicLink()) return 'is a symlink';
  if (!st.isDirectory()) return 'is not a directory';
  if (st.uid !== uid) return `is owned by uid ${st.uid}, not ${uid}`;
  const mode = st.mode & 0o7777;
  if (mode & 0o077) return `has mode ${mode.toString(8).padStart(4, '0')}, not 0700`;
  return undefined;
}

/**
 * Makes `dir` (0700) or checks the one there; false when it cannot be made. Throws
 * MountError for one that exists but is not private to us.
 */
export function privateDir(dir: string): boolean {
  try {
    fs.mkdirSync(dir, { mode: 0o700 });
  } catch (err) {
    if (errorCode(err) !== 'EEXIST') {
      log('cannot make %s: %s', dir, (err as Error).message);
      return false;
    }
  }
  const problem = whyNotPrivate(dir);
  if (problem) throw new MountError(`control socket directory ${dir} ${problem}; refusing to use it`);
  return true;
}

/**
 * The directory for this daemon's control socket, made private to its user (root of a user
 * namespace cannot write the host's /run: the next place is tried); undefined when none can be
 * made, and the mount works on without one. Throws MountError for a directory that
 * exists but is not private to us.
 */
export function controlDir(): string | undefined {
  return controlDirs().find(privateDir);
}

export interface ControlTarget {
  faults: FaultPlan;
  status(): Record<string, number | string>;
}

export function handleCommand(line: string, target: ControlTarget): string[] {
  const words = line.trim().split(/\s+/);
  const [cmd, sub, ...rest] = words;
  try {
    if (cmd === 'inject' && sub === 'add' && rest.length > 0) {
      const rules = parseRules(rest.join(' '));
      target.faults.addAll(rules);
      return ['ok', ...rules.map((r) => `added ${r.text}`)];
    }
    if (cmd === 'inject' && sub === 'list') {
      return ['ok', ...target.faults.list().map((r) => `${r.text}  (hits ${r.hits})`)];
    }
    if (cmd === 'inject' && sub === 'clear') {
      target.faults.clear();
      return ['ok'];
    }
    if (cmd === 'status') {
      return ['ok', ...Object.entries(target.status()).map(([k, v]) => `${k} ${v}`)];
    }
    return [`error: unknown command "${line.trim()}" (inject add RULE | inject list | inject clear | status)`];
  } catch (err) {
    if (err instanceof FaultRuleError) return [`error: ${err.message}`];
    throw err;
  }
}

/**
 * Serves the control socket in `dir` (from controlDir) until `close()`; undefined when it
 * cannot be made: the mount works on without one.
 */
export async function serveControl(dir: string, dev: number, target: ControlTarget): Promise<{ path: string; close(): void } | undefined> {
  try {
    return await listen(join(dir, `mount-${dev}.sock`), target);
  } catch (err) {
    log('no control socket in %s: %s', dir, (err as Error).message);
    return undefined;
  }
}

function answer(sock: net.Socket, target: ControlTarget): void {
  let buf = '';
  sock.setEncoding('utf8');
  sock.on('data', (d: string) => {
    buf += d;
    const nl = buf.indexOf('\n');
    if (nl < 0) return;
    const reply = handleCommand(buf.slice(0, nl), target);
    log('%s -> %s', buf.slice(0, nl), reply[0]);
    sock.end(reply.join('\n') + '\n');
  });
  sock.on('error', () => undefined);
}

async function listen(path: string, target: ControlTarget): Promise<{ path: string; close(): void }> {
  fs.rmSync(path, { force: true });
  const server = net.createServer((sock) => answer(sock, target));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => resolve());
  });
  // Not the umask: it is process-wide, and a server's other mounts may be creating files.
  // Until this chmod only the directory (private, checked) keeps others out.
  fs.chmodSync(path, 0o600);
  server.unref();
  return {
    path,
    close() {
      server.close();
      fs.rmSync(path, { force: true });
    },
  };
}

/** The client side: sends one command to the daemon serving `mountpoint`. */
export async function sendCommand(mountpoint: string, command: string): Promise<string[]> {
  const dev = fs.statSync(mountpoint).dev;
  const path = controlPath(dev);
  if (!fs.existsSync(path)) throw new Error(`no ovshift control socket for ${mountpoint} (${path}): is it an ovshift mount?`);
  return new Promise((resolve, reject) => {
    const sock = net.connect(path);
    let out = '';
    sock.setEncoding('utf8');
    sock.on('connect', () => sock.write(`${command}\n`));
    sock.on('data', (d: string) => (out += d));
    sock.on('end', () => resolve(out.replace(/\n$/, '').split('\n')));
    sock.on('error', (err) => reject(new Error(`control socket ${path}: ${err.message}`)));
  });
}
