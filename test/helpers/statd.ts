/**
 * The host's rpc.statd (Debian nfs-common) for tests of monitored NLM locks: started on
 * 127.0.0.1 only (through test/helpers/bind-loopback.c: statd has no option to bind one
 * address), with its state in a temporary directory, registered with the portmapper on
 * 127.0.0.1:111 (which must run: start the NFS server first). Stopped by its PID; it removes its
 * registration as it exits.
 */
import * as fs from 'fs';
import * as os from 'os';
import { join, resolve } from 'path';
import { unusedPort } from './ports';
import { Background, run } from './proc';
import { waitUntil } from './wait';

const SHIM_SOURCE = resolve(__dirname, '..', '..', '..', 'test', 'helpers', 'bind-loopback.c');

export interface Statd {
  readonly port: number;
  /** The local addresses statd listens on ("127.0.0.1:PORT"), as ss reports them. */
  listening(): Promise<string[]>;
  /** The hosts statd monitors (its state directory's sm/). */
  monitored(): string[];
  stop(): Promise<void>;
}

export async function startStatd(): Promise<Statd> {
  const dir = fs.mkdtempSync(join(os.tmpdir(), 'ovshift-statd-'));
  try {
    const shim = join(dir, 'bind-loopback.so');
    const built = await run('gcc', ['-shared', '-fPIC', '-O2', '-Wall', '-Werror', '-o', shim, SHIM_SOURCE, '-ldl']);
    if (built.code !== 0) throw new Error(`building ${SHIM_SOURCE}: ${built.stderr}`);
    for (const sub of ['sm', 'sm.bak']) fs.mkdirSync(join(dir, 'state', sub), { recursive: true });
    const port = await unusedPort();
    // -L: no reboot notices to anyone at start; -F -d: in the foreground, logging to stderr.
    const statd = new Background('rpc.statd', ['-F', '-d', '-L', '-p', String(port), '-P', join(dir, 'state')], {
      env: { ...process.env, LD_PRELOAD: shim },
    });
    const registered = async (): Promise<boolean> => (await run('rpcinfo', ['-T', 'tcp', '127.0.0.1', '100024', '1'])).code === 0;
    try {
      await waitUntil(async () => !statd.running || (await registered()), { timeoutMs: 10000, intervalMs: 50, what: 'rpc.statd to register' });
      if (!statd.running) throw new Error(`rpc.statd exited: ${statd.stderr}`);
    } catch (err) {
      await statd.stop();
      throw err;
    }
    return {
      port,
      async listening() {
        const out = await run('ss', ['-Hlntup']);
        return out.stdout
          .split('\n')
          .filter((line) => line.includes(`pid=${statd.child.pid},`))
          .map((line) => line.trim().split(/\s+/)[4]!);
      },
      monitored: () => fs.readdirSync(join(dir, 'state', 'sm')),
      async stop() {
        statd.signal('SIGTERM');
        await Promise.race([statd.exited, new Promise((r) => setTimeout(r, 5000))]);
        await statd.stop();
        fs.rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    fs.rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}
