import assert from 'assert/strict';
import { parseIdRanges } from '../../src/idmap/ranges';

describe('parseIdRanges', function () {
  this.timeout(2000);

  it('parses one range as LAYER:VIEW:COUNT', () => {
    assert.deepEqual(parseIdRanges('uidmapping', '0:100000:65536'), [{ layer: 0, view: 100000, count: 65536 }]);
  });

  it('parses several ranges chained with colons, in the order written', () => {
    assert.deepEqual(parseIdRanges('gidmapping', '0:1000:1:1:110000:65536'), [
      { layer: 0, view: 1000, count: 1 },
      { layer: 1, view: 110000, count: 65536 },
    ]);
  });

  it('accepts ranges that touch without overlapping, on both sides', () => {
    assert.deepEqual(parseIdRanges('uidmapping', '0:10:5:5:15:5'), [
      { layer: 0, view: 10, count: 5 },
      { layer: 5, view: 15, count: 5 },
    ]);
  });

  it('takes one leading colon, as containers-storage writes the option', () => {
    assert.deepEqual(parseIdRanges('uidmapping', ':0:100000:65536'), [{ layer: 0, view: 100000, count: 65536 }]);
    assert.deepEqual(parseIdRanges('gidmapping', ':0:1000:1:1:110000:65536'), [
      { layer: 0, view: 1000, count: 1 },
      { layer: 1, view: 110000, count: 65536 },
    ]);
  });

  it('accepts a range ending at 4294967294, the highest id', () => {
    assert.deepEqual(parseIdRanges('uidmapping', '0:0:4294967295'), [{ layer: 0, view: 0, count: 4294967295 }]);
    assert.deepEqual(parseIdRanges('uidmapping', '4294967294:7:1'), [{ layer: 4294967294, view: 7, count: 1 }]);
  });

  const refused: Array<[string, string, string]> = [
    ['empty value', '', 'uidmapping: empty mapping, expected LAYER:VIEW:COUNT[:LAYER:VIEW:COUNT…]'],
    ['a leading colon and nothing else', ':', 'uidmapping: empty mapping, expected LAYER:VIEW:COUNT[:LAYER:VIEW:COUNT…]'],
    ['two leading colons', '::0:1:1', 'uidmapping: range :0:1 has "" where a decimal number belongs'],
    ['a trailing colon', '0:1:1:', "uidmapping: empty range after the last ':', expected LAYER:VIEW:COUNT"],
    ['an empty range between two', '0:1:1::2:2:2', 'uidmapping: range :2:2 has "" where a decimal number belongs'],
    ['non-numeric field', '0:abc:10', 'uidmapping: range 0:abc:10 has "abc" where a decimal number belongs'],
    ['negative number', '0:-1:10', 'uidmapping: range 0:-1:10 has "-1" where a decimal number belongs'],
    ['empty field', '0::10', 'uidmapping: range 0::10 has "" where a decimal number belongs'],
    ['field with spaces', '0: 1:10', 'uidmapping: range 0: 1:10 has " 1" where a decimal number belongs'],
    ['missing fields', '0:100000', 'uidmapping: range 0:100000 is incomplete, expected LAYER:VIEW:COUNT'],
    ['a trailing incomplete range', '0:100000:65536:70000:1', 'uidmapping: range 70000:1 is incomplete, expected LAYER:VIEW:COUNT'],
    ['count 0', '0:100000:0', 'uidmapping: range 0:100000:0 has count 0'],
    ['layer side past the last id', '1:0:4294967295', 'uidmapping: range 1:0:4294967295 goes past 4294967294 on the layer side'],
    ['view side past the last id', '0:4294967000:296', 'uidmapping: range 0:4294967000:296 goes past 4294967294 on the view side'],
    ['(uid_t)-1 itself', '4294967295:0:1', 'uidmapping: range 4294967295:0:1 goes past 4294967294 on the layer side'],
    ['a number beyond 32 bits', '0:0:99999999999', 'uidmapping: range 0:0:99999999999 goes past 4294967294 on the layer side'],
    ['overlap on the view side', '0:100000:65536:70000:100500:10', 'uidmapping: range 0:100000:65536 overlaps 70000:100500:10 on the view side'],
    ['overlap on the layer side', '0:100000:65536:1000:200000:10', 'uidmapping: range 0:100000:65536 overlaps 1000:200000:10 on the layer side'],
    [
      'overlap on both sides, reported for the view side',
      '0:100000:65536:1000:100500:10',
      'uidmapping: range 0:100000:65536 overlaps 1000:100500:10 on the view side',
    ],
    ['overlap by the last id only', '0:10:5:100:14:3', 'uidmapping: range 0:10:5 overlaps 100:14:3 on the view side'],
    ['overlap by the first id only', '0:14:3:100:10:5', 'uidmapping: range 0:14:3 overlaps 100:10:5 on the view side'],
    ['overlap between the first and third ranges', '0:0:10:20:20:10:9:40:2', 'uidmapping: range 0:0:10 overlaps 9:40:2 on the layer side'],
  ];
  for (const [what, spec, message] of refused) {
    it(`refuses ${what}: ${JSON.stringify(spec)}`, () => {
      assert.throws(() => parseIdRanges('uidmapping', spec), { message });
    });
  }

  it('names the option it parses in the error', () => {
    assert.throws(() => parseIdRanges('gidmapping', '1:2:0'), { message: 'gidmapping: range 1:2:0 has count 0' });
  });
});
