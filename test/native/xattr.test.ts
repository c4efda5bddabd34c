import assert from 'assert/strict';
import * as fs from 'fs';
import { C, native } from '../../src/native';
import { freshPath, onEachFilesystem, rejectsWithCode } from './fixtures';

function names(list: Buffer): string[] {
  return list.toString('latin1').split('\0').filter((n) => n !== '').sort();
}

describe('native xattrs', function () {
  this.timeout(10000);

  onEachFilesystem((filesystem) => {
    let file = '';
    let fd = -1;

    beforeEach(function () {
      file = freshPath(filesystem.dir());
      fs.writeFileSync(file, 'content');
      fd = fs.openSync(file, 'r+');
    });

    afterEach(function () {
      if (fd >= 0) fs.closeSync(fd);
      fd = -1;
    });

    it('sets, gets, lists and removes a user.* attribute by path', async () => {
      await native.setxattr(file, 'user.colour', Buffer.from('blue'), 0, false);
      assert.deepEqual(await native.getxattr(file, 'user.colour', false), Buffer.from('blue'));
      assert.ok(names(await native.listxattr(file, false)).includes('user.colour'));
      await native.removexattr(file, 'user.colour', false);
      await rejectsWithCode(native.getxattr(file, 'user.colour', false), 'ENODATA', 'lgetxattr');
      assert.ok(!names(await native.listxattr(file, false)).includes('user.colour'));
    });

    it('sets, gets, lists and removes a trusted.* attribute through an fd', async () => {
      await native.fsetxattr(fd, 'trusted.overlay.opaque', Buffer.from('y'), 0);
      assert.deepEqual(await native.fgetxattr(fd, 'trusted.overlay.opaque'), Buffer.from('y'));
      assert.ok(names(await native.flistxattr(fd)).includes('trusted.overlay.opaque'));
      assert.deepEqual(await native.getxattr(file, 'trusted.overlay.opaque', true), Buffer.from('y'));
      await native.fremovexattr(fd, 'trusted.overlay.opaque');
      await rejectsWithCode(native.fgetxattr(fd, 'trusted.overlay.opaque'), 'ENODATA', 'fgetxattr');
      await rejectsWithCode(native.fremovexattr(fd, 'trusted.overlay.opaque'), 'ENODATA', 'fremovexattr');
    });

    it('honours XATTR_CREATE (EEXIST) and XATTR_REPLACE (ENODATA)', async () => {
      await rejectsWithCode(native.setxattr(file, 'user.k', Buffer.from('1'), C.XATTR_REPLACE, false), 'ENODATA',
        'lsetxattr');
      await native.setxattr(file, 'user.k', Buffer.from('1'), C.XATTR_CREATE, false);
      await rejectsWithCode(native.setxattr(file, 'user.k', Buffer.from('2'), C.XATTR_CREATE, false), 'EEXIST');
      await rejectsWithCode(native.fsetxattr(fd, 'user.k', Buffer.from('2'), C.XATTR_CREATE), 'EEXIST', 'fsetxattr');
      await native.setxattr(file, 'user.k', Buffer.from('3'), C.XATTR_REPLACE, false);
      assert.deepEqual(await native.fgetxattr(fd, 'user.k'), Buffer.from('3'));
    });

    it('returns an empty Buffer for a zero-length value', async () => {
      await native.setxattr(file, 'user.empty', Buffer.alloc(0), 0, false);
      const value = await native.getxattr(file, 'user.empty', false);
      assert.ok(Buffer.isBuffer(value));
      assert.equal(value.length, 0);
      assert.equal((await native.fgetxattr(fd, 'user.empty')).length, 0);
    });

    it('reads a large value whole', async () => {
      // ext4 without ea_inode keeps a value within one block; tmpfs takes up to 64 KiB.
      const big = Buffer.alloc(filesystem.kind === 'tmpfs' ? 60000 : 2000);
      for (let i = 0; i < big.length; i++) big[i] = (i * 7) & 0xff;
      await native.fsetxattr(fd, 'user.big', big, 0);
      assert.deepEqual(await native.getxattr(file, 'user.big', true), big);
    });

    it('passes a Buffer name through as raw bytes', async () => {
      const rawName = Buffer.from([...Buffer.from('user.raw-'), 0xff, 0xfe]);
      await native.setxattr(Buffer.from(file), rawName, Buffer.from('v'), 0, false);
      assert.deepEqual(await native.getxattr(file, rawName, false), Buffer.from('v'));
      const list = await native.listxattr(Buffer.from(file), false);
      assert.ok(list.includes(Buffer.concat([rawName, Buffer.from([0])])));
    });

    it('stores the value as it was at the call, even if the Buffer changes before completion', async () => {
      const value = Buffer.from('original');
      const pending = native.setxattr(file, 'user.copy', value, 0, false);
      value.fill(0x21);
      await pending;
      assert.deepEqual(await native.getxattr(file, 'user.copy', false), Buffer.from('original'));
    });

    it('acts on the symlink or its target depending on follow', async () => {
      const link = freshPath(filesystem.dir(), 'link');
      fs.symlinkSync(file, link);
      await native.setxattr(link, 'user.via-link', Buffer.from('t'), 0, true);
      assert.deepEqual(await native.fgetxattr(fd, 'user.via-link'), Buffer.from('t'));
      await rejectsWithCode(native.getxattr(link, 'user.via-link', false), 'ENODATA', 'lgetxattr');
      await rejectsWithCode(native.setxattr(link, 'user.on-link', Buffer.from('t'), 0, false), 'EPERM');
      await native.setxattr(link, 'trusted.on-link', Buffer.from('l'), 0, false);
      assert.deepEqual(await native.getxattr(link, 'trusted.on-link', false), Buffer.from('l'));
      assert.ok(names(await native.listxattr(link, false)).includes('trusted.on-link'));
      assert.ok(!names(await native.listxattr(link, true)).includes('trusted.on-link'));
      await native.removexattr(link, 'trusted.on-link', false);
      await native.removexattr(link, 'user.via-link', true);
      await rejectsWithCode(native.fgetxattr(fd, 'user.via-link'), 'ENODATA');
    });

    it('rejects a missing path with ENOENT and the syscall that failed', async () => {
      const missing = freshPath(filesystem.dir(), 'missing');
      await rejectsWithCode(native.getxattr(missing, 'user.x', true), 'ENOENT', 'getxattr');
      await rejectsWithCode(native.listxattr(missing, false), 'ENOENT', 'llistxattr');
      await rejectsWithCode(native.removexattr(missing, 'user.x', true), 'ENOENT', 'removexattr');
    });
  });
});
