// ONC RPC v2 messages (RFC 5531): call encoding, reply decoding, AUTH_NONE / AUTH_SYS.

import { XdrReader, XdrWriter } from './xdr';

const RPC_VERSION = 2;
const MSG_CALL = 0;
const MSG_REPLY = 1;
const MSG_ACCEPTED = 0;
const MSG_DENIED = 1;

const AUTH_NONE = 0;
const AUTH_SYS = 1;
const MAX_AUTH_BODY = 400;
const MAX_MACHINE_NAME = 255;
const MAX_AUTH_SYS_GIDS = 16;

export enum AcceptStat {
  SUCCESS = 0,
  PROG_UNAVAIL = 1,
  PROG_MISMATCH = 2,
  PROC_UNAVAIL = 3,
  GARBAGE_ARGS = 4,
  SYSTEM_ERR = 5,
}

export enum AuthStat {
  AUTH_OK = 0,
  AUTH_BADCRED = 1,
  AUTH_REJECTEDCRED = 2,
  AUTH_BADVERF = 3,
  AUTH_REJECTEDVERF = 4,
  AUTH_TOOWEAK = 5,
  AUTH_INVALIDRESP = 6,
  AUTH_FAILED = 7,
}

/** The credential a call carries: AUTH_NONE, or AUTH_SYS with numeric ids. */
export type RpcCredential = { flavor: 'none' } | { flavor: 'sys'; uid: number; gid: number; gids: readonly number[]; machineName: string };

export interface CallTarget {
  program: number;
  version: number;
}

