// Test helper: a real nfs-ganesha on 127.0.0.1 exporting a directory, run through scripts/nfs-server.
//
//   const server = await startNfsServer(dir);
//   after(() => server.stop());
//   const client = await NfsClient.connect(server.url());

import { ChildProcess, spawn } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { waitUntil } from '../helpers/wait';

const START_TIMEOUT_MS = 40_000;
const STOP_TIMEOUT_MS = 20_000;

export interface NfsServerInfo {
  supervisorPid: number;
  ganeshaPid: number;
  rpcbindPid: number | null;
  /** ganesha's own rpcbind (with `ownPortmapper`). */
  ownRpcbindPid: number | null;
  port: number;
  mountPort: number;
  nlmPort: number;
  export: string;
  stateDir: string;
}

export interface NfsTestServer {
  /** The exported directory (real path). */
  readonly exportDir: string;
  readonly port: number;
  readonly mountPort: number;
  /** The lock manager's (NLM 4). */
  readonly nlmPort: number;
  /** PIDs of the running server; changes on restart(). */
  readonly info: NfsServerInfo;
  /** nfs:// URL of the export (or a subdirectory) with explicit ports (NLM's too), plus extra `options` ("soft&timeo=5"). */
  url(subdir?: string, options?: string): string;
  /** Stops ganesha (and the rpcbind it started) and removes the state directory. Idempotent. */
  stop(): Promise<void>;
  /** Stops the server without cleaning up, for a test that takes the server down for a while. */
  halt(): Promise<void>;
  /** Kills ganesha with SIGKILL, as a crash would: connections reset at once, nothing is unregistered. */
  crash(): Promise<void>;
  /** Starts the server again on the same ports after halt() or crash(). */
  resume(): Promise<void>;
  /** halt() then resume(). */
  restart(): Promise<void>;
  /** Freezes ganesha (SIGSTOP): connections stay open but nothing is answered. */
  freeze(): Promise<void>;
  /** Lets a frozen ganesha run again; does nothing when it is not frozen or not running. */
  thaw(): void;
}

const running = new Set<ChildProcess>();

// If the test process dies, each supervisor also notices its stdin closing and stops its children.
process.on('exit', () => {
  for (const child of running) child.kill('SIGTERM');
});

/** Path of scripts/nfs-server in this checkout. */
export function nfsServerScript(): string {
  for (let dir = __dirname; ; dir = path.dirname(dir)) {
    const candidate = path.join(dir, 'scripts', 'nfs-server');
    if (fs.existsSync(candidate)) return candidate;
    if (path.dirname(dir) === dir) throw new Error(`scripts/nfs-server not found above ${__dirname}`);
  }
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} took more than ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** True if `pid` exists and is not a zombie (an orphan's zombie lingers when init does not reap). */
export function isAlive(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat[stat.lastIndexOf(')') + 2] !== 'Z';
  } catch {
    return false;
  }
}

function allThreadsStopped(pid: number): boolean {
  return fs.readdirSync(`/proc/${pid}/task`).every((tid) => {
    try {
      const stat = fs.readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      return stat[stat.lastIndexOf(')') + 2] === 'T';
    } catch {
      return true; // the thread has exited
    }
  });
}

export interface NfsServerOptions {
  /**
   * ganesha registers with a portmapper of its own, as on a host of its own, not with this
   * host's (127.0.0.1:111): then a client's NLM service registered here receives its callbacks.
   */
  ownPortmapper?: boolean;
  /** NFSv4 lease time in seconds (ganesha's default: 60). */
  leaseSeconds?: number;
  /** An NFSv4 grace period after each start, in seconds, for reclaims; default none. */
  graceSeconds?: number;
  /** The protocols served; default NFSv3 and NFSv4. */
  protocols?: '3' | '4' | '3,4';
}

