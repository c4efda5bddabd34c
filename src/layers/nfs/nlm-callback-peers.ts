// A host has one NLM registration with its portmapper, so a server's GRANTED callbacks for the
// locks every ovshift daemon of the host waits for reach one daemon only: the one registered.
// It passes each callback that is not for it on to the host's other daemons, each listening on a
// unix socket in a directory only root can reach, named after its PID (PID.sock, and PID.port
// holding the TCP port of its NLM service: which daemon a registration is). A callback passed
// on is never passed on again.

import createDebug from 'debug';
import * as fs from 'fs';
import * as net from 'net';
import { join } from 'path';
import { processExists } from '../../util/process-alive';
import { encodeRecord } from './record';
import { encodeCall } from './rpc-message';
import { RpcService, type RpcHandler } from './rpc-service';

const log = createDebug('ovshift:nlm');

const PEERS_DIR = '/run/ovshift/nlm-callbacks';
const SOCKET = /^(\d+)\.sock$/;
/**
 * A procedure of the peers' sockets only (outside NLM's numbers): the daemon that held the
 * host's registration is leaving; what waits through it must be asked for again.
 */
export const REGISTRATION_GONE = 0x7fff0001;
const PORT_FILE = /^(\d+)\.port$/;

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

export class CallbackPeers {
  private constructor(
    private readonly dir: string,
    private readonly service: RpcService,
  ) {}

  /**
   * Listens for callbacks other daemons pass on, and says which port this daemon's own NLM
   * service has; undefined where there is no place for it.
   */
  static async open(port: number, program: number, version: number, handlers: ReadonlyMap<number, RpcHandler>): Promise<CallbackPeers | undefined> {
    const dir = peersDir();
    if (dir === undefined) return undefined;
    const path = join(dir, `${process.pid}.sock`);
    fs.rmSync(path, { force: true });
    try {
      const peers = new CallbackPeers(dir, await RpcService.listen({ path }, program, version, handlers));
      fs.writeFileSync(join(dir, `${process.pid}.port`), String(port), { mode: 0o600 });
      return peers;
    } catch (err) {
      log('cannot listen on %s: %s', path, (err as Error).message);
      return undefined;
    }
  }

  /** Whether a live daemon of this host has its NLM service on `port` (and so passes callbacks on). */
  serves(port: number): boolean {
    for (const name of this.names()) {
      const pid = Number(PORT_FILE.exec(name)?.[1]);
      if (!pid || pid === process.pid || !processExists(pid)) continue;
      try {
        if (Number(fs.readFileSync(join(this.dir, name), 'utf8')) === port) return true;
      } catch {
        // gone meanwhile
      }
    }
    return false;
  }

  private names(): string[] {
    try {
      return fs.readdirSync(this.dir);
    } catch {
      return [];
    }
  }

  /** Passes a call on to every other daemon of the host (one-way: no replies are read). */
  forward(call: Buffer): void {
    const record = encodeRecord(call);
    for (const name of this.names()) {
      const pid = Number(SOCKET.exec(name)?.[1]);
      if (!pid || pid === process.pid) continue;
      const path = join(this.dir, name);
      if (!processExists(pid)) {
        // A killed daemon's.
        fs.rmSync(path, { force: true });
        fs.rmSync(join(this.dir, `${pid}.port`), { force: true });
        continue;
      }
      const socket = net.connect({ path });
      socket.on('error', (err) => log('passing a callback on to pid %d: %s', pid, err.message));
      socket.end(record);
    }
  }

  /** Tells the host's other daemons that the registration this daemon held is gone. */
  announceGone(program: number, version: number): void {
    this.forward(encodeCall(0, { program, version }, REGISTRATION_GONE, { flavor: 'none' }, () => undefined));
  }

  close(): void {
    this.service.close();
    fs.rmSync(join(this.dir, `${process.pid}.sock`), { force: true });
    fs.rmSync(join(this.dir, `${process.pid}.port`), { force: true });
  }
}
