import assert from 'assert/strict';
import { InitFlag, Op, OFFSET_MAX } from '../../src/fuse/abi';
import {
  DirentList,
  DirentPlusList,
  ReplySize,
  encodeAttrOut,
  encodeEntry,
  encodeInit,
  encodeLock,
  encodeOpen,
  encodeStatfs,
  encodeStatxOut,
  message,
  negativeEntry,
  notifyDelete,
  notifyInvalEntry,
  notifyInvalInode,
  notifyIncEpoch,
  notifyPollWakeup,
  notifyPrune,
  notifyRetrieve,
  notifyStore,
  type Attr,
  type EntryOut,
} from '../../src/fuse/replies';
import { decodeRequest, MalformedMessage, UnknownOpcode, type DecodeContext, type Request } from '../../src/fuse/requests';
import * as K from './kernel-structs';

const ctx: DecodeContext = { minor: 45, setxattrExt: true };
const HDR = { unique: 0x1_0000_0002, nodeid: 77, uid: 1000, gid: 100, pid: 4242 };

function req(opcode: number, body: Buffer[], c: DecodeContext = ctx): Request {
  const r = decodeRequest(K.kernelRequest(opcode, HDR, body), c);
  assert.equal(r.opcode, opcode);
  assert.equal(r.unique, HDR.unique);
  assert.equal(r.nodeid, HDR.nodeid);
  assert.equal(r.uid, HDR.uid);
  assert.equal(r.gid, HDR.gid);
  assert.equal(r.pid, HDR.pid);
  return r;
}

function pick<T extends Request>(r: Request, op: Op | Op[]): T {
  const ops = Array.isArray(op) ? op : [op];
  assert.ok(ops.includes(r.op as Op), `decoded as ${r.op}`);
  return r as T;
}

