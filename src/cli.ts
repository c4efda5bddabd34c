/**
 * The ovshift command. Without -f it returns once the mount is ready (exit 0) or has failed
 * (a one-line message, exit 1), leaving a detached daemon to serve it, as fuse-overlayfs and
 * mount.fuse3 expect.
 */
import { remount } from './cli/remount';
import { spawn } from 'child_process';
import createDebug from 'debug';
import { writeSync, closeSync } from 'fs';
import { parseCommandLine, refusalStatus } from './cli/command';
import { HELP, UsageError, type CliOptions } from './cli/options';
import { sendCommand } from './control';
import { startMount, type RunningMount } from './daemon';

const READY_FD_ENV = 'OVSHIFT_READY_FD';
const VERSION = '0.1.0';

function fail(message: string, status = 1): never {
  process.stderr.write(`ovshift: ${message}\n`);
  process.exit(status);
}

/** The daemon side: mount, report to the waiting parent (if any), serve until unmounted. */
async function serve(o: CliOptions, readyFd: number | undefined): Promise<void> {
  const report = (line: string): void => {
    if (readyFd === undefined) return;
    writeSync(readyFd, `${line}\n`);
    closeSync(readyFd);
    readyFd = undefined;
  };
  const giveUp: (message: string) => never = (message) => {
    report(`error ${message}`);
    return fail(message);
  };
  // Handlers first: whoever started us may signal the moment it hears "ready".
  let running: RunningMount | undefined;
  const onSignal = (): void => {
    if (running) void running.stop().catch((err: Error) => process.stderr.write(`ovshift: ${err.message.split('\n')[0]}\n`));
    else giveUp('interrupted before the mount was ready');
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('SIGHUP', () => undefined);
  try {
    running = await startMount(o);
  } catch (err) {
    giveUp((err as Error).message.split('\n')[0]!);
  }
  report('ready');
  process.exit(await running.done);
}

/** The waiting side: start a detached daemon and relay how its mount went. */
function daemonize(argv: string[]): void {
  const child = spawn(process.execPath, [...process.execArgv, process.argv[1]!, ...argv], {
    detached: true,
    stdio: ['ignore', 'ignore', 'ignore', 'pipe'],
    env: { ...process.env, [READY_FD_ENV]: '3' },
  });
  child.on('error', (err) => fail(`cannot start the daemon: ${err.message}`));
  let answer = '';
  const pipe = child.stdio[3] as NodeJS.ReadableStream;
  pipe.setEncoding('utf8');
  pipe.on('data', (d: string) => (answer += d));
  pipe.on('end', () => {
    const line = answer.trim();
    if (line === 'ready') {
      child.unref();
      process.exit(0);
    }
    fail(line.startsWith('error ') ? line.slice(6) : 'the daemon exited before the mount was ready');
  });
}

async function control(argv: string[]): Promise<void> {
  const [mountpoint, ...words] = argv;
  if (!mountpoint || words.length === 0) fail('usage: ovshift ctl MOUNTPOINT inject add RULE | inject list | inject clear | status', 2);
  let reply: string[];
  try {
    reply = await sendCommand(mountpoint, words.join(' '));
  } catch (err) {
    fail((err as Error).message);
  }
  const [status, ...lines] = reply;
  for (const l of lines) process.stdout.write(`${l}\n`);
  if (status !== 'ok') fail((status ?? 'no reply').replace(/^error: /, ''));
}

export function main(argv: string[]): void {
  if (argv[0] === 'ctl') {
    void control(argv.slice(1));
    return;
  }
  let cmd;
  try {
    cmd = parseCommandLine(argv, process.env.OVSHIFT_OPTIONS);
  } catch (err) {
    if (err instanceof UsageError) fail(err.message, refusalStatus(err));
    throw err;
  }
  if (cmd.kind === 'help') {
    process.stdout.write(HELP);
    return;
  }
  if (cmd.kind === 'version') {
    process.stdout.write(`ovshift ${VERSION}\n`);
    return;
  }
  if (cmd.kind === 'remount') {
    remount(cmd.mountpoint, cmd.options).catch((err: Error) => fail(err.message));
    return;
  }
  const o = cmd.options;
  if (o.debug) createDebug.enable(process.env.DEBUG || 'ovshift:*');
  const readyFd = process.env[READY_FD_ENV];
  if (readyFd !== undefined) {
    delete process.env[READY_FD_ENV];
    void serve(o, Number(readyFd));
  } else if (o.foreground) {
    void serve(o, undefined);
  } else {
    daemonize(argv);
  }
}
