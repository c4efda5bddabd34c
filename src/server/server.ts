/**
 * The mount server: one long-lived process per user (and user and mount namespace) that makes
 * and serves every mount the native front end asks for. A mount costs the server a request and
 * the mount's own work, not a process start: tens of milliseconds and a few MiB instead of
 * 0.5-1 s and 50 MiB (README, "What a mount costs").
 *
 * Isolation: each mount has its own layers, node table, session and control socket; a request
 * that fails answers its own errno. What mounts share is the process: an error no mount's code
 * catches is logged and the server goes on; a server that dies (SIGKILL, out of memory) takes
 * all its mounts with it (they answer ENOTCONN). OVSHIFT_SERVER=off gives a process per mount.
 *
 * Life: started by the front end that found none, ready once listening; SIGTERM or SIGINT
 * unmounts every mount (lazily if busy) and exits 0; with no mount left it exits after
 * OVSHIFT_SERVER_IDLE seconds (default 60), so a host's containers keep one warm server.
 */
import createDebug from 'debug';
import { chmodSync, closeSync, constants as K, openSync, readFileSync, rmSync, statSync, unlinkSync, writeFileSync, writeSync } from 'fs';
import * as net from 'net';
import { dirname } from 'path';
import { parseCommandLine, refusalStatus } from '../cli/command';
import { UsageError } from '../cli/options';
import { privateDir } from '../control';
import { C, native } from '../native';
import { startMount, type RunningMount } from '../daemon';
import { MAX_REQUEST_BYTES, parseRequest, reply, RequestError, resolvePaths } from './request';

const log = createDebug('ovshift:server');
const DEFAULT_IDLE_SECONDS = 60;

function idleSeconds(): number {
  const v = Number(process.env.OVSHIFT_SERVER_IDLE);
  return process.env.OVSHIFT_SERVER_IDLE !== undefined && Number.isFinite(v) && v >= 0 ? v : DEFAULT_IDLE_SECONDS;
}

function firstLine(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).split('\n')[0]!;
}

export class MountServer {
  private readonly mounts = new Map<RunningMount, string>();
  private inFlight = 0;
  private idleTimer?: NodeJS.Timeout;
  private stopping?: Promise<void>;
  private readonly listener: net.Server;
  private socketIno = 0;
  /** Settles with the exit status once the server has stopped. */
  readonly done: Promise<number>;
  private finish!: (status: number) => void;

  constructor(
    readonly socketPath: string,
    private readonly idleMs = idleSeconds() * 1000,
  ) {
    // Half-open: the front end shuts its side down to end the request, then reads the reply.
    this.listener = net.createServer({ allowHalfOpen: true }, (sock) => this.accept(sock));
    this.done = new Promise((resolve) => (this.finish = resolve));
  }

  get pidPath(): string {
    return this.socketPath.replace(/\.sock$/, '.pid');
  }

  /** The file front ends flock while one of them starts a server (src/front/ovshift.c). */
  get lockPath(): string {
    return this.socketPath.replace(/\.sock$/, '.lock');
  }

  async listen(): Promise<void> {
    // The front end checked the directory too; a server started by hand must not trust it blind.
    if (!privateDir(dirname(this.socketPath))) throw new Error(`cannot make ${dirname(this.socketPath)}`);
    // A socket left by a server that died: the front end starts us only when it refuses connections.
    rmSync(this.socketPath, { force: true });
    await new Promise<void>((resolve, reject) => {
      this.listener.once('error', reject);
      this.listener.listen(this.socketPath, () => resolve());
    });
    chmodSync(this.socketPath, 0o600);
    this.socketIno = statSync(this.socketPath).ino;
    writeFileSync(this.pidPath, `${process.pid}\n`, { mode: 0o600 });
    this.armIdle();
    log('listening on %s', this.socketPath);
  }

