// NSM, the network status monitor (program 100024 version 1, from X/Open's XNFS, the protocol
// rpc.statd speaks): a host's statd remembers the hosts whose locks its clients hold and tells
// them when one reboots. A client asks its own statd, on this host, to monitor a server
// (SM_MON) and to call back its lock manager's procedure `my_proc` when the server restarts;
// its LOCKs then go as monitored ones (NLM LOCK, not NM_LOCK) and the server's statd watches
// the client in turn.

import type { RpcClient } from './rpc';
import type { XdrWriter } from './xdr';

export const NSM_PROGRAM = 100024;
export const NSM_VERSION = 1;
const SM_MAXSTRLEN = 1024;
const PRIV_SIZE = 16;

enum NsmProc {
  MON = 2,
  UNMON = 3,
}

/** Who statd calls back when a monitored host restarts, and how. */
export interface NsmCallback {
  /** Where statd makes the call; statd accepts only this host's own names. */
  host: string;
  program: number;
  version: number;
  procedure: number;
}

export class NsmError extends Error {
  readonly code = 'ENOLCK';
}

export class Nsm {
  constructor(readonly rpc: RpcClient) {}

  /** Asks statd to watch `monName`; resolves this host's NSM state number. */
  async monitor(monName: string, callback: NsmCallback, priv: Buffer = Buffer.alloc(PRIV_SIZE)): Promise<number> {
    const r = await this.rpc.call(NsmProc.MON, (w) => {
      writeMonId(w, monName, callback);
      w.opaqueFixed(priv, PRIV_SIZE);
    });
    const stat = r.uint32();
    const state = r.int32();
    if (stat !== 0) throw new NsmError(`statd refused to monitor "${monName}"`);
    return state;
  }

  /** Stops watching `monName` for this callback. */
  async unmonitor(monName: string, callback: NsmCallback): Promise<void> {
    await this.rpc.call(NsmProc.UNMON, (w) => writeMonId(w, monName, callback));
  }
}

function writeMonId(w: XdrWriter, monName: string, c: NsmCallback): void {
  w.string(monName, SM_MAXSTRLEN).string(c.host, SM_MAXSTRLEN).int32(c.program).int32(c.version).int32(c.procedure);
}
