import assert from 'assert/strict';
import * as fs from 'fs';
import * as path from 'path';
import { AT_FDCWD, C, native, STATX_FIELDS, StatxField as F, unpackDirents } from '../../src/native';
import { devMajor, devMinor, fdFlags, freshPath, mountTmpfs, onEachFilesystem, rejectsWithCode } from './fixtures';

/** The exact inode number of a statx array. */
function inoOf(s: Float64Array): bigint {
  return BigInt(s[F.inoHi]!) * 2n ** 32n + BigInt(s[F.inoLo]!);
}

describe('native file calls', function () {
  this.timeout(10000);

  describe('statx and fstatx', function () {
    let dir = '';
    let release = (): void => {};
    before(function () {
      ({ dir, release } = mountTmpfs());
    });
    after(function () {
      release();
    });

    it('report the same attributes as fs.statSync', async () => {
      const file = freshPath(dir);
      fs.writeFileSync(file, Buffer.alloc(10000, 1));
      const s = await native.statx(AT_FDCWD, file, 0, C.STATX_BASIC_STATS | C.STATX_BTIME);
      const n = fs.statSync(file, { bigint: true });
      assert.equal(s[F.mask]! & C.STATX_BASIC_STATS, C.STATX_BASIC_STATS);
      assert.equal(inoOf(s), n.ino);
      assert.equal(s[F.size], Number(n.size));
      assert.equal(s[F.blocks], Number(n.blocks));
      assert.equal(s[F.mode], Number(n.mode));
      assert.equal(s[F.nlink], Number(n.nlink));
      assert.equal(s[F.uid], Number(n.uid));
      assert.equal(s[F.gid], Number(n.gid));
      assert.equal(s[F.blksize], Number(n.blksize));
      assert.equal(BigInt(s[F.mtimeSec]!) * 1_000_000_000n + BigInt(s[F.mtimeNsec]!), n.mtimeNs);
      assert.equal(BigInt(s[F.ctimeSec]!) * 1_000_000_000n + BigInt(s[F.ctimeNsec]!), n.ctimeNs);
      assert.equal(BigInt(s[F.atimeSec]!) * 1_000_000_000n + BigInt(s[F.atimeNsec]!), n.atimeNs);
      assert.equal(s[F.devMajor], devMajor(n.dev));
      assert.equal(s[F.devMinor], devMinor(n.dev));
      assert.ok(Number.isInteger(s[F.attributes]));
    });

    it('splits rdev of a device node into major and minor', async () => {
      const s = await native.statx(AT_FDCWD, '/dev/null', 0, C.STATX_BASIC_STATS);
      assert.equal(s[F.mode]! & C.S_IFMT, C.S_IFCHR);
      assert.deepEqual([s[F.rdevMajor], s[F.rdevMinor]], [1, 3]);
    });

    it('does not follow a symlink with AT_SYMLINK_NOFOLLOW, and fstatx reads an fd', async () => {
      const file = freshPath(dir);
      const link = freshPath(dir, 'link');
      fs.writeFileSync(file, 'abc');
      fs.symlinkSync(file, link);
      const linkStat = await native.statx(AT_FDCWD, link, C.AT_SYMLINK_NOFOLLOW, C.STATX_BASIC_STATS);
      assert.equal(linkStat[F.mode]! & C.S_IFMT, C.S_IFLNK);
      assert.equal(linkStat[F.size], file.length);
      const fd = fs.openSync(link, 'r');
      try {
        const s = await native.fstatx(fd, C.STATX_BASIC_STATS);
        assert.equal(s[F.mode]! & C.S_IFMT, C.S_IFREG);
        assert.equal(s[F.size], 3);
        assert.equal(inoOf(s), fs.statSync(file, { bigint: true }).ino);
      } finally {
        fs.closeSync(fd);
      }
    });

    it('rejects a missing path with ENOENT from statx', async () => {
      await rejectsWithCode(native.statx(AT_FDCWD, path.join(dir, 'nope'), 0, C.STATX_BASIC_STATS), 'ENOENT', 'statx');
      await rejectsWithCode(native.fstatx(-1, C.STATX_BASIC_STATS), 'EBADF', 'statx');
    });
  });

  onEachFilesystem((filesystem) => {
    it('openat opens relative to a directory fd with the given flags', async () => {
      const dirFd = await native.openat(AT_FDCWD, filesystem.dir(), C.O_PATH | C.O_DIRECTORY | C.O_CLOEXEC, 0);
      let fd = -1;
      try {
        const name = path.basename(freshPath(filesystem.dir()));
        fd = await native.openat(dirFd, name, C.O_RDWR | C.O_CREAT | C.O_EXCL | C.O_CLOEXEC, 0o640);
        fs.writeSync(fd, 'written');
        assert.equal(fs.readFileSync(path.join(filesystem.dir(), name), 'utf8'), 'written');
        assert.equal(fs.statSync(path.join(filesystem.dir(), name)).mode & 0o777, 0o640);
        assert.equal(fdFlags(fd) & C.O_CLOEXEC, C.O_CLOEXEC);
        await rejectsWithCode(native.openat(dirFd, name, C.O_RDWR | C.O_CREAT | C.O_EXCL, 0o600), 'EEXIST', 'openat');
      } finally {
        if (fd >= 0) fs.closeSync(fd);
        fs.closeSync(dirFd);
      }
    });

    it('mknodat makes a 0/0 character device (an overlay whiteout)', async () => {
      const dirFd = await native.openat(AT_FDCWD, filesystem.dir(), C.O_PATH | C.O_DIRECTORY | C.O_CLOEXEC, 0);
      try {
        const name = path.basename(freshPath(filesystem.dir(), 'wh'));
        await native.mknodat(dirFd, name, C.S_IFCHR | 0o000, 0, 0);
        const s = await native.statx(dirFd, name, C.AT_SYMLINK_NOFOLLOW, C.STATX_BASIC_STATS);
        assert.equal(s[F.mode]! & C.S_IFMT, C.S_IFCHR);
        assert.deepEqual([s[F.rdevMajor], s[F.rdevMinor]], [0, 0]);
        assert.ok(fs.lstatSync(path.join(filesystem.dir(), name)).isCharacterDevice());
        await rejectsWithCode(native.mknodat(dirFd, name, C.S_IFCHR, 0, 0), 'EEXIST', 'mknodat');
      } finally {
        fs.closeSync(dirFd);
      }
    });

    it('mknodat passes major and minor through', async () => {
      const node = freshPath(filesystem.dir(), 'dev');
      await native.mknodat(AT_FDCWD, node, C.S_IFCHR | 0o600, 1, 3);
      const s = fs.statSync(node, { bigint: true });
      assert.deepEqual([devMajor(s.rdev), devMinor(s.rdev)], [1, 3]);
    });

    it('renameat2 NOREPLACE refuses an existing target with EEXIST and renames otherwise', async () => {
      const a = freshPath(filesystem.dir());
      const b = freshPath(filesystem.dir());
      const c = freshPath(filesystem.dir());
      fs.writeFileSync(a, 'A');
      fs.writeFileSync(b, 'B');
      await rejectsWithCode(native.renameat2(AT_FDCWD, a, AT_FDCWD, b, C.RENAME_NOREPLACE), 'EEXIST', 'renameat2');
      assert.equal(fs.readFileSync(b, 'utf8'), 'B');
      await native.renameat2(AT_FDCWD, a, AT_FDCWD, c, C.RENAME_NOREPLACE);
      assert.equal(fs.readFileSync(c, 'utf8'), 'A');
      assert.ok(!fs.existsSync(a));
    });

    it('renameat2 EXCHANGE swaps two names atomically', async () => {
      const a = freshPath(filesystem.dir());
      const b = freshPath(filesystem.dir());
      fs.writeFileSync(a, 'A');
      fs.mkdirSync(b);
      await native.renameat2(AT_FDCWD, a, AT_FDCWD, b, C.RENAME_EXCHANGE);
      assert.ok(fs.statSync(a).isDirectory());
      assert.equal(fs.readFileSync(b, 'utf8'), 'A');
      const missing = freshPath(filesystem.dir());
      await rejectsWithCode(native.renameat2(AT_FDCWD, a, AT_FDCWD, missing, C.RENAME_EXCHANGE), 'ENOENT');
    });

    it('renameat2 WHITEOUT leaves a 0/0 character device at the old name', async () => {
      const dirFd = await native.openat(AT_FDCWD, filesystem.dir(), C.O_PATH | C.O_DIRECTORY | C.O_CLOEXEC, 0);
      try {
        const oldName = path.basename(freshPath(filesystem.dir()));
        const newName = path.basename(freshPath(filesystem.dir()));
        fs.writeFileSync(path.join(filesystem.dir(), oldName), 'moved');
        await native.renameat2(dirFd, oldName, dirFd, Buffer.from(newName), C.RENAME_WHITEOUT);
        assert.equal(fs.readFileSync(path.join(filesystem.dir(), newName), 'utf8'), 'moved');
        const s = await native.statx(dirFd, oldName, C.AT_SYMLINK_NOFOLLOW, C.STATX_BASIC_STATS);
        assert.equal(s[F.mode]! & C.S_IFMT, C.S_IFCHR);
        assert.deepEqual([s[F.rdevMajor], s[F.rdevMinor]], [0, 0]);
      } finally {
        fs.closeSync(dirFd);
      }
    });

    it('utimensat sets nanosecond times and leaves UTIME_OMIT fields alone', async () => {
      const file = freshPath(filesystem.dir());
      fs.writeFileSync(file, '');
      await native.utimensat(AT_FDCWD, file, 1234567890, 123456789, 1600000000, 987654321, 0);
      let s = await native.statx(AT_FDCWD, file, 0, C.STATX_BASIC_STATS);
      assert.deepEqual([s[F.atimeSec], s[F.atimeNsec], s[F.mtimeSec], s[F.mtimeNsec]], [1234567890, 123456789, 1600000000, 987654321]);

      await native.utimensat(AT_FDCWD, file, 0, C.UTIME_OMIT, 1700000000, 1, 0);
      s = await native.statx(AT_FDCWD, file, 0, C.STATX_BASIC_STATS);
      assert.deepEqual([s[F.atimeSec], s[F.atimeNsec], s[F.mtimeSec], s[F.mtimeNsec]], [1234567890, 123456789, 1700000000, 1]);

      const before = Math.floor(Date.now() / 1000) - 1;
      await native.utimensat(AT_FDCWD, file, 0, C.UTIME_NOW, 0, C.UTIME_OMIT, 0);
      s = await native.statx(AT_FDCWD, file, 0, C.STATX_BASIC_STATS);
      assert.ok(s[F.atimeSec]! >= before, `atime ${s[F.atimeSec]!} should be now`);
      assert.deepEqual([s[F.mtimeSec], s[F.mtimeNsec]], [1700000000, 1]);
    });

    it('utimensat with AT_SYMLINK_NOFOLLOW changes the link, not its target', async () => {
      const file = freshPath(filesystem.dir());
      const link = freshPath(filesystem.dir(), 'link');
      fs.writeFileSync(file, '');
      fs.symlinkSync(file, link);
      const targetBefore = fs.statSync(file, { bigint: true }).mtimeNs;
      await native.utimensat(AT_FDCWD, link, 1000, 5, 2000, 6, C.AT_SYMLINK_NOFOLLOW);
      assert.equal(fs.lstatSync(link, { bigint: true }).mtimeNs, 2000_000_000_006n);
      assert.equal(fs.statSync(file, { bigint: true }).mtimeNs, targetBefore);
    });

    it('futimens sets the times of an open file', async () => {
      const file = freshPath(filesystem.dir());
      fs.writeFileSync(file, '');
      const fd = fs.openSync(file, 'r+');
      try {
        await native.futimens(fd, 10, 20, 30, 40);
        const s = fs.statSync(file, { bigint: true });
        assert.equal(s.atimeNs, 10_000_000_020n);
        assert.equal(s.mtimeNs, 30_000_000_040n);
      } finally {
        fs.closeSync(fd);
      }
    });

    it('fchownat changes owner and group; -1 leaves one unchanged', async () => {
      const file = freshPath(filesystem.dir());
      fs.writeFileSync(file, '');
      await native.fchownat(AT_FDCWD, file, 100000, 200000, 0);
      assert.deepEqual([fs.statSync(file).uid, fs.statSync(file).gid], [100000, 200000]);
      await native.fchownat(AT_FDCWD, file, -1, 300000, 0);
      assert.deepEqual([fs.statSync(file).uid, fs.statSync(file).gid], [100000, 300000]);
      const link = freshPath(filesystem.dir(), 'link');
      fs.symlinkSync(file, link);
      await native.fchownat(AT_FDCWD, link, 7, 8, C.AT_SYMLINK_NOFOLLOW);
      assert.deepEqual([fs.lstatSync(link).uid, fs.lstatSync(link).gid], [7, 8]);
      assert.equal(fs.statSync(file).uid, 100000);
    });

    it('fchmodat changes the permission bits', async () => {
      const file = freshPath(filesystem.dir());
      fs.writeFileSync(file, '');
      await native.fchmodat(AT_FDCWD, file, 0o4751, 0);
      assert.equal(fs.statSync(file).mode & 0o7777, 0o4751);
    });

    it('ftruncate takes bigint lengths', async () => {
      const file = freshPath(filesystem.dir());
      fs.writeFileSync(file, 'abcdef');
      const fd = fs.openSync(file, 'r+');
      try {
        await native.ftruncate(fd, 5n * 1024n * 1024n * 1024n);
        assert.equal(fs.statSync(file, { bigint: true }).size, 5n * 1024n * 1024n * 1024n);
      } finally {
        fs.closeSync(fd);
      }
    });

    it('copies a path argument before returning, so a later change to the Buffer does not matter', async () => {
      const file = freshPath(filesystem.dir());
      fs.writeFileSync(file, 'x');
      const pathBuffer = Buffer.from(file);
      const pending = native.statx(AT_FDCWD, pathBuffer, 0, C.STATX_BASIC_STATS);
      pathBuffer.fill(0x2f);
      assert.equal((await pending)[F.size], 1);
    });
  });
});

