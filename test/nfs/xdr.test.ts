import assert from 'assert/strict';
import { randomBytes } from 'crypto';
import { RecordDecoder, RecordError, encodeRecord } from '../../src/layers/nfs/record';
import {
  RpcAuthError,
  RpcGarbageArgsError,
  RpcProcUnavailError,
  RpcProgMismatchError,
  RpcProgUnavailError,
  RpcVersionMismatchError,
  decodeReply,
  encodeCall,
} from '../../src/layers/nfs/rpc-message';
import { XdrError, XdrReader, XdrWriter } from '../../src/layers/nfs/xdr';

describe('XDR', function () {
  this.timeout(5000);

  it('round-trips every primitive', () => {
    const bytes = new XdrWriter(4)
      .uint32(0)
      .uint32(0xffffffff)
      .int32(-1)
      .int32(0x7fffffff)
      .uint64(0xffffffffffffffffn)
      .uint64(1n << 40n)
      .int64(-(1n << 63n))
      .bool(true)
      .bool(false)
      .bytes();
    const r = new XdrReader(Buffer.from(bytes));
    assert.equal(r.uint32(), 0);
    assert.equal(r.uint32(), 0xffffffff);
    assert.equal(r.int32(), -1);
    assert.equal(r.int32(), 0x7fffffff);
    assert.equal(r.uint64(), 0xffffffffffffffffn);
    assert.equal(r.uint64(), 1n << 40n);
    assert.equal(r.int64(), -(1n << 63n));
    assert.equal(r.bool(), true);
    assert.equal(r.bool(), false);
    assert.equal(r.remaining, 0);
  });

  it('pads opaque data and strings to 4 bytes and keeps raw bytes', () => {
    const name = Buffer.from([0x66, 0xff, 0x00, 0x80, 0x2f]); // not UTF-8
    const bytes = new XdrWriter().opaque(Buffer.from('abc')).string(name).opaqueFixed(Buffer.from('12345678'), 8).string('é').bytes();
    assert.equal(bytes.length, 4 + 4 + 4 + 8 + 8 + 4 + 4);
    assert.deepEqual([...bytes.subarray(4, 8)], [0x61, 0x62, 0x63, 0]);
    const r = new XdrReader(Buffer.from(bytes));
    assert.equal(r.opaque().toString(), 'abc');
    assert.deepEqual(r.stringBytes(), name);
    assert.equal(r.opaqueFixed(8).toString(), '12345678');
    assert.equal(r.string(), 'é');
    assert.equal(r.remaining, 0);
  });

  it('round-trips optionals and arrays', () => {
    const bytes = new XdrWriter()
      .optional<number>(7, (w, v) => w.uint32(v))
      .optional<number>(undefined, (w, v) => w.uint32(v))
      .array([1, 2, 3], (w, v) => w.uint32(v))
      .array<string>([], (w, v) => w.string(v))
      .bytes();
    const r = new XdrReader(Buffer.from(bytes));
    assert.equal(
      r.optional((x) => x.uint32()),
      7,
    );
    assert.equal(
      r.optional((x) => x.uint32()),
      undefined,
    );
    assert.deepEqual(
      r.array((x) => x.uint32()),
      [1, 2, 3],
    );
    assert.deepEqual(
      r.array((x) => x.string()),
      [],
    );
  });

  it('rejects out-of-range values when encoding', () => {
    assert.throws(() => new XdrWriter().uint32(-1), XdrError);
    assert.throws(() => new XdrWriter().uint32(2 ** 32), XdrError);
    assert.throws(() => new XdrWriter().int32(2 ** 31), XdrError);
    assert.throws(() => new XdrWriter().uint64(-1n), XdrError);
    assert.throws(() => new XdrWriter().opaque(Buffer.alloc(65), 64), /exceeds its limit of 64/);
  });

  it('rejects truncated and malformed input when decoding', () => {
    assert.throws(() => new XdrReader(Buffer.alloc(3)).uint32(), /truncated uint32/);
    const claimsTooMuch = new XdrWriter().uint32(100).uint32(1).bytes();
    assert.throws(() => new XdrReader(Buffer.from(claimsTooMuch)).opaque(), /truncated opaque/);
    assert.throws(() => new XdrReader(Buffer.from(claimsTooMuch)).array((r) => r.uint32()), /cannot fit/);
    assert.throws(() => new XdrReader(Buffer.from(new XdrWriter().uint32(2).bytes())).bool(), /bool must be 0 or 1/);
    assert.throws(() => new XdrReader(Buffer.from(new XdrWriter().uint32(65).bytes())).opaque(64), /exceeds its limit/);
  });
});

