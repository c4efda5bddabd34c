// NLM version 4 (the NFSv3 lock protocol; Open Group XNFS, "Network Lock Manager Protocol"):
// the calls a client makes, and the GRANTED callback a server makes to the client.

import type { RpcClient } from './rpc';
import { XdrReader, XdrWriter } from './xdr';

export const NLM_PROGRAM = 100021;
export const NLM_VERSION = 4;

export enum Nlm4Proc {
  NULL = 0,
  TEST = 1,
  LOCK = 2,
  CANCEL = 3,
  UNLOCK = 4,
  GRANTED = 5,
  GRANTED_MSG = 10,
  GRANTED_RES = 15,
  NM_LOCK = 22,
  FREE_ALL = 23,
}

export enum Nlm4Stat {
  GRANTED = 0,
  DENIED = 1,
  DENIED_NOLOCKS = 2,
  BLOCKED = 3,
  DENIED_GRACE_PERIOD = 4,
  DEADLCK = 5,
  ROFS = 6,
  STALE_FH = 7,
  FBIG = 8,
  FAILED = 9,
}

/** LM_MAXSTRLEN and MAXNETOBJ_SZ. */
const MAX_STRING = 1024;
const MAX_NETOBJ = 1024;

/** nlm4_lock: what is locked, by whom. `length` 0 runs to the end of the file (and beyond). */
export interface NlmLock {
  callerName: string;
  fh: Buffer;
  /** The owner handle: the lock owner, as the server tells owners apart (with callerName). */
  owner: Buffer;
  /** The owner's "process id": only reported back by TEST. */
  svid: number;
  offset: bigint;
  length: bigint;
}

/** nlm4_holder: a conflicting lock TEST found. */
export interface NlmHolder {
  exclusive: boolean;
  svid: number;
  owner: Buffer;
  offset: bigint;
  length: bigint;
}

/** A GRANTED callback's arguments (nlm4_testargs). */
export interface NlmGranted {
  cookie: Buffer;
  exclusive: boolean;
  lock: NlmLock;
}

function writeLock(w: XdrWriter, l: NlmLock): void {
  w.string(l.callerName, MAX_STRING).opaque(l.fh, MAX_NETOBJ).opaque(l.owner, MAX_NETOBJ).int32(l.svid).uint64(l.offset).uint64(l.length);
}

function readLock(r: XdrReader): NlmLock {
  return { callerName: r.string(MAX_STRING), fh: r.opaque(MAX_NETOBJ), owner: r.opaque(MAX_NETOBJ), svid: r.int32(), offset: r.uint64(), length: r.uint64() };
}

/** nlm4_res (cookie, then the status): what LOCK, CANCEL, UNLOCK and GRANTED answer. */
function readStat(r: XdrReader): Nlm4Stat {
  r.opaque(MAX_NETOBJ);
  return r.uint32() as Nlm4Stat;
}

export function decodeGranted(r: XdrReader): NlmGranted {
  return { cookie: r.opaque(MAX_NETOBJ), exclusive: r.bool(), lock: readLock(r) };
}

export function encodeGrantedReply(w: XdrWriter, cookie: Buffer, stat: Nlm4Stat): void {
  w.opaque(cookie, MAX_NETOBJ).uint32(stat);
}

export interface LockArgs {
  cookie: Buffer;
  /** Ask the server to queue the request and call GRANTED when it can be had. */
  block: boolean;
  exclusive: boolean;
  lock: NlmLock;
  /** A lock held before the server restarted, asked for again in its grace period. */
  reclaim: boolean;
  /** The client's NSM state number (0 when unmonitored). */
  state: number;
}

/** The client side of NLM v4 over one RPC connection. */
export class Nlm4 {
  constructor(readonly rpc: RpcClient) {}

  null(): Promise<void> {
    return this.rpc.call(Nlm4Proc.NULL).then(() => undefined);
  }

  /** A conflicting lock, or null when the lock could be had now. */
  async test(cookie: Buffer, exclusive: boolean, lock: NlmLock): Promise<{ stat: Nlm4Stat; holder?: NlmHolder }> {
    const r = await this.rpc.call(Nlm4Proc.TEST, (w) => {
      w.opaque(cookie, MAX_NETOBJ).bool(exclusive);
      writeLock(w, lock);
    });
    r.opaque(MAX_NETOBJ);
    const stat = r.uint32() as Nlm4Stat;
    if (stat !== Nlm4Stat.DENIED) return { stat };
    return { stat, holder: { exclusive: r.bool(), svid: r.int32(), owner: r.opaque(MAX_NETOBJ), offset: r.uint64(), length: r.uint64() } };
  }

  /** LOCK, or NM_LOCK (unmonitored: no NSM on either side) when `monitored` is false. */
  async lock(args: LockArgs, monitored: boolean): Promise<Nlm4Stat> {
    const r = await this.rpc.call(monitored ? Nlm4Proc.LOCK : Nlm4Proc.NM_LOCK, (w) => {
      w.opaque(args.cookie, MAX_NETOBJ).bool(args.block).bool(args.exclusive);
      writeLock(w, args.lock);
      w.bool(args.reclaim).int32(args.state);
    });
    return readStat(r);
  }

  /** Withdraws a blocked LOCK: the same arguments as the LOCK, without reclaim and state. */
  async cancel(cookie: Buffer, block: boolean, exclusive: boolean, lock: NlmLock): Promise<Nlm4Stat> {
    const r = await this.rpc.call(Nlm4Proc.CANCEL, (w) => {
      w.opaque(cookie, MAX_NETOBJ).bool(block).bool(exclusive);
      writeLock(w, lock);
    });
    return readStat(r);
  }

  /** Answers a GRANTED_MSG callback: GRANTED takes the lock, anything else makes the server release it. */
  async grantedRes(cookie: Buffer, stat: Nlm4Stat): Promise<void> {
    await this.rpc.call(Nlm4Proc.GRANTED_RES, (w) => w.opaque(cookie, MAX_NETOBJ).uint32(stat));
  }

  async unlock(cookie: Buffer, lock: NlmLock): Promise<Nlm4Stat> {
    const r = await this.rpc.call(Nlm4Proc.UNLOCK, (w) => {
      w.opaque(cookie, MAX_NETOBJ);
      writeLock(w, lock);
    });
    return readStat(r);
  }
}