describe('native synchronous metadata calls', function () {
  this.timeout(10000);

  it('statxSync fills the same fields as statx, and returns -errno without throwing', async () => {
    const n = native;
    const K = C;
    const fsMod = fs;
    const dir = fsMod.mkdtempSync('/tmp/ovshift-statxsync-');
    try {
      const file = `${dir}/f`;
      fsMod.writeFileSync(file, 'twelve bytes');
      const out = new Float64Array(STATX_FIELDS);
      assert.equal(n.statxSync(-100, file, K.AT_SYMLINK_NOFOLLOW!, K.STATX_BASIC_STATS!, out), 0);
      const ref = await n.statx(-100, file, K.AT_SYMLINK_NOFOLLOW!, K.STATX_BASIC_STATS!);
      assert.equal(out[F.size], 12);
      assert.equal(out[F.mode], ref[F.mode]);
      assert.equal(inoOf(out), inoOf(ref));
      assert.equal(out[F.mtimeSec], ref[F.mtimeSec]);
      assert.equal(out[F.mtimeNsec], ref[F.mtimeNsec]);
      assert.equal(n.statxSync(-100, `${dir}/missing`, 0, K.STATX_BASIC_STATS!, out), -2);
      const fd = fsMod.openSync(file, 'r');
      assert.equal(n.fstatxSync(fd, out), 0);
      fsMod.closeSync(fd);
      assert.equal(out[F.size], 12);
      fsMod.writeFileSync(`${dir}/g`, '');
      await n.setxattrat(-100, `${dir}/g`, 'user.k', Buffer.alloc(1000, 7), 0, false);
      const v = n.getxattratSync(-100, `${dir}/g`, 'user.k', false);
      assert.ok(Buffer.isBuffer(v) && v.length === 1000 && v.every((b) => b === 7), 'large values come back whole');
      assert.equal(n.getxattratSync(-100, `${dir}/g`, 'user.none', false), -61);
    } finally {
      fsMod.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('native directory listing', function () {
  this.timeout(10000);

  it('readdirat and readdiratSync list names, types and inode numbers, raw bytes included', async () => {
    const dir = fs.mkdtempSync('/tmp/ovshift-readdir-');
    try {
      fs.writeFileSync(`${dir}/file`, 'x');
      fs.mkdirSync(`${dir}/sub`);
      fs.symlinkSync('file', `${dir}/ln`);
      const raw = Buffer.from([0x72, 0xff, 0x61]);
      fs.writeFileSync(Buffer.concat([Buffer.from(`${dir}/`), raw]), '');
      const expect = (list: Array<{ name: Buffer; type: number; ino: number }>) => {
        const byName = new Map(list.map((e) => [e.name.toString('latin1'), e]));
        assert.equal(list.length, 4, 'no . or ..');
        assert.equal(byName.get('file')!.type, 8);
        assert.equal(byName.get('sub')!.type, 4);
        assert.equal(byName.get('ln')!.type, 10);
        assert.equal(byName.get('file')!.ino, fs.statSync(`${dir}/file`).ino);
        assert.ok(byName.has(raw.toString('latin1')));
      };
      expect(unpackDirents(await native.readdirat(AT_FDCWD, dir)));
      const sync = native.readdiratSync(AT_FDCWD, dir);
      assert.ok(Buffer.isBuffer(sync));
      expect(unpackDirents(sync));
      assert.equal(native.readdiratSync(AT_FDCWD, `${dir}/file`), -20, 'ENOTDIR as a number');
      await rejectsWithCode(native.readdirat(AT_FDCWD, `${dir}/none`), 'ENOENT');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('native calling-thread twins', function () {
  this.timeout(10000);

  it('return 0 or the value, and -errno instead of throwing', () => {
    const dir = fs.mkdtempSync('/tmp/ovshift-twins-');
    try {
      assert.equal(native.mknodatSync(AT_FDCWD, `${dir}/wh`, C.S_IFCHR! | 0o600, 0, 0), 0);
      assert.ok(fs.lstatSync(`${dir}/wh`).isCharacterDevice());
      assert.equal(native.mknodatSync(AT_FDCWD, `${dir}/wh`, C.S_IFCHR! | 0o600, 0, 0), -17, 'EEXIST');
      fs.writeFileSync(`${dir}/a`, 'a');
      fs.writeFileSync(`${dir}/b`, 'b');
      assert.equal(native.renameat2Sync(AT_FDCWD, `${dir}/a`, AT_FDCWD, `${dir}/b`, C.RENAME_NOREPLACE!), -17);
      assert.equal(native.renameat2Sync(AT_FDCWD, `${dir}/a`, AT_FDCWD, `${dir}/b`, C.RENAME_EXCHANGE!), 0);
      assert.equal(fs.readFileSync(`${dir}/a`, 'utf8'), 'b');
      assert.equal(native.utimensatSync(AT_FDCWD, `${dir}/a`, 5, 6, 7, 8, 0), 0);
      const st = fs.statSync(`${dir}/a`, { bigint: true });
      assert.equal(st.mtimeNs, 7_000_000_008n);
      assert.equal(native.fchownatSync(AT_FDCWD, `${dir}/a`, 1234, 5678, 0), 0);
      assert.equal(fs.statSync(`${dir}/a`).uid, 1234);
      assert.equal(native.fchmodatSync(AT_FDCWD, `${dir}/a`, 0o640, 0), 0);
      assert.equal(fs.statSync(`${dir}/a`).mode & 0o777, 0o640);
      assert.equal(native.setxattratSync(AT_FDCWD, `${dir}/a`, 'user.x', Buffer.from('1'), 0, false), 0);
      const list = native.listxattratSync(AT_FDCWD, `${dir}/a`, false);
      assert.ok(Buffer.isBuffer(list) && list.toString().includes('user.x'));
      assert.equal(native.removexattratSync(AT_FDCWD, `${dir}/a`, 'user.x', false), 0);
      assert.equal(native.removexattratSync(AT_FDCWD, `${dir}/a`, 'user.x', false), -61, 'ENODATA');
      assert.equal(native.fchownatSync(AT_FDCWD, `${dir}/none`, 0, 0, 0), -2);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('native calls relative to a directory fd', function () {
  this.timeout(10000);

  it('reach objects through a root descriptor, for paths longer than PATH_MAX from /', async () => {
    const base = fs.mkdtempSync('/tmp/ovshift-at-');
    const rootFd = fs.openSync(base, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
    try {
      // Nested so that base + relative exceeds PATH_MAX while the relative path alone fits.
      const parts: string[] = [];
      for (let i = 0; i < 16; i++) parts.push(String(i).padStart(3, '0') + 'd'.repeat(251));
      const rel = parts.join('/');
      let at = '';
      for (const p of parts) {
        at = at ? `${at}/${p}` : p;
        assert.equal(native.mkdiratSync(rootFd, at, 0o755), 0);
      }
      assert.ok(base.length + 1 + rel.length > 4096 && rel.length < 4096);
      const f = `${rel}/f`;
      const fd = native.openatSync(rootFd, f, fs.constants.O_CREAT | fs.constants.O_WRONLY, 0o644);
      assert.ok(fd >= 0);
      fs.writeSync(fd, 'deep');
      fs.closeSync(fd);
      assert.equal(native.setxattratSync(rootFd, f, 'user.k', Buffer.from('v'), 0, false), 0);
      const v = native.getxattratSync(rootFd, f, 'user.k', false);
      assert.ok(Buffer.isBuffer(v) && v.toString() === 'v');
      assert.equal((await native.getxattrat(rootFd, f, 'user.k', false)).toString(), 'v');
      const list = native.listxattratSync(rootFd, f, false);
      assert.ok(Buffer.isBuffer(list) && list.toString().includes('user.k'));
      assert.equal(native.removexattratSync(rootFd, f, 'user.k', false), 0);
      assert.equal(native.getxattratSync(rootFd, f, 'user.k', false), -61);
      assert.equal(native.symlinkatSync('f', rootFd, `${rel}/ln`), 0);
      const target = native.readlinkatSync(rootFd, `${rel}/ln`);
      assert.ok(Buffer.isBuffer(target) && target.toString() === 'f');
      assert.equal((await native.readlinkat(rootFd, `${rel}/ln`)).toString(), 'f');
      assert.equal(native.linkatSync(rootFd, f, rootFd, `${rel}/hard`, 0), 0);
      const listing = native.readdiratSync(rootFd, rel);
      assert.ok(Buffer.isBuffer(listing));
      assert.deepEqual(
        unpackDirents(listing)
          .map((e) => e.name.toString())
          .sort(),
        ['f', 'hard', 'ln'],
      );
      for (const n of ['ln', 'hard', 'f']) assert.equal(native.unlinkatSync(rootFd, `${rel}/${n}`, 0), 0);
      assert.equal(native.unlinkatSync(rootFd, rel, C.AT_REMOVEDIR!), 0);
      assert.equal(native.unlinkatSync(rootFd, `${rel}/nothing`, 0), -2);
    } finally {
      fs.closeSync(rootFd);
      fs.rmSync(base, { recursive: true, force: true });
    }
  });
});
