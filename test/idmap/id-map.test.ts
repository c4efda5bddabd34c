import assert from 'assert/strict';
import { IdMap } from '../../src/idmap/id-map';
import { parseIdRanges } from '../../src/idmap/ranges';

const OVERFLOW = 65534;

function mapOf(spec: string, squashTo?: number): IdMap {
  return new IdMap(parseIdRanges('uidmapping', spec), { overflowId: OVERFLOW, squashTo });
}

describe('IdMap', function () {
  this.timeout(2000);

  describe('with 0:100000:65536:70000:300000:10', () => {
    const map = mapOf('0:100000:65536:70000:300000:10');

    it('maps layer→view at the first, the last and one past the last id of each range', () => {
      assert.equal(map.toView(0), 100000);
      assert.equal(map.toView(65535), 165535);
      assert.equal(map.toView(65536), OVERFLOW);
      assert.equal(map.toView(70000), 300000);
      assert.equal(map.toView(70009), 300009);
      assert.equal(map.toView(70010), OVERFLOW);
      assert.equal(map.toView(69999), OVERFLOW);
    });

    it('maps view→layer at the same edges, undefined when unmapped', () => {
      assert.equal(map.toLayer(100000), 0);
      assert.equal(map.toLayer(99999), undefined);
      assert.equal(map.toLayer(165535), 65535);
      assert.equal(map.toLayer(165536), undefined);
      assert.equal(map.toLayer(300000), 70000);
      assert.equal(map.toLayer(300009), 70009);
      assert.equal(map.toLayer(300010), undefined);
      assert.equal(map.toLayer(0), undefined);
    });

    it('stores a creator without a mapping as the overflow id, a mapped one as its layer id', () => {
      assert.equal(map.creatorToLayer(100000), 0);
      assert.equal(map.creatorToLayer(300009), 70009);
      assert.equal(map.creatorToLayer(0), OVERFLOW);
      assert.equal(map.creatorToLayer(165536), OVERFLOW);
    });

    it('finds view ids by the ranges alone, undefined when unmapped', () => {
      assert.equal(map.findView(1000), 101000);
      assert.equal(map.findView(65536), undefined);
    });

    it('round-trips every mapped edge', () => {
      for (const layerId of [0, 1, 65534, 65535, 70000, 70009]) {
        assert.equal(map.toLayer(map.toView(layerId)), layerId);
      }
    });

    it('is not the identity', () => {
      assert.equal(map.isIdentity, false);
    });
  });

  it('shows unmapped layer ids as the configured overflow id', () => {
    const map = new IdMap(parseIdRanges('uidmapping', '0:1000:1'), { overflowId: 4242 });
    assert.equal(map.toView(1), 4242);
    assert.equal(map.overflowId, 4242);
  });

  it('can map the highest id, 4294967294', () => {
    const map = mapOf('4294967294:5:1');
    assert.equal(map.toView(4294967294), 5);
    assert.equal(map.toLayer(5), 4294967294);
    assert.equal(map.toLayer(6), undefined);
  });

  describe('with no ranges (identity)', () => {
    const map = new IdMap([], { overflowId: OVERFLOW });

    it('returns every id unchanged both ways, including the extremes', () => {
      for (const id of [0, 1, 1000, 65534, 65536, 4294967294]) {
        assert.equal(map.toView(id), id);
        assert.equal(map.findView(id), id);
        assert.equal(map.toLayer(id), id);
      }
      assert.equal(map.isIdentity, true);
    });
  });

  describe('squash', () => {
    it('shows every owner as the squash id, mapped or not', () => {
      const map = mapOf('0:100000:65536', 42);
      assert.equal(map.toView(0), 42);
      assert.equal(map.toView(70000), 42);
    });

    it('applies to an identity map too', () => {
      assert.equal(new IdMap([], { overflowId: OVERFLOW, squashTo: 0 }).toView(1000), 0);
    });

    it('leaves view→layer and the ranges-only lookup alone', () => {
      const map = mapOf('0:100000:65536', 42);
      assert.equal(map.toLayer(100005), 5);
      assert.equal(map.toLayer(42), undefined);
      assert.equal(map.findView(5), 100005);
    });
  });
});