describe('RPC record marking', function () {
  this.timeout(5000);

  it('splits a record into fragments and reassembles it from arbitrary chunks', () => {
    const payload = Buffer.from(Array.from({ length: 1000 }, (_, i) => i & 0xff));
    const framed = encodeRecord(payload, 300);
    assert.equal(framed.length, 1000 + 4 * 4);
    assert.equal(framed.readUInt32BE(0), 300);
    assert.equal(framed.readUInt32BE(3 * (4 + 300)), 0x80000000 + 100);
    for (const chunkSize of [1, 3, 7, 304, 5000]) {
      const decoder = new RecordDecoder(1 << 20);
      const records: Buffer[] = [];
      for (let i = 0; i < framed.length; i += chunkSize) records.push(...decoder.push(framed.subarray(i, i + chunkSize)));
      assert.equal(records.length, 1, `chunk size ${chunkSize}`);
      assert.deepEqual(records[0], payload);
    }
  });

  it('yields several records that arrive in one chunk, in order', () => {
    const both = Buffer.concat([encodeRecord(Buffer.from('first')), encodeRecord(Buffer.alloc(0)), encodeRecord(Buffer.from('third'))]);
    const records = new RecordDecoder(100).push(both);
    assert.deepEqual(
      records.map((r) => r.toString()),
      ['first', '', 'third'],
    );
  });

  it('lets a large fragment be read straight into its buffer', () => {
    const payload = randomBytes(200_000);
    const framed = Buffer.concat([encodeRecord(payload, 150_000), encodeRecord(Buffer.from('next'))]);
    const decoder = new RecordDecoder(1 << 20);
    let pos = 0;
    const records: Buffer[] = [];
    const readInto = (target: Buffer, max: number): number => {
      const n = Math.min(target.length, max, framed.length - pos);
      framed.copy(target, 0, pos, pos + n);
      pos += n;
      return n;
    };
    let directReads = 0;
    while (pos < framed.length) {
      const target = decoder.directTarget(1000);
      if (target !== undefined) {
        directReads++;
        records.push(...decoder.filledDirectly(readInto(target, 70_000)));
      } else {
        const scratch = Buffer.alloc(10);
        records.push(...decoder.push(scratch.subarray(0, readInto(scratch, 10))));
      }
    }
    assert.ok(directReads >= 3, `only ${directReads} direct reads`);
    assert.equal(records.length, 2);
    assert.deepEqual(records[0], payload);
    assert.equal(records[1].toString(), 'next');
  });

  it('refuses a record larger than the limit', () => {
    assert.throws(() => new RecordDecoder(10).push(encodeRecord(Buffer.alloc(11))), RecordError);
  });
});

describe('RPC messages', function () {
  this.timeout(5000);
  const target = { program: 100003, version: 3 };

  function reply(xid: number, ...words: number[]): Buffer {
    const w = new XdrWriter().uint32(xid).uint32(1);
    for (const word of words) w.uint32(word);
    return Buffer.from(w.bytes());
  }

  it('encodes a call with an AUTH_SYS credential', () => {
    const call = encodeCall(0x1234, target, 6, { flavor: 'sys', uid: 1000, gid: 100, gids: [4, 5], machineName: 'box' }, (w) => w.uint32(42));
    const r = new XdrReader(Buffer.from(call));
    assert.deepEqual([r.uint32(), r.uint32(), r.uint32(), r.uint32(), r.uint32(), r.uint32()], [0x1234, 0, 2, 100003, 3, 6]);
    assert.equal(r.uint32(), 1); // AUTH_SYS
    const cred = new XdrReader(r.opaque(400));
    cred.uint32(); // stamp
    assert.equal(cred.string(), 'box');
    assert.deepEqual([cred.uint32(), cred.uint32()], [1000, 100]);
    assert.deepEqual(
      cred.array((x) => x.uint32()),
      [4, 5],
    );
    assert.deepEqual([r.uint32(), r.opaque().length], [0, 0]); // AUTH_NONE verifier
    assert.equal(r.uint32(), 42);
    assert.equal(r.remaining, 0);
  });

  it('positions the reader at the results of an accepted reply', () => {
    const r = decodeReply(reply(9, 0, 0, 0, 0, 77), target, 1);
    assert.equal(r.uint32(), 77);
  });

  it('reports each refusal as its own error', () => {
    assert.throws(() => decodeReply(reply(1, 0, 0, 0, 1), target, 1), RpcProgUnavailError);
    assert.throws(
      () => decodeReply(reply(1, 0, 0, 0, 2, 2, 2), target, 1),
      (e: unknown) => e instanceof RpcProgMismatchError && e.low === 2 && e.high === 2 && e.code === 'EPROTONOSUPPORT',
    );
    assert.throws(
      () => decodeReply(reply(1, 0, 0, 0, 3), target, 99),
      (e: unknown) => e instanceof RpcProcUnavailError && e.procedure === 99,
    );
    assert.throws(() => decodeReply(reply(1, 0, 0, 0, 4), target, 1), RpcGarbageArgsError);
    assert.throws(() => decodeReply(reply(1, 1, 0, 2, 2), target, 1), RpcVersionMismatchError);
    assert.throws(
      () => decodeReply(reply(1, 1, 1, 5), target, 1),
      (e: unknown) => e instanceof RpcAuthError && e.code === 'EACCES',
    );
    assert.throws(() => decodeReply(reply(1, 7), target, 1), /unknown reply_stat 7/);
  });
});
