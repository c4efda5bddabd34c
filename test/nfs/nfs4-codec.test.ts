import assert from 'assert/strict';
import { bitmapOf, hasBit, readFattr, writeBitmap } from '../../src/layers/nfs/v4/attrs';
import { decodeNfs4Acl, encodeNfs4Acl } from '../../src/layers/nfs/v4/acl-xattr';
import { Compound, CompoundReply } from '../../src/layers/nfs/v4/compound';
import { Nfs4Error } from '../../src/layers/nfs/v4/errors';
import { NOBODY_ID, ownerToId } from '../../src/layers/nfs/v4/owners';
import { Attr, Nfs4Status, Op } from '../../src/layers/nfs/v4/protocol';
import { SlotTable, type Slot } from '../../src/layers/nfs/v4/slots';
import { toNfsAttr } from '../../src/layers/nfs/v4/client';
import { XdrReader, XdrWriter } from '../../src/layers/nfs/xdr';

/** An fattr4 as a server sends it: bitmap, then the values' bytes as one opaque. */
function fattr(attrs: Attr[], values: (w: XdrWriter) => void): XdrReader {
  const v = new XdrWriter();
  values(v);
  const w = new XdrWriter();
  writeBitmap(w, bitmapOf(attrs));
  w.opaque(v.bytes());
  return new XdrReader(w.bytes());
}

