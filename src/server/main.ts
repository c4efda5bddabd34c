/** Entry of the mount server process (bin/ovshift-server SOCKET), started by the front end. */
import createDebug from 'debug';
import { runServer } from './server';

const READY_FD_ENV = 'OVSHIFT_READY_FD';

export function main(argv: string[]): void {
  const [socketPath] = argv;
  if (!socketPath || argv.length !== 1) {
    process.stderr.write('usage: ovshift-server SOCKET (started by the ovshift command)\n');
    process.exit(2);
  }
  if (process.env.DEBUG) createDebug.enable(process.env.DEBUG);
  const readyFd = process.env[READY_FD_ENV];
  delete process.env[READY_FD_ENV];
  void runServer(socketPath, readyFd === undefined ? undefined : Number(readyFd));
}
