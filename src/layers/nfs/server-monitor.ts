// Whether this host's rpc.statd monitors an NFS server for the locks a client takes there:
// decided at the first lock (SM_MON when a statd is registered with the portmapper on
// 127.0.0.1), then every LOCK is monitored (NLM LOCK with the host's NSM state) or not
// (NM_LOCK). A server that cannot monitor us in turn (its own statd is missing: it answers
// DENIED_NOLOCKS) makes the client go unmonitored. No SM_UNMON when the client closes: the
// host's other daemons may hold locks on the same server under the same monitor entry, and an
// entry left makes the server's locks for this host go when the host reboots, as they should.

import createDebug from 'debug';
import { NLM_PROGRAM, NLM_VERSION } from './nlm4';
import { Nsm, NSM_PROGRAM, NSM_VERSION, type NsmCallback } from './nsm';
import { getTcpPorts } from './portmap';
import { smallServiceClient, type RpcClient } from './rpc';

const log = createDebug('ovshift:nlm');

/**
 * What statd is to call when a monitored server restarts: Linux's lockd procedure for it. This
 * client serves no such call (statd makes it over UDP); it learns of a restart from its lost
 * connection and takes its locks again then (nlm-client.ts).
 */
const NLM_SM_NOTIFY = 16;

const CALLBACK: NsmCallback = { host: '127.0.0.1', program: NLM_PROGRAM, version: NLM_VERSION, procedure: NLM_SM_NOTIFY };
const LOCAL = { timeoutMs: 2000, retrans: 1 };

export class ServerMonitor {
  private deciding: Promise<number | undefined> | undefined;
  private mode: 'undecided' | 'monitored' | 'unmonitored' = 'undecided';
  private why = '';

  constructor(
    /** The server, as statd is to watch it (its name in the URL). */
    private readonly server: string,
    private readonly privilegedPort: boolean,
  ) {}

  /** The NSM state number to send with monitored LOCKs; undefined: unmonitored. */
  decide(): Promise<number | undefined> {
    this.deciding ??= this.monitor();
    return this.deciding;
  }

  private async monitor(): Promise<number | undefined> {
    let rpc: RpcClient | undefined;
    try {
      const options = { ...LOCAL, privilegedPort: this.privilegedPort };
      const [port] = await getTcpPorts('127.0.0.1', [{ program: NSM_PROGRAM, version: NSM_VERSION, name: 'rpc.statd' }], options);
      rpc = this.statd(port!);
      const state = await new Nsm(rpc).monitor(this.server, CALLBACK);
      this.mode = 'monitored';
      log('rpc.statd on this host monitors %s (NSM state %d)', this.server, state);
      return state;
    } catch (err) {
      this.unmonitored(`no rpc.statd on this host (${(err as Error).message})`);
      return undefined;
    } finally {
      rpc?.close();
    }
  }

  private statd(port: number): RpcClient {
    return smallServiceClient({
      host: '127.0.0.1',
      port,
      target: { program: NSM_PROGRAM, version: NSM_VERSION },
      label: 'statd',
      ...LOCAL,
      privilegedPort: this.privilegedPort,
    });
  }

  private unmonitored(why: string): void {
    this.mode = 'unmonitored';
    this.why = why;
    this.deciding = Promise.resolve(undefined);
    log('locks on %s unmonitored: %s', this.server, why);
  }

  /** The server answered a monitored LOCK with DENIED_NOLOCKS: it cannot monitor this host. */
  refused(): void {
    if (this.mode === 'monitored') this.unmonitored('the server cannot monitor this host (DENIED_NOLOCKS)');
  }

  /** For `ovshift ctl MNT status`. */
  describe(): string {
    if (this.mode === 'monitored') return "monitored (this host's rpc.statd watches the server)";
    if (this.mode === 'unmonitored') return `unmonitored (NM_LOCK): ${this.why.replace(/ \(.*\)$/, '')}`;
    return 'monitored or not as decided at the first lock (monitored when rpc.statd runs on this host)';
  }
}