  /** Unmounts every mount (lazily if busy) and stops; `done` settles with 0 after. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      clearTimeout(this.idleTimer);
      this.listener.close();
      this.forgetFiles();
      const running = [...this.mounts.keys()];
      await Promise.all(running.map((m) => m.stop().catch((err: unknown) => log('stop: %s', firstLine(err)))));
      await Promise.all(running.map((m) => m.done));
      this.finish(0);
    })();
    return this.stopping;
  }

  get mountCount(): number {
    return this.mounts.size;
  }

  /**
   * Removes our socket and pid file, but not a successor's that took their names; and the lock
   * file, under its lock (a front end that locked it meanwhile finds it unlinked and opens
   * the new one).
   */
  private forgetFiles(): void {
    try {
      const fd = openSync(this.lockPath, K.O_RDWR | K.O_NOFOLLOW);
      try {
        native.flockSync(fd, C.LOCK_EX!);
        unlinkSync(this.lockPath);
      } finally {
        closeSync(fd);
      }
    } catch {
      // None: a server started by hand.
    }
    try {
      if (statSync(this.socketPath).ino === this.socketIno) rmSync(this.socketPath, { force: true });
    } catch {
      // Gone already.
    }
    try {
      if (readFileSync(this.pidPath, 'utf8').trim() === String(process.pid)) rmSync(this.pidPath, { force: true });
    } catch {
      // Gone already.
    }
  }

  private armIdle(): void {
    clearTimeout(this.idleTimer);
    if (this.mounts.size > 0 || this.inFlight > 0 || this.stopping) return;
    this.idleTimer = setTimeout(() => {
      log('idle for %d ms: exiting', this.idleMs);
      void this.stop();
    }, this.idleMs);
  }

  private accept(sock: net.Socket): void {
    this.inFlight++;
    clearTimeout(this.idleTimer);
    const parts: Buffer[] = [];
    let size = 0;
    let answered = false;
    const answer = (line: string): void => {
      if (answered) return;
      answered = true;
      sock.end(line);
      this.inFlight--;
      this.armIdle();
    };
    sock.on('error', () => answer(''));
    sock.on('close', () => answer(''));
    sock.on('data', (d: Buffer) => {
      size += d.length;
      if (size > MAX_REQUEST_BYTES) answer(reply.error(1, 'request too large'));
      else parts.push(d);
    });
    sock.on('end', () => {
      if (answered) return;
      this.handle(Buffer.concat(parts)).then(answer, (err: unknown) => answer(reply.error(1, firstLine(err))));
    });
  }

  private async handle(data: Buffer): Promise<string> {
    let request;
    try {
      request = parseRequest(data);
    } catch (err) {
      if (err instanceof RequestError) return reply.error(1, err.message);
      throw err;
    }
    let cmd;
    try {
      cmd = parseCommandLine(request.args, request.defaults);
    } catch (err) {
      if (err instanceof UsageError) return reply.error(refusalStatus(err), err.message);
      throw err;
    }
    // Help, version, a foreground or debug run: the caller's own process does those.
    if (cmd.kind !== 'mount' || cmd.options.foreground) return reply.exec;
    if (this.stopping) return reply.error(1, 'the ovshift server is shutting down; try again');
    const options = resolvePaths(cmd.options, request.cwd, request.tmpDir);
    let running: RunningMount;
    try {
      running = await startMount(options);
    } catch (err) {
      return reply.error(1, firstLine(err));
    }
    this.mounts.set(running, options.mountpoint);
    log('mounted %s (%d mounts)', options.mountpoint, this.mounts.size);
    void running.done.then(() => {
      this.mounts.delete(running);
      log('unmounted %s (%d mounts)', options.mountpoint, this.mounts.size);
      this.armIdle();
    });
    return reply.ok;
  }
}

/** The server process: listens, reports to the front end that started it, serves until stopped. */
export async function runServer(socketPath: string, readyFd: number | undefined): Promise<never> {
  const report = (line: string): void => {
    if (readyFd === undefined) return;
    writeSync(readyFd, `${line}\n`);
    closeSync(readyFd);
    readyFd = undefined;
  };
  // One mount's bug must not end every other mount: log it and serve on.
  process.on('uncaughtException', (err) => {
    process.stderr.write(`ovshift server: ${err.stack ?? err.message}\n`);
  });
  process.on('unhandledRejection', (reason) => {
    process.stderr.write(`ovshift server: unhandled rejection: ${reason instanceof Error ? reason.stack : String(reason)}\n`);
  });
  // Modes from the kernel are final (the caller's umask was applied); set before any mount.
  process.umask(0);
  const server = new MountServer(socketPath);
  const onSignal = (): void => void server.stop();
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('SIGHUP', () => undefined);
  try {
    await server.listen();
  } catch (err) {
    report(`error cannot serve ${socketPath}: ${firstLine(err)}`);
    process.exit(1);
  }
  report('ready');
  process.exit(await server.done);
}
