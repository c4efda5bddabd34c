import assert from 'assert/strict';
import { readFileSync } from 'fs';
import { createIdShift } from '../../src/idmap/id-shift';

const OVERFLOW = { uid: 65534, gid: 65533 };

describe('createIdShift', function () {
  this.timeout(2000);

  it('builds independent uid and gid maps with their own overflow ids', () => {
    const shift = createIdShift({ uidmapping: '0:100000:65536', gidmapping: '0:200000:10' }, OVERFLOW);
    assert.equal(shift.uids.toView(1000), 101000);
    assert.equal(shift.gids.toView(5), 200005);
    assert.equal(shift.gids.toView(1000), 65533);
    assert.equal(shift.uids.toView(70000), 65534);
  });

  it('makes identity maps when no mapping is given', () => {
    const shift = createIdShift({}, OVERFLOW);
    assert.equal(shift.uids.isIdentity, true);
    assert.equal(shift.gids.isIdentity, true);
    assert.equal(shift.uids.toView(1234), 1234);
  });

  it('uses the kernel overflow ids when none are given', () => {
    const shift = createIdShift({ uidmapping: '0:1:1', gidmapping: '0:1:1' });
    assert.equal(shift.uids.toView(5), Number(readFileSync('/proc/sys/kernel/overflowuid', 'utf8')));
    assert.equal(shift.gids.toView(5), Number(readFileSync('/proc/sys/kernel/overflowgid', 'utf8')));
  });

  it('passes mapping errors through', () => {
    assert.throws(() => createIdShift({ gidmapping: '0:1' }, OVERFLOW), {
      message: 'gidmapping: range 0:1 is incomplete, expected LAYER:VIEW:COUNT',
    });
  });

  describe('squash options, as fuse-overlayfs 1.10 applies them', () => {
    it('squash_to_root shows every owner as 0:0', () => {
      const shift = createIdShift({ uidmapping: '0:100000:65536', squashToRoot: true }, OVERFLOW);
      assert.equal(shift.uids.toView(1000), 0);
      assert.equal(shift.gids.toView(1000), 0);
    });

    it('squash_to_uid and squash_to_gid set one side each', () => {
      const uidOnly = createIdShift({ squashToUid: '42' }, OVERFLOW);
      assert.equal(uidOnly.uids.toView(1000), 42);
      assert.equal(uidOnly.gids.toView(1000), 1000);
      const gidOnly = createIdShift({ squashToGid: '43' }, OVERFLOW);
      assert.equal(gidOnly.uids.toView(1000), 1000);
      assert.equal(gidOnly.gids.toView(1000), 43);
    });

    it('squash_to_uid/gid take precedence over squash_to_root', () => {
      const shift = createIdShift({ squashToRoot: true, squashToUid: '42' }, OVERFLOW);
      assert.equal(shift.uids.toView(1000), 42);
      assert.equal(shift.gids.toView(1000), 0);
    });

    it('leaves the way into the layers to the ranges', () => {
      const shift = createIdShift({ uidmapping: '0:100000:65536', squashToRoot: true }, OVERFLOW);
      assert.equal(shift.uids.toLayer(100007), 7);
      assert.equal(shift.uids.toLayer(0), undefined);
    });

    for (const bad of ['', 'abc', '-1', '4294967295']) {
      it(`refuses squash_to_uid=${bad}`, () => {
        assert.throws(() => createIdShift({ squashToUid: bad }, OVERFLOW), {
          message: `squash_to_uid=${bad}: expected an id from 0 to 4294967294`,
        });
      });
    }

    it('refuses a bad squash_to_gid by name', () => {
      assert.throws(() => createIdShift({ squashToGid: 'x' }, OVERFLOW), {
        message: 'squash_to_gid=x: expected an id from 0 to 4294967294',
      });
    });
  });

  describe('creatorToLayer', () => {
    const shift = createIdShift({ uidmapping: '0:100000:65536', gidmapping: '0:200000:65536' }, OVERFLOW);

    it('stores a mapped caller as its layer ids', () => {
      assert.deepEqual(shift.creatorToLayer(100000, 200000), { uid: 0, gid: 0 });
      assert.deepEqual(shift.creatorToLayer(165535, 265535), { uid: 65535, gid: 65535 });
    });

    it('stores the overflow ids for a uid or gid without a mapping, each kind on its own (as fuse-overlayfs)', () => {
      assert.deepEqual(shift.creatorToLayer(0, 200000), { uid: OVERFLOW.uid, gid: 0 });
      assert.deepEqual(shift.creatorToLayer(100000, 0), { uid: 0, gid: OVERFLOW.gid });
      assert.deepEqual(shift.creatorToLayer(165536, 265536), { uid: OVERFLOW.uid, gid: OVERFLOW.gid });
    });

    it('ignores squash options, which only change what attributes show', () => {
      const squashed = createIdShift({ uidmapping: '0:100000:65536', squashToRoot: true }, OVERFLOW);
      assert.deepEqual(squashed.creatorToLayer(0, 0), { uid: OVERFLOW.uid, gid: 0 });
      assert.deepEqual(squashed.creatorToLayer(100000, 7), { uid: 0, gid: 7 });
    });

    it('passes every id through with identity maps', () => {
      assert.deepEqual(createIdShift({}, OVERFLOW).creatorToLayer(4294967294, 0), { uid: 4294967294, gid: 0 });
    });
  });
});
