import assert from 'assert/strict';
import { capToLayer, capToView } from '../../src/idmap/cap-xattr';
import { IdMap } from '../../src/idmap/id-map';
import { parseIdRanges } from '../../src/idmap/ranges';

const uids = new IdMap(parseIdRanges('uidmapping', '0:100000:65536'), { overflowId: 65534 });
const identity = new IdMap([], { overflowId: 65534 });

function bytes(...hex: string[]): Buffer {
  return Buffer.from(hex.join(''), 'hex');
}

// Magic words little-endian: revision in the top byte, VFS_CAP_FLAGS_EFFECTIVE (1) set.
const V1_MAGIC = '01000001';
const V2_MAGIC = '01000002';
const V3_MAGIC = '01000003';
// permitted = CAP_NET_BIND_SERVICE (bit 10), inheritable = 0, for both 32-bit halves.
const CAPS_V2 = '00040000' + '00000000' + '00000000' + '00000000';
const CAPS_V1 = '00040000' + '00000000';

describe('security.capability xattrs', function () {
  this.timeout(2000);

  // rootid 0 on the layer is 100000 = 0x186a0 in the view.
  const layerV3 = bytes(V3_MAGIC, CAPS_V2, '00000000');
  const viewV3 = bytes(V3_MAGIC, CAPS_V2, 'a0860100');

  it('maps a v3 rootid layer→view', () => {
    assert.deepEqual(capToView(layerV3, uids), viewV3);
  });

  it('maps a v3 rootid view→layer', () => {
    assert.deepEqual(capToLayer(viewV3, uids), layerV3);
  });

  it('does not modify the value it was given', () => {
    const copy = Buffer.from(layerV3);
    capToView(layerV3, uids);
    assert.deepEqual(layerV3, copy);
  });

  it('answers null for a v3 rootid with no mapping, in either direction', () => {
    // 70000 = 0x11170 is outside 0..65535 on the layer and outside 100000..165535 in the view.
    assert.equal(capToView(bytes(V3_MAGIC, CAPS_V2, '70110100'), uids), null);
    assert.equal(capToLayer(bytes(V3_MAGIC, CAPS_V2, '70110100'), uids), null);
  });

  it('ignores squash options for the rootid', () => {
    const squashed = new IdMap(parseIdRanges('uidmapping', '0:100000:65536'), { overflowId: 65534, squashTo: 0 });
    assert.deepEqual(capToView(layerV3, squashed), viewV3);
  });

  it('returns v2 and v1 values, which carry no rootid, as the same Buffer', () => {
    const v2 = bytes(V2_MAGIC, CAPS_V2);
    const v1 = bytes(V1_MAGIC, CAPS_V1);
    assert.equal(capToView(v2, uids), v2);
    assert.equal(capToLayer(v2, uids), v2);
    assert.equal(capToView(v1, uids), v1);
  });

  it('returns v3 values as the same Buffer under an identity map', () => {
    assert.equal(capToView(viewV3, identity), viewV3);
    assert.equal(capToLayer(viewV3, identity), viewV3);
  });

  describe('refuses malformed values with EINVAL', () => {
    const malformed: Array<[string, Buffer]> = [
      ['empty', bytes()],
      ['a short magic', bytes('010000')],
      ['v2 with a rootid appended (24 bytes)', bytes(V2_MAGIC, CAPS_V2, '00000000')],
      ['v3 without its rootid (20 bytes)', bytes(V3_MAGIC, CAPS_V2)],
      ['v1 of v2 size', bytes(V1_MAGIC, CAPS_V2)],
      ['an unknown revision 4', bytes('01000004', CAPS_V2, '00000000')],
      ['revision 0', bytes('00000000', CAPS_V2)],
    ];
    for (const [what, value] of malformed) {
      it(what, () => {
        assert.throws(() => capToView(value, uids), { code: 'EINVAL' });
        assert.throws(() => capToLayer(value, uids), { code: 'EINVAL' });
        assert.throws(() => capToView(value, identity), { code: 'EINVAL' });
      });
    }
  });
});