describe('NFSv4 codec', function () {
  this.timeout(5000);

  it('builds attribute bitmaps across words and reads their bits', () => {
    const words = bitmapOf([Attr.TYPE, Attr.CHANGE, Attr.MODE, Attr.TIME_MODIFY, Attr.XATTR_SUPPORT]);
    assert.deepEqual(words, [(1 << 1) | (1 << 3), (1 << (33 - 32)) | (1 << (53 - 32)), 1 << (82 - 64)]);
    assert.ok(hasBit(words, Attr.TIME_MODIFY));
    assert.ok(!hasBit(words, Attr.SIZE));
    assert.ok(!hasBit(words, Attr.XATTR_SUPPORT + 32));
  });

  it('reads an fattr4 in bit order into stat fields, owners as numbers or names', () => {
    const r = fattr(
      [Attr.TYPE, Attr.CHANGE, Attr.SIZE, Attr.FILEID, Attr.MODE, Attr.NUMLINKS, Attr.OWNER, Attr.OWNER_GROUP, Attr.TIME_METADATA, Attr.TIME_MODIFY],
      (w) => {
        w.uint32(1).uint64(77n).uint64(5000n).uint64(42n).uint32(0o4755).uint32(2);
        w.string('1234').string('root@example.org');
        w.int64(100n).uint32(5).int64(90n).uint32(6);
      },
    );
    const a = toNfsAttr(readFattr(r));
    assert.equal(r.remaining, 0);
    assert.deepEqual(
      { mode: a.mode, nlink: a.nlink, uid: a.uid, gid: a.gid, size: a.size, fileid: a.fileid, change: a.change, ctime: a.ctime, mtime: a.mtime },
      { mode: 0o104755, nlink: 2, uid: 1234, gid: 0, size: 5000n, fileid: 42n, change: 77n, ctime: { sec: 100, nsec: 5 }, mtime: { sec: 90, nsec: 6 } },
    );
  });

  it('refuses an attribute it did not ask for (no length to skip it by) and nanoseconds out of range', () => {
    assert.throws(() => readFattr(fattr([5 as Attr], (w) => w.uint32(1))), /attribute 5 sent but not asked for/);
    assert.throws(() => readFattr(fattr([Attr.TIME_MODIFY], (w) => w.int64(1n).uint32(1e9))), /nanoseconds/);
  });

  it('maps owner strings as the kernel client does: numbers, local names, else nobody', () => {
    assert.equal(ownerToId(Buffer.from('0'), false), 0);
    assert.equal(ownerToId(Buffer.from('4294967295'), false), NOBODY_ID);
    assert.equal(ownerToId(Buffer.from('root@any.domain'), false), 0);
    assert.equal(ownerToId(Buffer.from('root@any.domain'), true), 0);
    assert.equal(ownerToId(Buffer.from('no-such-user-here@x'), false), NOBODY_ID);
    assert.equal(ownerToId(Buffer.from('@x'), false), NOBODY_ID);
    assert.equal(ownerToId(Buffer.from('root'), false), NOBODY_ID);
  });

  it('round-trips system.nfs4_acl as the XDR of nfsace4<> and refuses trailing bytes', () => {
    const acl = [
      { type: 0, flag: 0, mask: 0x1f01ff, who: Buffer.from('OWNER@') },
      { type: 1, flag: 0x40, mask: 0x2, who: Buffer.from('1000') },
    ];
    const bytes = encodeNfs4Acl(acl);
    assert.equal(bytes.length, 4 + 2 * 12 + 4 + 8 + 4 + 4);
    assert.deepEqual(decodeNfs4Acl(bytes), acl);
    assert.throws(() => decodeNfs4Acl(Buffer.concat([bytes, Buffer.alloc(4)])), /after the last entry/);
  });

  it('reads a COMPOUND reply result by result: the failing one throws its status, those after it were never sent', () => {
    const w = new XdrWriter();
    w.uint32(Nfs4Status.NOENT).string('').uint32(2);
    w.uint32(Op.PUTFH).uint32(Nfs4Status.OK);
    w.uint32(Op.LOOKUP).uint32(Nfs4Status.NOENT);
    const reply = new CompoundReply(new XdrReader(w.bytes()));
    reply.ok(Op.PUTFH);
    assert.throws(
      () => reply.ok(Op.LOOKUP, "'x'"),
      (e: unknown) => e instanceof Nfs4Error && e.code === 'ENOENT' && /NFS4ERR_NOENT\), lookup 'x'/.test(e.message),
    );
    assert.throws(
      () => reply.getfh(),
      (e: unknown) => e instanceof Nfs4Error && e.code === 'ENOENT',
    );
    const other = new XdrWriter();
    other.uint32(0).string('').uint32(1).uint32(Op.GETFH).uint32(0);
    assert.throws(() => new CompoundReply(new XdrReader(other.bytes())).ok(Op.PUTFH), /result for operation 10 where PUTFH was expected/);
  });

  it('encodes a COMPOUND with SEQUENCE ahead of its operations', () => {
    const c = new Compound()
      .putfh(Buffer.from([1, 2, 3]))
      .lookup(Buffer.from('name'))
      .getfh();
    const w = new XdrWriter();
    c.encode(w, 1, (x) => x.uint32(Op.SEQUENCE));
    const r = new XdrReader(w.bytes());
    assert.equal(r.string(), '');
    assert.equal(r.uint32(), 1);
    assert.equal(r.uint32(), 4);
    assert.deepEqual([r.uint32(), r.uint32(), r.opaque().length, r.uint32(), r.string(), r.uint32()], [Op.SEQUENCE, Op.PUTFH, 3, Op.LOOKUP, 'name', Op.GETFH]);
  });

  it('maps statuses to what applications can act on', () => {
    const code = (s: Nfs4Status): string => new Nfs4Error(s, Op.READ).code;
    assert.deepEqual(
      [Nfs4Status.STALE, Nfs4Status.FHEXPIRED, Nfs4Status.DENIED, Nfs4Status.DEADLOCK, Nfs4Status.OPENMODE, Nfs4Status.NOXATTR, Nfs4Status.BADSESSION].map(
        code,
      ),
      ['ESTALE', 'ESTALE', 'EAGAIN', 'EDEADLK', 'EBADF', 'ENODATA', 'EIO'],
    );
  });

  it('hands out slots lowest first, holds requests when all are busy, and keeps above the target idle', async () => {
    const t = new SlotTable(Buffer.alloc(16), 3);
    const take = async (): Promise<Slot> => (await t.acquire()) ?? assert.fail('no slot');
    const [a, b, c] = [await take(), await take(), await take()];
    assert.deepEqual([a.id, b.id, c.id], [0, 1, 2]);
    let fourth: number | undefined;
    void t.acquire().then((s) => (fourth = s?.id));
    await new Promise((r) => setImmediate(r));
    assert.equal(fourth, undefined, 'waits for a slot');
    t.setTarget(0);
    t.release(c);
    await new Promise((r) => setImmediate(r));
    assert.equal(fourth, undefined, 'slot 2 is above the target');
    t.release(a);
    await new Promise((r) => setImmediate(r));
    assert.equal(fourth, 0);
  });

  it('a dropped table (the session went) sends its waiters on; retired slots under the target lift the target', async () => {
    const t = new SlotTable(Buffer.alloc(16), 2);
    await t.acquire();
    await t.acquire();
    const waiter = t.acquire();
    t.drop();
    assert.equal(await waiter, undefined);
    assert.equal(await t.acquire(), undefined);
    const u = new SlotTable(Buffer.alloc(16), 2);
    const s0 = (await u.acquire())!;
    u.setTarget(0);
    u.retire(s0);
    assert.equal(u.usable, 1, 'slot 1 serves once nothing under the target can');
    assert.equal((await u.acquire())?.id, 1);
  });
});
