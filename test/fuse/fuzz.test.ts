import assert from 'assert/strict';
import { randomInt } from 'crypto';
import { IN_HEADER_SIZE, Op } from '../../src/fuse/abi';
import type { FuseHandler } from '../../src/fuse/handler';
import { NO_REPLY } from '../../src/fuse/opcodes';
import { decodeRequest, MalformedMessage, UnknownOpcode } from '../../src/fuse/requests';
import { FuseSession } from '../../src/fuse/session';
import * as K from './kernel-structs';

/** Deterministic PRNG so a failure can be replayed from its seed. */
function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Bytes drawn from `rnd`, so a seed reproduces the whole input. */
function bytesOf(rnd: () => number, n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = Math.floor(rnd() * 256);
  return b;
}

/**
 * The run's seed: OVSHIFT_FUZZ_SEED (decimal or 0x hex) replays a run, otherwise a fresh one.
 * It is printed in the suite's title, so a failure shows how to run it again.
 */
function fuzzSeed(): number {
  const given = process.env.OVSHIFT_FUZZ_SEED;
  if (given === undefined || given === '') return randomInt(2 ** 32);
  const n = Number(given);
  if (!Number.isInteger(n) || n < 0 || n >= 2 ** 32) throw new Error(`OVSHIFT_FUZZ_SEED=${given}: not a 32-bit unsigned integer`);
  return n;
}

const SEED = fuzzSeed();

const ALL_OPS = Object.values(Op).filter((v): v is number => typeof v === 'number');

/** Valid requests of every opcode, built from the kernel layouts, to truncate and mutate. */
function corpus(): Buffer[] {
  const hdr = { unique: 2, nodeid: 1, uid: 0, gid: 0, pid: 1 };
  const bodies: Record<number, Buffer[]> = {
    [Op.LOOKUP]: [K.cstr('name')],
    [Op.SETATTR]: [K.pack(K.fuse_setattr_in, { valid: 0xff })],
    [Op.WRITE]: [K.pack(K.fuse_write_in, { size: 4 }), Buffer.from('data')],
    [Op.RENAME2]: [K.pack(K.fuse_rename2_in, { newdir: 1 }), K.cstr('a'), K.cstr('b')],
    [Op.SETXATTR]: [K.pack(K.fuse_setxattr_in, { size: 2 }), K.cstr('user.a'), Buffer.from('vv')],
    [Op.SETLKW]: [K.pack(K.fuse_lk_in, { 'lk.type': 1 })],
    [Op.CREATE]: [K.pack(K.fuse_create_in, { mode: 0o100644 }), K.cstr('f')],
    [Op.BATCH_FORGET]: [K.pack(K.fuse_batch_forget_in, { count: 1 }), K.pack(K.fuse_forget_one, { nodeid: 5, nlookup: 1 })],
    [Op.IOCTL]: [K.pack(K.fuse_ioctl_in, { in_size: 2 }), Buffer.from('io')],
    [Op.COPY_FILE_RANGE]: [K.pack(K.fuse_copy_file_range_in, {})],
    [Op.STATX]: [K.pack(K.fuse_statx_in, {})],
  };
  return Object.entries(bodies).map(([op, body]) => K.kernelRequest(Number(op), hdr, body));
}

interface Captured {
  unique: bigint;
  error: number;
}

function harness(): { session: FuseSession; replies: Captured[] } {
  const replies: Captured[] = [];
  const handler: FuseHandler = {};
  const session = new FuseSession(-1, handler, {
    write: (parts) => {
      const msg = Buffer.concat(parts);
      const h = K.unpack(K.fuse_out_header, msg);
      assert.equal(h.len, msg.length, 'reply length matches its header');
      replies.push({ unique: h.unique as bigint, error: h.error as number });
      return msg.length;
    },
  });
  return { session, replies };
}

describe(`FUSE decoder and session under malformed input (OVSHIFT_FUZZ_SEED=${SEED})`, function () {
  this.timeout(30000);

  it('decodeRequest throws only MalformedMessage or UnknownOpcode, for random and truncated buffers', () => {
    const rnd = prng(SEED ^ 0xfeed);
    const seeds = corpus();
    for (let i = 0; i < 20000; i++) {
      let buf: Buffer;
      const kind = i % 3;
      if (kind === 0) {
        buf = bytesOf(rnd, Math.floor(rnd() * 200));
      } else {
        const base = Buffer.from(seeds[Math.floor(rnd() * seeds.length)]!);
        buf = base.subarray(0, Math.floor(rnd() * (base.length + 1)));
        if (kind === 2 && buf.length > 0) buf[Math.floor(rnd() * buf.length)] = Math.floor(rnd() * 256);
      }
      try {
        decodeRequest(buf, { minor: 45, setxattrExt: rnd() < 0.5 });
      } catch (err) {
        assert.ok(err instanceof MalformedMessage || err instanceof UnknownOpcode, `OVSHIFT_FUZZ_SEED=${SEED}, iteration ${i}: ${err}`);
      }
    }
  });

  it('answers every malformed request with one errno reply and never throws', async () => {
    const rnd = prng(SEED ^ 0xbeef);
    const { session, replies } = harness();
    const opOf = new Map<bigint, number>();
    for (let i = 0; i < 5000; i++) {
      const op = ALL_OPS[Math.floor(rnd() * ALL_OPS.length)]!;
      if (op === Op.INIT || NO_REPLY.has(op)) continue;
      const bodyLen = Math.floor(rnd() * 96);
      const unique = 2 * (i + 1) + 1000;
      // A readable header with a consistent length and a random, often too short, body.
      const buf = K.kernelRequest(op, { unique, nodeid: 1, uid: 0, gid: 0, pid: 1 }, [bytesOf(rnd, bodyLen)]);
      assert.doesNotThrow(() => session.handleMessage(buf));
      opOf.set(BigInt(unique), op);
    }
    await new Promise((r) => setImmediate(r));
    assert.equal(replies.length, opOf.size, 'one reply per request');
    // With no handler methods, only the requests that succeed by default may answer 0.
    const succeedByDefault = new Set<number>([Op.RELEASE, Op.RELEASEDIR, Op.DESTROY]);
    for (const r of replies) {
      const op = opOf.get(r.unique)!;
      assert.ok(r.error <= 0 && r.error > -4096, `errno reply, got ${r.error}`);
      if (r.error === 0) assert.ok(succeedByDefault.has(op), `${Op[op]} answered success`);
    }
    assert.equal(session.pendingCount, 0);
  });

  it('answers a length that disagrees with the buffer, an unknown opcode and a short header without throwing', async () => {
    const { session, replies } = harness();
    const good = K.kernelRequest(Op.GETATTR, { unique: 10, nodeid: 1 }, [K.pack(K.fuse_getattr_in, {})]);
    const lying = Buffer.from(good);
    lying.writeUInt32LE(good.length + 100, 0);
    session.handleMessage(lying);
    session.handleMessage(K.kernelRequest(4242, { unique: 12, nodeid: 1 }, []));
    session.handleMessage(Buffer.alloc(IN_HEADER_SIZE - 1));
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(replies, [
      { unique: 10n, error: -22 },
      { unique: 12n, error: -38 },
    ]);
  });
});
