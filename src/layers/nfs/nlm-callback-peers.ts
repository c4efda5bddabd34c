// A host has one NLM registration with its portmapper, so a server's GRANTED callbacks for the
// locks every ovshift daemon of the host waits for reach one daemon only: the one registered.
// It passes each callback that is not for it on to the host's other daemons, each listening on a
// unix socket in a directory only root can reach, named after its PID. A callback passed on is
// never passed on again.

import createDebug from 'debug';
import * as fs from 'fs';
import * as net from 'net';
import { join } from 'path';
import { encodeRecord } from './record';
import { RpcService, type RpcHandler } from './rpc-service';

const log = createDebug('ovshift:nlm');

const PEERS_DIR = '/run/ovshift/nlm-callbacks';
const SOCKET = /^(\d+)\.sock$/;

/** The directory, made 0700 by root or checked to be root's own; undefined when unusable. */
function peersDir(): string | undefined {
  if (process.geteuid?.() !== 0) return undefined;
  try {
    fs.mkdirSync(PEERS_DIR, { recursive: true, mode: 0o700 });
    const st = fs.lstatSync(PEERS_DIR);
    const parent = fs.lstatSync(join(PEERS_DIR, '..'));
    for (const s of [st, parent]) {
      if (!s.isDirectory() || s.uid !== 0 || (s.mode & 0o022) !== 0) throw new Error('not a directory only root can write');
    }
    if ((st.mode & 0o077) !== 0) throw new Error('not private to root');
    return PEERS_DIR;
  } catch (err) {
    log('no NLM callback peers (%s: %s)', PEERS_DIR, (err as Error).message);
    return undefined;
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export class CallbackPeers {
  private constructor(
    private readonly dir: string,
    private readonly service: RpcService,
  ) {}

  /** Listens for callbacks other daemons pass on; undefined where there is no place for it. */
  static async open(program: number, version: number, handlers: ReadonlyMap<number, RpcHandler>): Promise<CallbackPeers | undefined> {
    const dir = peersDir();
    if (dir === undefined) return undefined;
    const path = join(dir, `${process.pid}.sock`);
    fs.rmSync(path, { force: true });
    try {
      return new CallbackPeers(dir, await RpcService.listen({ path }, program, version, handlers));
    } catch (err) {
      log('cannot listen on %s: %s', path, (err as Error).message);
      return undefined;
    }
  }

  /** Passes a call on to every other daemon of the host (one-way: no replies are read). */
  forward(call: Buffer): void {
    let names: string[];
    try {
      names = fs.readdirSync(this.dir);
    } catch {
      return;
    }
    const record = encodeRecord(call);
    for (const name of names) {
      const pid = Number(SOCKET.exec(name)?.[1]);
      if (!pid || pid === process.pid) continue;
      const path = join(this.dir, name);
      if (!alive(pid)) {
        fs.rmSync(path, { force: true }); // a killed daemon's
        continue;
      }
      const socket = net.connect({ path });
      socket.on('error', (err) => log('passing a callback on to pid %d: %s', pid, err.message));
      socket.end(record);
    }
  }

  close(): void {
    this.service.close();
    fs.rmSync(join(this.dir, `${process.pid}.sock`), { force: true });
  }
}
