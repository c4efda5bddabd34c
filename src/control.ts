/**
 * The control socket of a running mount: `ovshift ctl MOUNTPOINT COMMAND…` talks to the daemon
 * serving MOUNTPOINT over a unix socket named after the mount's device. One request line in,
 * reply lines out; the first reply line is "ok" or "error: …".
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

const log = createDebug('ovshift:control');

/** Where control sockets may live, most specific first: root's /run, else a per-user directory. */
function controlDirs(): string[] {
  const user = join(process.env.XDG_RUNTIME_DIR || '/tmp', `ovshift-${process.getuid?.() ?? 0}`);
  return process.geteuid?.() === 0 ? ['/run/ovshift', user] : [user];
}

/** The socket of the mount whose device is `dev` (st_dev of its root), wherever it was made. */
export function controlPath(dev: number): string {
  const dirs = controlDirs();
  const name = `mount-${dev}.sock`;
  return dirs.map((d) => join(d, name)).find((p) => fs.existsSync(p)) ?? join(dirs[0]!, name);
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
      for (const r of rules) target.faults.add(r);
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
 * Serves the control socket until `close()`, in the first place it can be made (root of a user
 * namespace cannot write the host's /run); undefined when none can be made: the mount works on
 * without one.
 */
export async function serveControl(dev: number, target: ControlTarget): Promise<{ path: string; close(): void } | undefined> {
  for (const dir of controlDirs()) {
    try {
      return await listen(join(dir, `mount-${dev}.sock`), dir, target);
    } catch (err) {
      log('no control socket in %s: %s', dir, (err as Error).message);
    }
  }
  return undefined;
}

async function listen(path: string, dir: string, target: ControlTarget): Promise<{ path: string; close(): void }> {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  fs.rmSync(path, { force: true });
  const server = net.createServer((sock) => {
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
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => resolve());
  });
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