describe('FUSE request decoding against the kernel layouts', function () {
  this.timeout(10000);

  it('decodes name-only requests (LOOKUP, UNLINK, RMDIR, REMOVEXATTR)', () => {
    for (const op of [Op.LOOKUP, Op.UNLINK, Op.RMDIR, Op.REMOVEXATTR]) {
      const r = req(op, [K.cstr('héllo')]) as { name: Buffer };
      assert.equal(r.name.toString(), 'héllo');
    }
  });

  it('keeps non-UTF-8 names as raw bytes', () => {
    const raw = Buffer.from([0x66, 0xff, 0xfe, 0x00]);
    const r = req(Op.LOOKUP, [raw]) as { name: Buffer };
    assert.deepEqual([...r.name], [0x66, 0xff, 0xfe]);
  });

  it('decodes FORGET and BATCH_FORGET', () => {
    const f = pick<{ op: Op.FORGET; nlookup: number } & Request>(req(Op.FORGET, [K.pack(K.fuse_forget_in, { nlookup: 5 })]), Op.FORGET);
    assert.equal(f.nlookup, 5);
    const items = [K.pack(K.fuse_forget_one, { nodeid: 10, nlookup: 1 }), K.pack(K.fuse_forget_one, { nodeid: 2 ** 40, nlookup: 3 })];
    const b = req(Op.BATCH_FORGET, [K.pack(K.fuse_batch_forget_in, { count: 2 }), ...items]);
    assert.ok(b.op === Op.BATCH_FORGET);
    assert.deepEqual(b.forgets, [
      { nodeid: 10, nlookup: 1 },
      { nodeid: 2 ** 40, nlookup: 3 },
    ]);
  });

  it('refuses a BATCH_FORGET whose count overruns the message', () => {
    const buf = K.kernelRequest(Op.BATCH_FORGET, HDR, [K.pack(K.fuse_batch_forget_in, { count: 1000 })]);
    assert.throws(() => decodeRequest(buf, ctx), MalformedMessage);
  });

  it('decodes GETATTR and STATX', () => {
    const g = req(Op.GETATTR, [K.pack(K.fuse_getattr_in, { getattr_flags: 1, fh: 99 })]);
    assert.ok(g.op === Op.GETATTR);
    assert.equal(g.getattrFlags, 1);
    assert.equal(g.fh, 99);
    const s = req(Op.STATX, [K.pack(K.fuse_statx_in, { getattr_flags: 1, fh: 7, sx_flags: 0x2000, sx_mask: 0xfff })]);
    assert.ok(s.op === Op.STATX);
    assert.deepEqual([s.getattrFlags, s.fh, s.sxFlags, s.sxMask], [1, 7, 0x2000, 0xfff]);
  });

  it('decodes SETATTR with every field, negative times included', () => {
    const body = K.pack(K.fuse_setattr_in, {
      valid: 0xfff,
      fh: 12,
      size: 0x1_2345_6789n,
      lock_owner: 0xdeadbeefcafef00dn,
      atime: -5,
      mtime: 1_700_000_000,
      ctime: 3,
      atimensec: 999_999_999,
      mtimensec: 1,
      ctimensec: 2,
      mode: 0o104755,
      uid: 1234,
      gid: 5678,
    });
    const r = req(Op.SETATTR, [body]);
    assert.ok(r.op === Op.SETATTR);
    assert.equal(r.valid, 0xfff);
    assert.equal(r.fh, 12);
    assert.equal(r.size, 0x1_2345_6789n);
    assert.equal(r.lockOwner, 0xdeadbeefcafef00dn);
    assert.deepEqual(r.atime, { sec: -5, nsec: 999_999_999 });
    assert.deepEqual(r.mtime, { sec: 1_700_000_000, nsec: 1 });
    assert.deepEqual(r.ctime, { sec: 3, nsec: 2 });
    assert.equal(r.mode, 0o104755);
    assert.equal(r.newUid, 1234);
    assert.equal(r.newGid, 5678);
    assert.equal(r.uid, HDR.uid, 'the caller uid stays the header one');
  });

  it('decodes READLINK, STATFS, DESTROY, SYNCFS (no body or padding only)', () => {
    for (const op of [Op.READLINK, Op.STATFS, Op.DESTROY]) assert.equal(req(op, []).op, op);
    assert.equal(req(Op.SYNCFS, [K.pack(K.fuse_syncfs_in, {})]).op, Op.SYNCFS);
  });

  it('decodes SYMLINK, MKNOD, MKDIR', () => {
    const s = req(Op.SYMLINK, [K.cstr('link'), K.cstr('../target')]);
    assert.ok(s.op === Op.SYMLINK);
    assert.equal(s.name.toString(), 'link');
    assert.equal(s.target.toString(), '../target');
    const n = req(Op.MKNOD, [K.pack(K.fuse_mknod_in, { mode: 0o020644, rdev: 0x0103, umask: 0o022 }), K.cstr('dev')]);
    assert.ok(n.op === Op.MKNOD);
    assert.deepEqual([n.mode, n.rdev, n.umask, n.name.toString()], [0o020644, 0x0103, 0o022, 'dev']);
    const d = req(Op.MKDIR, [K.pack(K.fuse_mkdir_in, { mode: 0o755, umask: 0o002 }), K.cstr('sub')]);
    assert.ok(d.op === Op.MKDIR);
    assert.deepEqual([d.mode, d.umask, d.name.toString()], [0o755, 0o002, 'sub']);
  });

  it('decodes RENAME, RENAME2 and LINK', () => {
    const r1 = req(Op.RENAME, [K.pack(K.fuse_rename_in, { newdir: 9 }), K.cstr('a'), K.cstr('b')]);
    assert.ok(r1.op === Op.RENAME);
    assert.deepEqual([r1.newdir, r1.flags, r1.name.toString(), r1.newname.toString()], [9, 0, 'a', 'b']);
    const r2 = req(Op.RENAME2, [K.pack(K.fuse_rename2_in, { newdir: 10, flags: 2 }), K.cstr('x'), K.cstr('y')]);
    assert.ok(r2.op === Op.RENAME2);
    assert.deepEqual([r2.newdir, r2.flags, r2.name.toString(), r2.newname.toString()], [10, 2, 'x', 'y']);
    const l = req(Op.LINK, [K.pack(K.fuse_link_in, { oldnodeid: 33 }), K.cstr('hard')]);
    assert.ok(l.op === Op.LINK);
    assert.deepEqual([l.oldnodeid, l.newname.toString()], [33, 'hard']);
  });

  it('decodes OPEN, OPENDIR, CREATE, TMPFILE', () => {
    for (const op of [Op.OPEN, Op.OPENDIR]) {
      const o = req(op, [K.pack(K.fuse_open_in, { flags: 0o102, open_flags: 1 })]);
      assert.ok(o.op === Op.OPEN || o.op === Op.OPENDIR);
      assert.deepEqual([o.flags, o.openFlags], [0o102, 1]);
    }
    for (const op of [Op.CREATE, Op.TMPFILE]) {
      const c = req(op, [K.pack(K.fuse_create_in, { flags: 0o1101, mode: 0o100600, umask: 0o77, open_flags: 1 }), K.cstr('new')]);
      assert.ok(c.op === Op.CREATE || c.op === Op.TMPFILE);
      assert.deepEqual([c.flags, c.mode, c.umask, c.openFlags, c.name.toString()], [0o1101, 0o100600, 0o77, 1, 'new']);
    }
  });

  it('decodes READ, READDIR, READDIRPLUS and WRITE with its data', () => {
    for (const op of [Op.READ, Op.READDIR, Op.READDIRPLUS]) {
      const r = req(op, [K.pack(K.fuse_read_in, { fh: 5, offset: 2 ** 40 + 3, size: 131072, read_flags: 2, lock_owner: 77n, flags: 0o2 })]);
      assert.ok(r.op === Op.READ || r.op === Op.READDIR || r.op === Op.READDIRPLUS);
      assert.deepEqual([r.fh, r.offset, r.size, r.readFlags, r.lockOwner, r.flags], [5, 2 ** 40 + 3, 131072, 2, 77n, 0o2]);
    }
    const data = Buffer.from('payload bytes');
    const w = req(Op.WRITE, [K.pack(K.fuse_write_in, { fh: 6, offset: 100, size: data.length, write_flags: 7, lock_owner: 1n, flags: 1 }), data]);
    assert.ok(w.op === Op.WRITE);
    assert.deepEqual([w.fh, w.offset, w.writeFlags, w.lockOwner, w.flags, w.data.toString()], [6, 100, 7, 1n, 1, 'payload bytes']);
  });

  it('refuses a WRITE whose size overruns the message', () => {
    const buf = K.kernelRequest(Op.WRITE, HDR, [K.pack(K.fuse_write_in, { size: 100 }), Buffer.alloc(10)]);
    assert.throws(() => decodeRequest(buf, ctx), MalformedMessage);
  });

  it('decodes RELEASE, RELEASEDIR, FLUSH, FSYNC, FSYNCDIR', () => {
    for (const op of [Op.RELEASE, Op.RELEASEDIR]) {
      const r = req(op, [K.pack(K.fuse_release_in, { fh: 8, flags: 0o2, release_flags: 3, lock_owner: 0xffff_ffff_ffff_fffen })]);
      assert.ok(r.op === Op.RELEASE || r.op === Op.RELEASEDIR);
      assert.deepEqual([r.fh, r.flags, r.releaseFlags, r.lockOwner], [8, 0o2, 3, 0xffff_ffff_ffff_fffen]);
    }
    const f = req(Op.FLUSH, [K.pack(K.fuse_flush_in, { fh: 9, lock_owner: 123n })]);
    assert.ok(f.op === Op.FLUSH);
    assert.deepEqual([f.fh, f.lockOwner], [9, 123n]);
    for (const op of [Op.FSYNC, Op.FSYNCDIR]) {
      const s = req(op, [K.pack(K.fuse_fsync_in, { fh: 4, fsync_flags: 1 })]);
      assert.ok(s.op === Op.FSYNC || s.op === Op.FSYNCDIR);
      assert.deepEqual([s.fh, s.fsyncFlags], [4, 1]);
    }
  });

  it('decodes SETXATTR in both the extended and the compat layout', () => {
    const value = Buffer.from([1, 2, 0, 3]);
    const ext = req(Op.SETXATTR, [K.pack(K.fuse_setxattr_in, { size: 4, flags: 1, setxattr_flags: 1 }), K.cstr('user.k'), value]);
    assert.ok(ext.op === Op.SETXATTR);
    assert.deepEqual([ext.flags, ext.setxattrFlags, ext.name.toString(), [...ext.value]], [1, 1, 'user.k', [1, 2, 0, 3]]);
    const compat = req(Op.SETXATTR, [K.pack(K.fuse_setxattr_in_compat, { size: 4, flags: 2 }), K.cstr('user.k'), value], { minor: 45, setxattrExt: false });
    assert.ok(compat.op === Op.SETXATTR);
    assert.deepEqual([compat.flags, compat.setxattrFlags, [...compat.value]], [2, 0, [1, 2, 0, 3]]);
  });

  it('decodes GETXATTR and LISTXATTR', () => {
    const g = req(Op.GETXATTR, [K.pack(K.fuse_getxattr_in, { size: 64 }), K.cstr('trusted.overlay.opaque')]);
    assert.ok(g.op === Op.GETXATTR);
    assert.deepEqual([g.size, g.name.toString()], [64, 'trusted.overlay.opaque']);
    const l = req(Op.LISTXATTR, [K.pack(K.fuse_getxattr_in, { size: 0 })]);
    assert.ok(l.op === Op.LISTXATTR);
    assert.equal(l.size, 0);
  });

  it('decodes INIT with flags2 when INIT_EXT is set, and without', () => {
    const flags = Number(InitFlag.INIT_EXT | InitFlag.ASYNC_READ);
    const r = req(Op.INIT, [K.pack(K.fuse_init_in, { major: 7, minor: 45, max_readahead: 131072, flags, flags2: 0b100000 })]);
    assert.ok(r.op === Op.INIT);
    assert.deepEqual([r.major, r.minor, r.maxReadahead], [7, 45, 131072]);
    assert.equal(r.flags, InitFlag.INIT_EXT | InitFlag.ASYNC_READ | InitFlag.PASSTHROUGH);
    const old = req(Op.INIT, [K.pack(K.fuse_init_in, { major: 7, minor: 31, max_readahead: 4096, flags: 1, flags2: 0xffff })]);
    assert.ok(old.op === Op.INIT);
    assert.equal(old.flags, 1n, 'flags2 ignored without INIT_EXT');
  });

  it('decodes GETLK, SETLK, SETLKW with 64-bit ranges and owners', () => {
    for (const op of [Op.GETLK, Op.SETLK, Op.SETLKW]) {
      const body = K.pack(K.fuse_lk_in, {
        fh: 3,
        owner: 0x8000_0000_0000_0001n,
        'lk.start': 10n,
        'lk.end': OFFSET_MAX,
        'lk.type': 1,
        'lk.pid': 555,
        lk_flags: 1,
      });
      const r = req(op, [body]);
      assert.ok(r.op === Op.GETLK || r.op === Op.SETLK || r.op === Op.SETLKW);
      assert.deepEqual([r.fh, r.owner, r.lk, r.lkFlags], [3, 0x8000_0000_0000_0001n, { start: 10n, end: OFFSET_MAX, type: 1, pid: 555 }, 1]);
    }
  });

  it('decodes ACCESS, INTERRUPT, BMAP, POLL', () => {
    const a = req(Op.ACCESS, [K.pack(K.fuse_access_in, { mask: 7 })]);
    assert.ok(a.op === Op.ACCESS);
    assert.equal(a.mask, 7);
    const i = req(Op.INTERRUPT, [K.pack(K.fuse_interrupt_in, { unique: 2 ** 33 })]);
    assert.ok(i.op === Op.INTERRUPT);
    assert.equal(i.target, 2 ** 33);
    const b = req(Op.BMAP, [K.pack(K.fuse_bmap_in, { block: 1n << 40n, blocksize: 4096 })]);
    assert.ok(b.op === Op.BMAP);
    assert.deepEqual([b.block, b.blocksize], [1n << 40n, 4096]);
    const p = req(Op.POLL, [K.pack(K.fuse_poll_in, { fh: 1, kh: 0xabcdef0123n, flags: 1, events: 0x19 })]);
    assert.ok(p.op === Op.POLL);
    assert.deepEqual([p.fh, p.kh, p.flags, p.events], [1, 0xabcdef0123n, 1, 0x19]);
  });

  it('decodes IOCTL with its input data', () => {
    const r = req(Op.IOCTL, [
      K.pack(K.fuse_ioctl_in, { fh: 2, flags: 16, cmd: 0x80086601, arg: 0x7ffc0000n, in_size: 3, out_size: 8 }),
      Buffer.from([9, 8, 7]),
    ]);
    assert.ok(r.op === Op.IOCTL);
    assert.deepEqual([r.fh, r.flags, r.cmd, r.arg, r.inSize, r.outSize, [...r.data]], [2, 16, 0x80086601, 0x7ffc0000n, 3, 8, [9, 8, 7]]);
  });

  it('decodes FALLOCATE, LSEEK, COPY_FILE_RANGE, COPY_FILE_RANGE_64', () => {
    const f = req(Op.FALLOCATE, [K.pack(K.fuse_fallocate_in, { fh: 1, offset: 1n << 50n, length: 4096n, mode: 3 })]);
    assert.ok(f.op === Op.FALLOCATE);
    assert.deepEqual([f.fh, f.offset, f.length, f.mode], [1, 1n << 50n, 4096n, 3]);
    const s = req(Op.LSEEK, [K.pack(K.fuse_lseek_in, { fh: 1, offset: 12345n, whence: 3 })]);
    assert.ok(s.op === Op.LSEEK);
    assert.deepEqual([s.offset, s.whence], [12345n, 3]);
    // loff_t: a negative offset arrives in the u64 field as its two's complement.
    const n = req(Op.LSEEK, [K.pack(K.fuse_lseek_in, { fh: 1, offset: (1n << 64n) - 1n, whence: 3 })]);
    assert.ok(n.op === Op.LSEEK);
    assert.equal(n.offset, -1n);
    for (const op of [Op.COPY_FILE_RANGE, Op.COPY_FILE_RANGE_64]) {
      const c = req(op, [K.pack(K.fuse_copy_file_range_in, { fh_in: 1, off_in: 2n, nodeid_out: 3, fh_out: 4, off_out: 5n, len: 1n << 33n, flags: 0n })]);
      assert.ok(c.op === Op.COPY_FILE_RANGE || c.op === Op.COPY_FILE_RANGE_64);
      assert.deepEqual([c.fhIn, c.offIn, c.nodeidOut, c.fhOut, c.offOut, c.length, c.flags], [1, 2n, 3, 4, 5n, 1n << 33n, 0n]);
    }
  });

  it('decodes NOTIFY_REPLY carrying retrieved data', () => {
    const data = Buffer.from('cached');
    const r = req(Op.NOTIFY_REPLY, [K.pack(K.fuse_notify_retrieve_in, { offset: 4096, size: data.length }), data]);
    assert.ok(r.op === Op.NOTIFY_REPLY);
    assert.deepEqual([r.offset, r.size, r.data.toString()], [4096, 6, 'cached']);
  });

  it('reads the supplementary-group extension after the body', () => {
    const ext = Buffer.concat([K.pack(K.fuse_ext_header, { size: 16, type: 32 }), Buffer.from([1, 0, 0, 0, 0xe8, 0x03, 0, 0])]);
    const buf = K.kernelRequest(Op.MKDIR, HDR, [K.pack(K.fuse_mkdir_in, { mode: 0o755 }), K.cstr('d'), Buffer.alloc(6)], ext);
    const r = decodeRequest(buf, ctx);
    assert.ok(r.op === Op.MKDIR);
    assert.equal(r.name.toString(), 'd');
    assert.deepEqual(r.suppGroups, [1000]);
  });

  it('refuses unknown opcodes and truncated bodies with distinct errors', () => {
    assert.throws(() => decodeRequest(K.kernelRequest(7, HDR, []), ctx), UnknownOpcode);
    assert.throws(() => decodeRequest(K.kernelRequest(9999, HDR, []), ctx), UnknownOpcode);
    assert.throws(() => decodeRequest(K.kernelRequest(Op.SETATTR, HDR, [Buffer.alloc(40)]), ctx), MalformedMessage);
    assert.throws(() => decodeRequest(K.kernelRequest(Op.LOOKUP, HDR, [Buffer.from('no-nul')]), ctx), MalformedMessage);
  });
});

