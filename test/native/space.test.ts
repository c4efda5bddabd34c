import assert from 'assert/strict';
import * as fs from 'fs';
import { C, native } from '../../src/native';
import { freshPath, onEachFilesystem, rejectsWithCode } from './fixtures';
import { constants as osConstants } from 'os';

const errnoOf = (name: string): number => (osConstants.errno as Record<string, number>)[name]!;

const CHUNK = 64 * 1024;

describe('native space, offsets and copies', function () {
  this.timeout(10000);

  onEachFilesystem((filesystem) => {
    const fds: number[] = [];

    function openNew(content: string | Buffer): number {
      const file = freshPath(filesystem.dir());
      fs.writeFileSync(file, content);
      const fd = fs.openSync(file, 'r+');
      fds.push(fd);
      return fd;
    }

    afterEach(function () {
      for (const fd of fds.splice(0)) fs.closeSync(fd);
    });

    it('preadv2Sync and pwritev2Sync read and write at an offset, and answer -errno instead of throwing', () => {
      const fd = openNew('0123456789');
      const buf = Buffer.alloc(8, 0x2e);
      assert.equal(native.preadv2Sync(fd, buf, 2, 4, 3, 0), 4);
      assert.equal(buf.toString(), '..3456..');
      assert.equal(native.preadv2Sync(fd, buf, 0, 8, 8, 0), 2, 'short at the end of the file');
      assert.equal(native.preadv2Sync(fd, buf, 0, 8, 10, 0), 0);
      assert.equal(native.pwritev2Sync(fd, Buffer.from('xyAB'), 2, 2, 4, 0), 2);
      assert.equal(fs.readFileSync(fd).toString(), '0123AB6789');
      const res = native.preadv2Sync(fd, buf, 0, 8, 0, C.RWF_NOWAIT!);
      assert.ok(res === 8 || res === -errnoOf('EAGAIN') || res === -errnoOf('EOPNOTSUPP'), `RWF_NOWAIT: ${res}`);
      assert.equal(native.preadv2Sync(-1, buf, 0, 1, 0, 0), -errnoOf('EBADF'));
      assert.throws(() => native.preadv2Sync(fd, buf, 4, 8, 0, 0), RangeError);
    });

    it('punches a hole that lseek SEEK_HOLE / SEEK_DATA find', async () => {
      const fd = openNew(Buffer.alloc(3 * CHUNK, 0x78));
      await native.fallocate(fd, C.FALLOC_FL_PUNCH_HOLE | C.FALLOC_FL_KEEP_SIZE, BigInt(CHUNK), BigInt(CHUNK));
      assert.equal(fs.fstatSync(fd).size, 3 * CHUNK);
      assert.equal(await native.lseek(fd, 0n, C.SEEK_HOLE), BigInt(CHUNK));
      assert.equal(await native.lseek(fd, BigInt(CHUNK), C.SEEK_DATA), BigInt(2 * CHUNK));
      assert.equal(await native.lseek(fd, BigInt(2 * CHUNK), C.SEEK_HOLE), BigInt(3 * CHUNK));
      const hole = Buffer.alloc(CHUNK, 1);
      fs.readSync(fd, hole, 0, CHUNK, CHUNK);
      assert.ok(hole.equals(Buffer.alloc(CHUNK)));
      await rejectsWithCode(native.lseek(fd, BigInt(3 * CHUNK), C.SEEK_DATA), 'ENXIO', 'lseek');
    });

    it('fallocate extends the size, or only reserves blocks with KEEP_SIZE', async () => {
      const fd = openNew('');
      await native.fallocate(fd, C.FALLOC_FL_KEEP_SIZE, 0n, BigInt(CHUNK));
      let st = fs.fstatSync(fd);
      assert.equal(st.size, 0);
      assert.ok(st.blocks * 512 >= CHUNK, `expected at least ${CHUNK} bytes reserved, got ${st.blocks * 512}`);
      await native.fallocate(fd, 0, 0n, BigInt(2 * CHUNK));
      st = fs.fstatSync(fd);
      assert.equal(st.size, 2 * CHUNK);
      await rejectsWithCode(native.fallocate(fd, 0, 0n, 0n), 'EINVAL', 'fallocate');
    });

    it('lseek returns bigint offsets past 4 GiB', async () => {
      const fd = openNew('');
      const far = 6n * 1024n * 1024n * 1024n;
      assert.equal(await native.lseek(fd, far, C.SEEK_SET), far);
      assert.equal(await native.lseek(fd, 5n, C.SEEK_CUR), far + 5n);
      await rejectsWithCode(native.lseek(fd, -1n, C.SEEK_SET), 'EINVAL');
    });

    it('copyFileRange copies between explicit offsets and leaves the file positions alone', async () => {
      const source = openNew('0123456789abcdef');
      const target = openNew('XXXXXXXXXXXXXXXX');
      assert.equal(await native.copyFileRange(source, 4n, target, 8n, 6, 0), 6);
      const copied = Buffer.alloc(16);
      fs.readSync(target, copied, 0, 16, 0);
      assert.equal(copied.toString(), 'XXXXXXXX456789XX');
      assert.equal(await native.lseek(source, 0n, C.SEEK_CUR), 0n);
      assert.equal(await native.lseek(target, 0n, C.SEEK_CUR), 0n);
      assert.equal(await native.copyFileRange(source, 16n, target, 0n, 10, 0), 0);
      await rejectsWithCode(native.copyFileRange(source, 0n, -1, 0n, 1, 0), 'EBADF', 'copy_file_range');
    });

    it('ficlone is refused on a filesystem without reflinks', async () => {
      const source = openNew('clone me');
      const target = openNew('');
      await rejectsWithCode(native.ficlone(target, source), ['EOPNOTSUPP', 'EXDEV', 'EINVAL'], 'ioctl');
      assert.equal(fs.fstatSync(target).size, 0);
    });
  });
});
