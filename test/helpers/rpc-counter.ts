/**
 * A TCP proxy on 127.0.0.1 in front of an ONC RPC server that counts the calls passing through
 * it by program and procedure: how many round trips a client really makes. Replies are passed
 * on untouched; the calls are parsed from a copy of the stream (RFC 5531 record marking).
 * The proxy runs in the test's own event loop: drive the client with asynchronous calls (or
 * another process), never synchronous file system calls that would block that loop.
 */
import * as net from 'net';
import { RecordDecoder } from '../../src/layers/nfs/record';

export const NFS_PROGRAM = 100003;
export const NLM_PROGRAM = 100021;

/** NFSv3 procedure numbers (RFC 1813) by name, for reading counts. */
export const NFS3_PROC: Readonly<Record<string, number>> = {
  NULL: 0,
  GETATTR: 1,
  SETATTR: 2,
  LOOKUP: 3,
  ACCESS: 4,
  READLINK: 5,
  READ: 6,
  READDIR: 16,
  READDIRPLUS: 17,
  FSSTAT: 18,
  FSINFO: 19,
  PATHCONF: 20,
};

const MAX_RECORD = 64 << 20;
const CALL = 0;

export interface RpcCounter {
  readonly port: number;
  /** Calls of `program` seen since the last reset, by procedure number. */
  calls(program: number): Map<number, number>;
  /** All calls of `program` since the last reset. */
  total(program: number): number;
  /** The names NFSv3 LOOKUP calls asked for since the last reset, in order. */
  lookedUp(): string[];
  reset(): void;
  /** Closes the listener and every proxied connection. */
  stop(): Promise<void>;
}

const pad4 = (n: number): number => (n + 3) & ~3;

/** The name of a LOOKUP call: after the call header, credential and verifier, the directory's handle, then the name. */
function lookupName(record: Buffer): string {
  let pos = 24;
  for (let i = 0; i < 2; i++) pos += 8 + pad4(record.readUInt32BE(pos + 4));
  pos += 4 + pad4(record.readUInt32BE(pos));
  const length = record.readUInt32BE(pos);
  return record.toString('latin1', pos + 4, pos + 4 + length);
}

export async function startRpcCounter(targetPort: number): Promise<RpcCounter> {
  const counts = new Map<number, Map<number, number>>();
  let names: string[] = [];
  const sockets = new Set<net.Socket>();
  const count = (record: Buffer): void => {
    if (record.length < 24 || record.readUInt32BE(4) !== CALL) return;
    const program = record.readUInt32BE(12);
    const proc = record.readUInt32BE(20);
    const byProc = counts.get(program) ?? new Map<number, number>();
    byProc.set(proc, (byProc.get(proc) ?? 0) + 1);
    counts.set(program, byProc);
    if (program === NFS_PROGRAM && proc === NFS3_PROC.LOOKUP) names.push(lookupName(record));
  };
  const server = net.createServer((client) => {
    const upstream = net.connect(targetPort, '127.0.0.1');
    const decoder = new RecordDecoder(MAX_RECORD);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => {
        sockets.delete(s);
        client.destroy();
        upstream.destroy();
      });
      s.on('error', () => undefined);
    }
    client.on('data', (chunk: Buffer) => {
      for (const record of decoder.push(chunk)) count(record);
      upstream.write(chunk);
    });
    upstream.on('data', (chunk: Buffer) => client.write(chunk));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  return {
    port: (server.address() as net.AddressInfo).port,
    calls: (program) => new Map(counts.get(program) ?? []),
    total: (program) => [...(counts.get(program)?.values() ?? [])].reduce((a, b) => a + b, 0),
    lookedUp: () => [...names],
    reset: () => {
      counts.clear();
      names = [];
    },
    stop: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