const attr: Attr = {
  ino: 2 ** 40 + 1,
  size: 2 ** 35,
  blocks: 8,
  atime: { sec: -1, nsec: 5 },
  mtime: { sec: 1_700_000_000, nsec: 6 },
  ctime: { sec: 3, nsec: 7 },
  mode: 0o100644,
  nlink: 2,
  uid: 100000,
  gid: 100001,
  rdev: 0x0801,
  blksize: 4096,
  flags: 0,
};

function body(buf: Buffer): Buffer {
  const h = K.unpack(K.fuse_out_header, buf);
  assert.equal(h.len, buf.length, 'out header length covers the message');
  return buf.subarray(16);
}

function checkAttr(got: Record<string, number | bigint>, p = 'attr.'): void {
  assert.equal(got[p + 'ino'], BigInt(attr.ino));
  assert.equal(got[p + 'size'], BigInt(attr.size));
  assert.equal(got[p + 'blocks'], 8n);
  assert.equal(got[p + 'atime'], -1n);
  assert.equal(got[p + 'mtime'], 1_700_000_000n);
  assert.equal(got[p + 'atimensec'], 5);
  assert.equal(got[p + 'ctimensec'], 7);
  assert.equal(got[p + 'mode'], 0o100644);
  assert.equal(got[p + 'nlink'], 2);
  assert.equal(got[p + 'uid'], 100000);
  assert.equal(got[p + 'gid'], 100001);
  assert.equal(got[p + 'rdev'], 0x0801);
  assert.equal(got[p + 'blksize'], 4096);
}