async function launch(script: string, dir: string, stateDir: string, options: NfsServerOptions, ports?: { port: number; mountPort: number; nlmPort: number }) {
  const args = ['run', dir, '--state', stateDir];
  if (options.ownPortmapper === true) args.push('--own-portmapper');
  if (options.leaseSeconds !== undefined) args.push('--lease', String(options.leaseSeconds));
  if (options.graceSeconds !== undefined) args.push('--grace', String(options.graceSeconds));
  if (options.protocols !== undefined) args.push('--protocols', options.protocols);
  if (ports !== undefined) args.push('--port', String(ports.port), '--mountport', String(ports.mountPort), '--nlmport', String(ports.nlmPort));
  const child = spawn(script, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  running.add(child);
  let stdout = '';
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const info = await withTimeout(
    new Promise<NfsServerInfo>((resolve, reject) => {
      child.stdout?.on('data', (chunk: Buffer) => {
        stdout += chunk.toString();
        const newline = stdout.indexOf('\n');
        if (newline >= 0) resolve(JSON.parse(stdout.slice(0, newline)) as NfsServerInfo);
      });
      child.on('error', reject);
      child.on('exit', (code) => reject(new Error(`nfs-server exited with ${code} before it was ready:\n${stderr}`)));
    }),
    START_TIMEOUT_MS,
    'starting nfs-server',
  ).catch(async (error: Error) => {
    child.kill('SIGTERM');
    await exited(child);
    running.delete(child);
    throw error;
  });
  return { child, info };
}

async function terminate(child: ChildProcess, info: NfsServerInfo): Promise<void> {
  child.kill('SIGTERM');
  try {
    await withTimeout(exited(child), STOP_TIMEOUT_MS, 'stopping nfs-server');
  } catch {
    // The supervisor hung: end it and exactly the processes it reported.
    for (const pid of [child.pid, info.ganeshaPid, info.ownRpcbindPid, info.rpcbindPid]) {
      if (pid != null && isAlive(pid)) process.kill(pid, 'SIGKILL');
    }
    await exited(child);
  }
  running.delete(child);
}

/** Starts ganesha exporting `dir` (which must exist) on free loopback ports. */
export async function startNfsServer(dir: string, options: NfsServerOptions = {}): Promise<NfsTestServer> {
  const script = nfsServerScript();
  const exportDir = fs.realpathSync(dir);
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ovshift-nfs-test-'));
  let current: { child: ChildProcess; info: NfsServerInfo } | undefined;
  try {
    current = await launch(script, exportDir, stateDir, options);
  } catch (error) {
    fs.rmSync(stateDir, { recursive: true, force: true });
    throw error;
  }
  const { port, mountPort, nlmPort } = current.info;
  let stopped = false;

  const server: NfsTestServer = {
    exportDir,
    port,
    mountPort,
    nlmPort,
    get info() {
      if (current === undefined) throw new Error('the NFS server is halted');
      return current.info;
    },
    url(subdir = '', options = '') {
      const sub = subdir === '' ? '' : `/${subdir.replace(/^\/+/, '')}`;
      return `nfs://127.0.0.1:${port}${exportDir}${sub}?mountport=${mountPort}&nlmport=${nlmPort}${options === '' ? '' : `&${options}`}`;
    },
    async halt() {
      if (current === undefined) return;
      const { child, info } = current;
      current = undefined;
      await terminate(child, info);
    },
    async crash() {
      if (current === undefined) return;
      const { child, info } = current;
      current = undefined;
      process.kill(info.ganeshaPid, 'SIGKILL');
      // The supervisor sees ganesha die, stops its rpcbind and exits.
      await withTimeout(exited(child), STOP_TIMEOUT_MS, 'nfs-server exiting after ganesha died').catch(() => terminate(child, info));
      running.delete(child);
    },
    async resume() {
      if (stopped) throw new Error('the NFS server was stopped');
      if (current !== undefined) return;
      current = await launch(script, exportDir, stateDir, options, { port, mountPort, nlmPort });
    },
    async restart() {
      await server.halt();
      await server.resume();
    },
    async freeze() {
      const pid = server.info.ganeshaPid;
      process.kill(pid, 'SIGSTOP');
      // A stop takes effect per thread; wait until none can answer any more.
      await waitUntil(() => allThreadsStopped(pid), { timeoutMs: STOP_TIMEOUT_MS, intervalMs: 10, what: `ganesha (pid ${pid}) to stop` });
    },
    thaw() {
      if (current !== undefined && isAlive(current.info.ganeshaPid)) process.kill(current.info.ganeshaPid, 'SIGCONT');
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      server.thaw();
      await server.halt();
      fs.rmSync(stateDir, { recursive: true, force: true });
    },
  };
  return server;
}

/**
 * This host's portmapper on 127.0.0.1:111, for the clients' side when servers run with
 * `ownPortmapper` (they leave this host's alone): started unless one serves already, stopped by
 * `stop()` if it was started here.
 */
export async function startHostPortmapper(): Promise<{ stop(): Promise<void> }> {
  const logFile = path.join(os.tmpdir(), `ovshift-portmapper-${process.pid}-${Date.now()}.log`);
  const child = spawn(nfsServerScript(), ['portmapper', logFile], { stdio: ['pipe', 'pipe', 'pipe'] });
  running.add(child);
  let stdout = '';
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const stop = async (): Promise<void> => {
    child.kill('SIGTERM');
    await withTimeout(exited(child), STOP_TIMEOUT_MS, 'stopping the portmapper').catch(() => child.kill('SIGKILL'));
    running.delete(child);
    fs.rmSync(logFile, { force: true });
  };
  try {
    await withTimeout(
      new Promise<void>((resolve, reject) => {
        child.stdout?.on('data', (chunk: Buffer) => {
          stdout += chunk.toString();
          if (stdout.includes('\n')) resolve();
        });
        child.on('exit', (code) => reject(new Error(`nfs-server portmapper exited with ${code}:\n${stderr}`)));
      }),
      START_TIMEOUT_MS,
      'starting the portmapper',
    );
  } catch (err) {
    await stop();
    throw err;
  }
  return { stop };
}
