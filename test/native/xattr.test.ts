import assert from 'assert/strict';
import * as fs from 'fs';
import * as path from 'path';
import { AT_FDCWD, C, native } from '../../src/native';
import { freshPath, onEachFilesystem, rejectsWithCode } from './fixtures';

function names(list: Buffer): string[] {
  return list
    .toString('latin1')
    .split('\0')
    .filter((n) => n !== '')
    .sort();
}

// The *xattrat calls, by plain path (AT_FDCWD) and relative to a directory descriptor (`dirFd`,
// `name`): Linux 6.13's syscalls, or /proc/self/fd/<dirfd>/<path> on older kernels.
describe('native xattrs', function () {
  this.timeout(10000);

  onEachFilesystem((filesystem) => {
    let file = '';
    let name = '';
    let dirFd = -1;

    beforeEach(function () {
      file = freshPath(filesystem.dir());
      name = path.basename(file);
      fs.writeFileSync(file, 'content');
      dirFd = fs.openSync(filesystem.dir(), fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
    });

    afterEach(function () {
      if (dirFd >= 0) fs.closeSync(dirFd);
      dirFd = -1;
    });

    it('sets, gets, lists and removes a user.* attribute by path', async () => {
      await native.setxattrat(AT_FDCWD, file, 'user.colour', Buffer.from('blue'), 0, false);
      assert.deepEqual(await native.getxattrat(AT_FDCWD, file, 'user.colour', false), Buffer.from('blue'));
      assert.ok(names(await native.listxattrat(AT_FDCWD, file, false)).includes('user.colour'));
      await native.removexattrat(AT_FDCWD, file, 'user.colour', false);
      await rejectsWithCode(native.getxattrat(AT_FDCWD, file, 'user.colour', false), 'ENODATA', 'getxattrat');
      assert.ok(!names(await native.listxattrat(AT_FDCWD, file, false)).includes('user.colour'));
    });

    it('sets, gets, lists and removes a trusted.* attribute relative to a directory fd', async () => {
      await native.setxattrat(dirFd, name, 'trusted.overlay.opaque', Buffer.from('y'), 0, false);
      assert.deepEqual(await native.getxattrat(dirFd, name, 'trusted.overlay.opaque', false), Buffer.from('y'));
      assert.ok(names(await native.listxattrat(dirFd, name, false)).includes('trusted.overlay.opaque'));
      assert.deepEqual(await native.getxattrat(AT_FDCWD, file, 'trusted.overlay.opaque', true), Buffer.from('y'));
      await native.removexattrat(dirFd, name, 'trusted.overlay.opaque', false);
      await rejectsWithCode(native.getxattrat(dirFd, name, 'trusted.overlay.opaque', false), 'ENODATA', 'getxattrat');
      await rejectsWithCode(native.removexattrat(dirFd, name, 'trusted.overlay.opaque', false), 'ENODATA', 'removexattrat');
    });

    it('honours XATTR_CREATE (EEXIST) and XATTR_REPLACE (ENODATA)', async () => {
      await rejectsWithCode(native.setxattrat(AT_FDCWD, file, 'user.k', Buffer.from('1'), C.XATTR_REPLACE, false), 'ENODATA', 'setxattrat');
      await native.setxattrat(AT_FDCWD, file, 'user.k', Buffer.from('1'), C.XATTR_CREATE, false);
      await rejectsWithCode(native.setxattrat(AT_FDCWD, file, 'user.k', Buffer.from('2'), C.XATTR_CREATE, false), 'EEXIST');
      await rejectsWithCode(native.setxattrat(dirFd, name, 'user.k', Buffer.from('2'), C.XATTR_CREATE, false), 'EEXIST', 'setxattrat');
      await native.setxattrat(AT_FDCWD, file, 'user.k', Buffer.from('3'), C.XATTR_REPLACE, false);
      assert.deepEqual(await native.getxattrat(dirFd, name, 'user.k', false), Buffer.from('3'));
    });

    it('returns an empty Buffer for a zero-length value', async () => {
      await native.setxattrat(AT_FDCWD, file, 'user.empty', Buffer.alloc(0), 0, false);
      const value = await native.getxattrat(AT_FDCWD, file, 'user.empty', false);
      assert.ok(Buffer.isBuffer(value));
      assert.equal(value.length, 0);
      assert.equal((await native.getxattrat(dirFd, name, 'user.empty', false)).length, 0);
    });

    it('reads a large value whole', async () => {
      // ext4 without ea_inode keeps a value within one block; tmpfs takes up to 64 KiB.
      const big = Buffer.alloc(filesystem.kind === 'tmpfs' ? 60000 : 2000);
      for (let i = 0; i < big.length; i++) big[i] = (i * 7) & 0xff;
      await native.setxattrat(dirFd, name, 'user.big', big, 0, false);
      assert.deepEqual(await native.getxattrat(AT_FDCWD, file, 'user.big', true), big);
    });

    it('passes a Buffer name through as raw bytes', async () => {
      const rawName = Buffer.from([...Buffer.from('user.raw-'), 0xff, 0xfe]);
      await native.setxattrat(AT_FDCWD, Buffer.from(file), rawName, Buffer.from('v'), 0, false);
      assert.deepEqual(await native.getxattrat(AT_FDCWD, file, rawName, false), Buffer.from('v'));
      const list = await native.listxattrat(AT_FDCWD, Buffer.from(file), false);
      assert.ok(list.includes(Buffer.concat([rawName, Buffer.from([0])])));
    });

    it('stores the value as it was at the call, even if the Buffer changes before completion', async () => {
      const value = Buffer.from('original');
      const pending = native.setxattrat(AT_FDCWD, file, 'user.copy', value, 0, false);
      value.fill(0x21);
      await pending;
      assert.deepEqual(await native.getxattrat(AT_FDCWD, file, 'user.copy', false), Buffer.from('original'));
    });

    it('acts on the symlink or its target depending on follow', async () => {
      const link = freshPath(filesystem.dir(), 'link');
      fs.symlinkSync(file, link);
      await native.setxattrat(AT_FDCWD, link, 'user.via-link', Buffer.from('t'), 0, true);
      assert.deepEqual(await native.getxattrat(dirFd, name, 'user.via-link', false), Buffer.from('t'));
      await rejectsWithCode(native.getxattrat(AT_FDCWD, link, 'user.via-link', false), 'ENODATA', 'getxattrat');
      await rejectsWithCode(native.setxattrat(AT_FDCWD, link, 'user.on-link', Buffer.from('t'), 0, false), 'EPERM');
      await native.setxattrat(AT_FDCWD, link, 'trusted.on-link', Buffer.from('l'), 0, false);
      assert.deepEqual(await native.getxattrat(AT_FDCWD, link, 'trusted.on-link', false), Buffer.from('l'));
      assert.ok(names(await native.listxattrat(AT_FDCWD, link, false)).includes('trusted.on-link'));
      assert.ok(!names(await native.listxattrat(AT_FDCWD, link, true)).includes('trusted.on-link'));
      await native.removexattrat(AT_FDCWD, link, 'trusted.on-link', false);
      await native.removexattrat(AT_FDCWD, link, 'user.via-link', true);
      await rejectsWithCode(native.getxattrat(dirFd, name, 'user.via-link', false), 'ENODATA');
    });

    it('rejects a missing path with ENOENT and the syscall that failed', async () => {
      const missing = freshPath(filesystem.dir(), 'missing');
      await rejectsWithCode(native.getxattrat(AT_FDCWD, missing, 'user.x', true), 'ENOENT', 'getxattrat');
      await rejectsWithCode(native.listxattrat(AT_FDCWD, missing, false), 'ENOENT', 'listxattrat');
      await rejectsWithCode(native.removexattrat(AT_FDCWD, missing, 'user.x', true), 'ENOENT', 'removexattrat');
    });
  });
});