describe('FUSE reply encoding against the kernel layouts', function () {
  this.timeout(10000);

  it('lays out the out header with the negative errno and the unique', () => {
    const m = message(2 ** 40 + 2, -2, 0);
    assert.deepEqual(K.unpack(K.fuse_out_header, m), { len: 16, error: -2, unique: BigInt(2 ** 40 + 2) });
  });

  it('encodes fuse_entry_out with split timeouts', () => {
    const e: EntryOut = { nodeid: 42, generation: 3, entryTimeout: 1.5, attrTimeout: 0.25, attr };
    const m = message(2, 0, ReplySize.entry, (w) => encodeEntry(w, e));
    const got = K.unpack(K.fuse_entry_out, body(m));
    assert.equal(K.sizeOf(K.fuse_entry_out), ReplySize.entry);
    assert.deepEqual(
      [got.nodeid, got.generation, got.entry_valid, got.entry_valid_nsec, got.attr_valid, got.attr_valid_nsec],
      [42n, 3n, 1n, 500_000_000, 0n, 250_000_000],
    );
    checkAttr(got);
    const neg = K.unpack(K.fuse_entry_out, body(message(4, 0, ReplySize.entry, (w) => encodeEntry(w, negativeEntry(10)))));
    assert.deepEqual([neg.nodeid, neg.entry_valid], [0n, 10n]);
  });

  it('encodes fuse_attr_out, fuse_open_out, fuse_write_out', () => {
    const a = K.unpack(K.fuse_attr_out, body(message(2, 0, ReplySize.attr, (w) => encodeAttrOut(w, { attrTimeout: 2, attr }))));
    assert.equal(a.attr_valid, 2n);
    checkAttr(a);
    const o = K.unpack(K.fuse_open_out, body(message(2, 0, ReplySize.open, (w) => encodeOpen(w, { fh: 2 ** 33, openFlags: 0x82, backingId: 7 }))));
    assert.deepEqual(o, { fh: 2n ** 33n, open_flags: 0x82, backing_id: 7 });
  });

  it('encodes fuse_kstatfs and fuse_file_lock', () => {
    const s = K.unpack(
      K.fuse_kstatfs,
      body(
        message(2, 0, ReplySize.statfs, (w) =>
          encodeStatfs(w, {
            blocks: 2 ** 36,
            bfree: 10,
            bavail: 9,
            files: 8,
            ffree: 7,
            bsize: 4096,
            namelen: 255,
            frsize: 512,
          }),
        ),
      ),
    );
    assert.deepEqual([s.blocks, s.bfree, s.bavail, s.files, s.ffree, s.bsize, s.namelen, s.frsize], [2n ** 36n, 10n, 9n, 8n, 7n, 4096, 255, 512]);
    const l = K.unpack(K.fuse_file_lock, body(message(2, 0, ReplySize.lock, (w) => encodeLock(w, { start: 5n, end: OFFSET_MAX, type: 1, pid: 99 }))));
    assert.deepEqual(l, { start: 5n, end: OFFSET_MAX, type: 1, pid: 99 });
  });

  it('encodes fuse_init_out with flags split into flags and flags2', () => {
    const flags = InitFlag.ASYNC_READ | InitFlag.MAX_PAGES | InitFlag.INIT_EXT | InitFlag.PASSTHROUGH;
    const m = message(2, 0, ReplySize.init, (w) =>
      encodeInit(w, {
        major: 7,
        minor: 45,
        maxReadahead: 131072,
        flags,
        maxBackground: 64,
        congestionThreshold: 48,
        maxWrite: 1 << 20,
        timeGran: 1,
        maxPages: 256,
        mapAlignment: 0,
        maxStackDepth: 1,
        requestTimeout: 0,
      }),
    );
    assert.equal(K.sizeOf(K.fuse_init_out), ReplySize.init);
    const got = K.unpack(K.fuse_init_out, body(m));
    assert.deepEqual(
      [
        got.major,
        got.minor,
        got.max_readahead,
        got.flags,
        got.flags2,
        got.max_background,
        got.congestion_threshold,
        got.max_write,
        got.time_gran,
        got.max_pages,
        got.max_stack_depth,
        got.request_timeout,
      ],
      [7, 45, 131072, Number(flags & 0xffffffffn), 1 << 5, 64, 48, 1 << 20, 1, 256, 1, 0],
    );
  });

  it('encodes fuse_statx_out', () => {
    const m = message(2, 0, ReplySize.statx, (w) =>
      encodeStatxOut(w, {
        attrTimeout: 0,
        flags: 0,
        stat: {
          mask: 0xfff,
          blksize: 4096,
          attributes: 0x20n,
          nlink: 3,
          uid: 1,
          gid: 2,
          mode: 0o40755,
          ino: 12345,
          size: 4096,
          blocks: 8,
          attributesMask: 0x20n,
          atime: { sec: 1, nsec: 2 },
          btime: { sec: -3, nsec: 4 },
          ctime: { sec: 5, nsec: 6 },
          mtime: { sec: 7, nsec: 8 },
          rdevMajor: 0,
          rdevMinor: 0,
          devMajor: 0,
          devMinor: 50,
        },
      }),
    );
    assert.equal(K.sizeOf(K.fuse_statx_out), ReplySize.statx);
    const got = K.unpack(K.fuse_statx_out, body(m));
    assert.deepEqual(
      [
        got['stat.mask'],
        got['stat.attributes'],
        got['stat.nlink'],
        got['stat.mode'],
        got['stat.ino'],
        got['stat.btime.tv_sec'],
        got['stat.btime.tv_nsec'],
        got['stat.mtime.tv_sec'],
        got['stat.dev_minor'],
      ],
      [0xfff, 0x20n, 3, 0o40755, 12345n, -3n, 4, 7n, 50],
    );
  });

  it('packs dirents 8-byte aligned and stops when the buffer is full', () => {
    const list = new DirentList(80);
    assert.ok(list.add(Buffer.from('a'), 5, 8, 1));
    assert.ok(list.add(Buffer.from('longer-name'), 6, 4, 2));
    assert.equal(list.add(Buffer.from('x'.repeat(20)), 7, 8, 3), false, 'entry that does not fit is refused');
    const bytes = list.bytes;
    assert.equal(bytes.length, 32 + 40);
    const first = K.unpack(K.fuse_dirent, bytes, 0);
    assert.deepEqual(first, { ino: 5n, off: 1n, namelen: 1, type: 8 });
    assert.equal(bytes.subarray(24, 25).toString(), 'a');
    const second = K.unpack(K.fuse_dirent, bytes, 32);
    assert.deepEqual(second, { ino: 6n, off: 2n, namelen: 11, type: 4 });
    assert.equal(bytes.subarray(56, 67).toString(), 'longer-name');
  });

  it('packs direntplus records: entry_out then dirent', () => {
    const list = new DirentPlusList(4096);
    const e: EntryOut = { nodeid: 9, generation: 1, entryTimeout: 0, attrTimeout: 0, attr };
    assert.ok(list.add(Buffer.from('file'), e, 8, 17));
    const bytes = list.bytes;
    assert.equal(bytes.length, 128 + 24 + 8);
    const entry = K.unpack(K.fuse_entry_out, bytes, 0);
    assert.equal(entry.nodeid, 9n);
    checkAttr(entry);
    assert.deepEqual(K.unpack(K.fuse_dirent, bytes, 128), { ino: BigInt(attr.ino), off: 17n, namelen: 4, type: 8 });
  });

  it('encodes every notification with the code in the error field', () => {
    const hdr = (m: Buffer) => K.unpack(K.fuse_out_header, m);
    const ii = notifyInvalInode(7, -1, 0);
    assert.deepEqual(hdr(ii), { len: 40, error: 2, unique: 0n });
    assert.deepEqual(K.unpack(K.fuse_notify_inval_inode_out, ii, 16), { ino: 7n, off: -1n, len: 0n });
    const ie = notifyInvalEntry(1, Buffer.from('name'), 1);
    assert.equal(hdr(ie).error, 3);
    assert.deepEqual(K.unpack(K.fuse_notify_inval_entry_out, ie, 16), { parent: 1n, namelen: 4, flags: 1 });
    assert.equal(ie.subarray(32).toString('latin1'), 'name\0');
    const d = notifyDelete(1, 8, Buffer.from('gone'));
    assert.equal(hdr(d).error, 6);
    assert.deepEqual(K.unpack(K.fuse_notify_delete_out, d, 16), { parent: 1n, child: 8n, namelen: 4, padding: 0 });
    const st = notifyStore(3, 4096, Buffer.from('abc'));
    assert.equal(hdr(st).error, 4);
    assert.deepEqual(K.unpack(K.fuse_notify_store_out, st, 16), { nodeid: 3n, offset: 4096n, size: 3, padding: 0 });
    const rt = notifyRetrieve(11, 3, 0, 100);
    assert.equal(hdr(rt).error, 5);
    assert.deepEqual(K.unpack(K.fuse_notify_retrieve_out, rt, 16), { notify_unique: 11n, nodeid: 3n, offset: 0n, size: 100, padding: 0 });
    const pw = notifyPollWakeup(0x1234n);
    assert.equal(hdr(pw).error, 1);
    assert.deepEqual(K.unpack(K.fuse_notify_poll_wakeup_out, pw, 16), { kh: 0x1234n });
    const pr = notifyPrune([5, 6]);
    assert.equal(hdr(pr).error, 9);
    assert.deepEqual(K.unpack(K.fuse_notify_prune_out, pr, 16), { count: 2, padding: 0, spare: 0n });
    assert.equal(pr.readBigUInt64LE(32), 5n);
    assert.equal(pr.readBigUInt64LE(40), 6n);
    assert.deepEqual(hdr(notifyIncEpoch()), { len: 16, error: 8, unique: 0n });
  });
});
