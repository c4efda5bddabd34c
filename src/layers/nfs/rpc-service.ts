// A small ONC RPC service over TCP (RFC 5531, record marking): what a client runs to take the
// calls a server makes back to it (NLM's GRANTED). One program and version; each procedure a
// handler that reads the arguments and writes the results, or answers nothing (the _MSG
// procedures, whose callers never wait).

import createDebug from 'debug';
import * as net from 'net';
import { encodeRecord, RecordDecoder } from './record';
import { AcceptStat, decodeCall, encodeAcceptedReply } from './rpc-message';
import type { XdrReader, XdrWriter } from './xdr';

const log = createDebug('ovshift:rpc');

const MAX_CALL = 64 * 1024;

/**
 * Reads a call's arguments; returns how to write its results, or null for no reply at all.
 * `call` is the whole call as received (to pass it on).
 */
export type RpcHandler = (args: XdrReader, peer: string, call: Buffer) => ((w: XdrWriter) => void) | null;

export class RpcService {
  private readonly server: net.Server;
  private readonly sockets = new Set<net.Socket>();

  private constructor(
    private readonly program: number,
    private readonly version: number,
    private readonly handlers: ReadonlyMap<number, RpcHandler>,
  ) {
    this.server = net.createServer((socket) => this.serve(socket));
  }

  /** Listens on `where`: a TCP host (an ephemeral port), or a unix socket's path. */
  static async listen(
    where: { host: string } | { path: string },
    program: number,
    version: number,
    handlers: ReadonlyMap<number, RpcHandler>,
  ): Promise<RpcService> {
    const service = new RpcService(program, version, handlers);
    await new Promise<void>((resolve, reject) => {
      service.server.once('error', reject);
      service.server.listen('path' in where ? { path: where.path } : { port: 0, host: where.host }, () => resolve());
    });
    // Its callers must not keep the process alive.
    service.server.unref();
    return service;
  }

  get port(): number {
    return (this.server.address() as net.AddressInfo).port;
  }

  private serve(socket: net.Socket): void {
    this.sockets.add(socket);
    socket.unref();
    const peer = socket.remoteAddress === undefined ? 'a local process' : `${socket.remoteAddress}:${socket.remotePort}`;
    const decoder = new RecordDecoder(MAX_CALL);
    socket.on('data', (chunk: Buffer) => {
      let records: Buffer[];
      try {
        records = decoder.push(chunk);
      } catch (err) {
        log('%s: bad record stream (%s); closing', peer, (err as Error).message);
        socket.destroy();
        return;
      }
      for (const record of records) {
        const reply = this.answer(record, peer);
        if (reply) socket.write(encodeRecord(reply));
      }
    });
    socket.on('error', () => undefined);
    socket.on('close', () => this.sockets.delete(socket));
  }

  private answer(record: Buffer, peer: string): Buffer | null {
    let call;
    try {
      call = decodeCall(record);
    } catch {
      call = undefined;
    }
    if (call === undefined) return null;
    if (call.program !== this.program || call.version !== this.version) return encodeAcceptedReply(call.xid, AcceptStat.PROG_UNAVAIL);
    if (call.procedure === 0) return encodeAcceptedReply(call.xid, AcceptStat.SUCCESS);
    const handler = this.handlers.get(call.procedure);
    if (handler === undefined) return encodeAcceptedReply(call.xid, AcceptStat.PROC_UNAVAIL);
    let results;
    try {
      results = handler(call.args, peer, record);
    } catch (err) {
      log('%s: procedure %d: %s', peer, call.procedure, (err as Error).message);
      return encodeAcceptedReply(call.xid, AcceptStat.GARBAGE_ARGS);
    }
    return results === null ? null : encodeAcceptedReply(call.xid, AcceptStat.SUCCESS, results);
  }

  close(): void {
    for (const s of this.sockets) s.destroy();
    this.server.close();
  }
}
