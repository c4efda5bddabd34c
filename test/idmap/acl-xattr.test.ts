import assert from 'assert/strict';
import { execFileSync } from 'child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { aclToLayer, aclToView } from '../../src/idmap/acl-xattr';
import { IdMap } from '../../src/idmap/id-map';
import { parseIdRanges } from '../../src/idmap/ranges';

const OVERFLOW = 65534;
const uids = new IdMap(parseIdRanges('uidmapping', '0:100000:65536'), { overflowId: OVERFLOW });
const gids = new IdMap(parseIdRanges('gidmapping', '0:200000:65536'), { overflowId: OVERFLOW });
const identity = new IdMap([], { overflowId: OVERFLOW });

/** Concatenates hex byte strings; entries are written out as {tag u16, perm u16, id u32} LE. */
function bytes(...hex: string[]): Buffer {
  return Buffer.from(hex.join(''), 'hex');
}

const HEADER = '02000000';
const USER_OBJ_RW = '01000600ffffffff';
const GROUP_OBJ_R = '04000400ffffffff';
const MASK_RWX = '10000700ffffffff';
const OTHER_R = '20000400ffffffff';

describe('POSIX ACL xattrs', function () {
  this.timeout(5000);

  // user 1000 = 0x3e8, group 2000 = 0x7d0 on the layer; 101000 = 0x18a88, 202000 = 0x31510 in the view.
  const layerAcl = bytes(HEADER, USER_OBJ_RW, '02000700e8030000', GROUP_OBJ_R, '08000400d0070000', MASK_RWX, OTHER_R);
  const viewAcl = bytes(HEADER, USER_OBJ_RW, '02000700888a0100', GROUP_OBJ_R, '0800040010150300', MASK_RWX, OTHER_R);

  it('maps named user and group ids layer→view and leaves the other entries alone', () => {
    assert.deepEqual(aclToView(layerAcl, uids, gids), viewAcl);
  });

  it('maps them back view→layer to the original bytes', () => {
    assert.deepEqual(aclToLayer(viewAcl, uids, gids), layerAcl);
  });

  it('does not modify the value it was given', () => {
    const copy = Buffer.from(layerAcl);
    aclToView(layerAcl, uids, gids);
    assert.deepEqual(layerAcl, copy);
  });

  it('maps user ids with the uid map and group ids with the gid map', () => {
    // The same id 5 under both tags: user → 100005 (0x186a5), group → 200005 (0x30d45).
    const layer = bytes(HEADER, '0200070005000000', '0800070005000000');
    assert.deepEqual(aclToView(layer, uids, gids), bytes(HEADER, '02000700a5860100', '08000700450d0300'));
  });

  it('shows unmapped layer ids as the overflow id', () => {
    // user 70000 = 0x11170 is outside 0:100000:65536; 65534 = 0xfffe.
    const layer = bytes(HEADER, USER_OBJ_RW, '0200070070110100', GROUP_OBJ_R, MASK_RWX, OTHER_R);
    const view = bytes(HEADER, USER_OBJ_RW, '02000700feff0000', GROUP_OBJ_R, MASK_RWX, OTHER_R);
    assert.deepEqual(aclToView(layer, uids, gids), view);
  });

  it('refuses to write an unmapped view id with EOVERFLOW', () => {
    // group 5 is below the view range 200000..265535.
    const view = bytes(HEADER, USER_OBJ_RW, GROUP_OBJ_R, '0800040005000000', MASK_RWX, OTHER_R);
    assert.throws(() => aclToLayer(view, uids, gids), { code: 'EOVERFLOW' });
  });

  it('ignores squash options: ACL ids are data, not the owner', () => {
    const squashed = new IdMap(parseIdRanges('uidmapping', '0:100000:65536'), { overflowId: OVERFLOW, squashTo: 0 });
    assert.deepEqual(aclToView(layerAcl, squashed, gids), viewAcl);
  });

  describe('returns the very same Buffer when nothing changes', () => {
    it('with identity maps', () => {
      assert.equal(aclToView(layerAcl, identity, identity), layerAcl);
      assert.equal(aclToLayer(layerAcl, identity, identity), layerAcl);
    });

    it('for an ACL with no named entries', () => {
      const minimal = bytes(HEADER, USER_OBJ_RW, GROUP_OBJ_R, OTHER_R);
      assert.equal(aclToView(minimal, uids, gids), minimal);
      assert.equal(aclToLayer(minimal, uids, gids), minimal);
    });

    it('for an empty ACL (header only)', () => {
      const empty = bytes(HEADER);
      assert.equal(aclToView(empty, uids, gids), empty);
    });

    it('when the ranges map the ids onto themselves', () => {
      const same = new IdMap(parseIdRanges('uidmapping', '0:0:65536'), { overflowId: OVERFLOW });
      assert.equal(aclToView(layerAcl, same, same), layerAcl);
    });
  });

  describe('refuses malformed values with EINVAL, identity maps or not', () => {
    const malformed: Array<[string, Buffer]> = [
      ['empty', bytes()],
      ['a short header', bytes('020000')],
      ['a partial entry', bytes(HEADER, '01000600ffffff')],
      ['a trailing byte', bytes(HEADER, USER_OBJ_RW, '00')],
      ['version 1', bytes('01000000', USER_OBJ_RW)],
      ['a big-endian version 2', bytes('00000002', USER_OBJ_RW)],
    ];
    for (const [what, value] of malformed) {
      it(what, () => {
        assert.throws(() => aclToView(value, uids, gids), { code: 'EINVAL' });
        assert.throws(() => aclToLayer(value, uids, gids), { code: 'EINVAL' });
        assert.throws(() => aclToView(value, identity, identity), { code: 'EINVAL' });
      });
    }
  });

  describe('on a real file', () => {
    let dir: string;

    before(() => {
      dir = mkdtempSync(join(tmpdir(), 'ovshift-idmap-acl-'));
    });

    after(() => {
      rmSync(dir, { recursive: true, force: true });
    });

    function readAcl(file: string): Buffer {
      const out = execFileSync('getfattr', ['--absolute-names', '-e', 'hex', '-n', 'system.posix_acl_access', file], {
        encoding: 'utf8',
        timeout: 5000,
      });
      const match = /^system\.posix_acl_access=0x([0-9a-f]+)$/m.exec(out);
      assert.ok(match, `no ACL in getfattr output: ${out}`);
      return Buffer.from(match[1], 'hex');
    }

    it('maps what setfacl wrote, and the kernel accepts the result', () => {
      const layerFile = join(dir, 'layer-file');
      writeFileSync(layerFile, '');
      execFileSync('setfacl', ['-m', 'u:1234:rwx,g:2345:r', layerFile], { timeout: 5000 });
      const layerValue = readAcl(layerFile);
      // 1234 = 0x4d2, 2345 = 0x929; 101234 = 0x18b72, 202345 = 0x31669.
      const userEntry = '02000700d2040000';
      const groupEntry = '0800040029090000';
      const layerHex = layerValue.toString('hex');
      assert.ok(layerHex.includes(userEntry) && layerHex.includes(groupEntry), layerHex);

      const viewValue = aclToView(layerValue, uids, gids);
      const expectedHex = layerHex.replace(userEntry, '02000700728b0100').replace(groupEntry, '0800040069160300');
      assert.equal(viewValue.toString('hex'), expectedHex);

      const viewFile = join(dir, 'view-file');
      writeFileSync(viewFile, '');
      execFileSync('setfattr', ['-n', 'system.posix_acl_access', '-v', `0x${viewValue.toString('hex')}`, viewFile], {
        timeout: 5000,
      });
      const shown = execFileSync('getfacl', ['-n', '--absolute-names', viewFile], { encoding: 'utf8', timeout: 5000 });
      assert.match(shown, /^user:101234:rwx$/m);
      assert.match(shown, /^group:202345:r--$/m);

      assert.deepEqual(aclToLayer(viewValue, uids, gids), layerValue);
    });
  });
});