/** Base of every error the RPC layer reports about the peer's answer; `code` follows the kernel's sunrpc mapping. */
export class RpcError extends Error {
  constructor(
    message: string,
    readonly code: string,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

export class RpcProgUnavailError extends RpcError {
  constructor(target: CallTarget) {
    super(`RPC program ${target.program} is not available on the server`, 'EPFNOSUPPORT');
  }
}

export class RpcProgMismatchError extends RpcError {
  constructor(
    target: CallTarget,
    readonly low: number,
    readonly high: number,
  ) {
    super(`RPC program ${target.program} version ${target.version} not supported (server has ${low}..${high})`, 'EPROTONOSUPPORT');
  }
}

export class RpcProcUnavailError extends RpcError {
  constructor(
    target: CallTarget,
    readonly procedure: number,
  ) {
    super(`RPC procedure ${procedure} of program ${target.program} v${target.version} is not available`, 'EOPNOTSUPP');
  }
}

export class RpcGarbageArgsError extends RpcError {
  constructor(target: CallTarget, procedure: number) {
    super(`server could not decode the arguments of program ${target.program} procedure ${procedure}`, 'EIO');
  }
}

export class RpcSystemError extends RpcError {
  constructor(target: CallTarget) {
    super(`server reported a system error for program ${target.program}`, 'EIO');
  }
}

export class RpcVersionMismatchError extends RpcError {
  constructor(
    readonly low: number,
    readonly high: number,
  ) {
    super(`server rejected RPC version ${RPC_VERSION} (supports ${low}..${high})`, 'EPROTONOSUPPORT');
  }
}

export class RpcAuthError extends RpcError {
  constructor(readonly authStat: AuthStat) {
    super(`server rejected the credentials: ${AuthStat[authStat] ?? `auth_stat ${authStat}`}`, 'EACCES');
  }
}

/** The reply was not a well-formed RPC reply. */
export class RpcProtocolError extends RpcError {
  constructor(message: string) {
    super(message, 'EPROTO');
  }
}

function encodeCredential(writer: XdrWriter, credential: RpcCredential): void {
  if (credential.flavor === 'none') {
    writer.uint32(AUTH_NONE).opaque(Buffer.alloc(0));
    return;
  }
  if (credential.gids.length > MAX_AUTH_SYS_GIDS) {
    throw new RangeError(`AUTH_SYS carries at most ${MAX_AUTH_SYS_GIDS} groups, got ${credential.gids.length}`);
  }
  const body = new XdrWriter(64)
    .uint32(0) // stamp: servers do not interpret it
    .string(Buffer.from(credential.machineName, 'utf8').subarray(0, MAX_MACHINE_NAME), MAX_MACHINE_NAME)
    .uint32(credential.uid)
    .uint32(credential.gid)
    .array(credential.gids, (w, gid) => w.uint32(gid), MAX_AUTH_SYS_GIDS)
    .bytes();
  writer.uint32(AUTH_SYS).opaque(body, MAX_AUTH_BODY);
}

/** Encodes a complete call message (without record marking). */
export function encodeCall(xid: number, target: CallTarget, procedure: number, credential: RpcCredential, encodeArgs: (writer: XdrWriter) => void): Buffer {
  const writer = new XdrWriter(256).uint32(xid).uint32(MSG_CALL).uint32(RPC_VERSION).uint32(target.program).uint32(target.version).uint32(procedure);
  encodeCredential(writer, credential);
  writer.uint32(AUTH_NONE).opaque(Buffer.alloc(0)); // verifier
  encodeArgs(writer);
  return writer.bytes();
}

/** The xid of a reply record, or undefined if the record is too short to carry one. */
export function replyXid(record: Buffer): number | undefined {
  return record.length >= 4 ? record.readUInt32BE(0) : undefined;
}

/**
 * Decodes a reply header. On SUCCESS returns a reader positioned at the procedure's results;
 * otherwise throws the RpcError describing the refusal.
 */
export function decodeReply(record: Buffer, target: CallTarget, procedure: number): XdrReader {
  const reader = new XdrReader(record);
  reader.uint32(); // xid, already matched by the caller
  const messageType = reader.uint32();
  if (messageType !== MSG_REPLY) throw new RpcProtocolError(`expected a reply, got message type ${messageType}`);
  const replyStat = reader.uint32();
  if (replyStat === MSG_DENIED) {
    const rejectStat = reader.uint32();
    if (rejectStat === 0) throw new RpcVersionMismatchError(reader.uint32(), reader.uint32());
    if (rejectStat === 1) throw new RpcAuthError(reader.uint32());
    throw new RpcProtocolError(`unknown reject_stat ${rejectStat}`);
  }
  if (replyStat !== MSG_ACCEPTED) throw new RpcProtocolError(`unknown reply_stat ${replyStat}`);
  reader.uint32(); // verifier flavor
  reader.opaque(MAX_AUTH_BODY);
  const acceptStat = reader.uint32();
  switch (acceptStat) {
    case AcceptStat.SUCCESS:
      return reader;
    case AcceptStat.PROG_UNAVAIL:
      throw new RpcProgUnavailError(target);
    case AcceptStat.PROG_MISMATCH:
      throw new RpcProgMismatchError(target, reader.uint32(), reader.uint32());
    case AcceptStat.PROC_UNAVAIL:
      throw new RpcProcUnavailError(target, procedure);
    case AcceptStat.GARBAGE_ARGS:
      throw new RpcGarbageArgsError(target, procedure);
    case AcceptStat.SYSTEM_ERR:
      throw new RpcSystemError(target);
    default:
      throw new RpcProtocolError(`unknown accept_stat ${acceptStat}`);
  }
}

/** A call as a service receives it: who it is for, and a reader at its arguments (credentials skipped). */
export interface ReceivedCall {
  xid: number;
  program: number;
  version: number;
  procedure: number;
  args: XdrReader;
}

/** Decodes a call's header; undefined for a record that is not a call of RPC version 2. */
export function decodeCall(record: Buffer): ReceivedCall | undefined {
  const r = new XdrReader(record);
  const xid = r.uint32();
  if (r.uint32() !== MSG_CALL || r.uint32() !== RPC_VERSION) return undefined;
  const program = r.uint32();
  const version = r.uint32();
  const procedure = r.uint32();
  for (let i = 0; i < 2; i++) {
    r.uint32(); // credential, then verifier: flavor and body, not checked by our services
    r.opaque(MAX_AUTH_BODY);
  }
  return { xid, program, version, procedure, args: r };
}

/** An accepted reply: SUCCESS with the results `encodeResults` writes, or another accept_stat. */
export function encodeAcceptedReply(xid: number, stat: AcceptStat, encodeResults: (writer: XdrWriter) => void = () => {}): Buffer {
  const w = new XdrWriter(64).uint32(xid).uint32(MSG_REPLY).uint32(MSG_ACCEPTED).uint32(AUTH_NONE).opaque(Buffer.alloc(0)).uint32(stat);
  if (stat === AcceptStat.SUCCESS) encodeResults(w);
  return w.bytes();
}
