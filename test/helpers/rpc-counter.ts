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
  /** The names NFSv3 LOOKUP calls (or NFSv4 LOOKUP operations) asked for since the last reset, in order. */
  lookedUp(): string[];
  /** The operations of each NFSv4 COMPOUND since the last reset (SEQUENCE left out), by number. */
  compounds(): number[][];
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

/** OPEN's arguments, when they are those of an OPEN without create, claimed by handle or as a reclaim; -1 otherwise. */
function openArgs(r: Buffer, pos: number): number {
  pos += 4 + 4 + 4 + 8; // seqid, share access, share deny, owner's client id
  pos += 4 + pad4(r.readUInt32BE(pos)); // owner
  if (r.readUInt32BE(pos) !== 0) return -1; // OPEN4_CREATE
  const claim = r.readUInt32BE(pos + 4);
  if (claim === 4) return pos + 8; // CLAIM_FH
  if (claim === 1) return pos + 12; // CLAIM_PREVIOUS, with its delegation type
  return -1;
}

/** NFSv4 operations whose arguments the counter can step over, and how (after the op number; -1: it cannot). */
const V4_ARGS: Record<number, (r: Buffer, pos: number) => number> = {
  18: openArgs,
  9: (r, pos) => pos + 4 + 4 * r.readUInt32BE(pos), // GETATTR: bitmap
  10: (_r, pos) => pos, // GETFH
  15: (r, pos) => pos + 4 + pad4(r.readUInt32BE(pos)), // LOOKUP
  22: (r, pos) => pos + 4 + pad4(r.readUInt32BE(pos)), // PUTFH
  24: (_r, pos) => pos, // PUTROOTFH
  25: (_r, pos) => pos + 16 + 8 + 4, // READ
  27: (_r, pos) => pos, // READLINK
  53: (_r, pos) => pos + 16 + 4 * 4, // SEQUENCE
};
const V4_LOOKUP = 15;
const V4_SEQUENCE = 53;

/** The operations of a COMPOUND call, as far as they can be stepped over; LOOKUP names into `names`. */
function compoundOps(record: Buffer, names: string[]): number[] {
  let pos = 24;
  for (let i = 0; i < 2; i++) pos += 8 + pad4(record.readUInt32BE(pos + 4));
  pos += 4 + pad4(record.readUInt32BE(pos)); // tag
  pos += 4; // minor version
  const count = record.readUInt32BE(pos);
  pos += 4;
  const ops: number[] = [];
  for (let i = 0; i < count; i++) {
    const op = record.readUInt32BE(pos);
    pos += 4;
    if (op === V4_LOOKUP) names.push(record.toString('latin1', pos + 4, pos + 4 + record.readUInt32BE(pos)));
    if (op !== V4_SEQUENCE) ops.push(op);
    const skip = V4_ARGS[op];
    if (skip === undefined) break;
    pos = skip(record, pos);
    if (pos < 0) break;
  }
  return ops;
}

export async function startRpcCounter(targetPort: number): Promise<RpcCounter> {
  const counts = new Map<number, Map<number, number>>();
  let names: string[] = [];
  let compounds: number[][] = [];
  const sockets = new Set<net.Socket>();
  const count = (record: Buffer): void => {
    if (record.length < 24 || record.readUInt32BE(4) !== CALL) return;
    const program = record.readUInt32BE(12);
    const proc = record.readUInt32BE(20);
    const byProc = counts.get(program) ?? new Map<number, number>();
    byProc.set(proc, (byProc.get(proc) ?? 0) + 1);
    counts.set(program, byProc);
    const version = record.readUInt32BE(16);
    if (program === NFS_PROGRAM && version === 3 && proc === NFS3_PROC.LOOKUP) names.push(lookupName(record));
    if (program === NFS_PROGRAM && version === 4 && proc === 1) compounds.push(compoundOps(record, names));
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
    compounds: () => compounds.map((c) => [...c]),
    reset: () => {
      counts.clear();
      names = [];
      compounds = [];
    },
    stop: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
