/**
 * Reading xfstests' ./check output (scripts/xfstests): each test's verdict from its own record,
 * with lines as check 63a29724 prints them.
 */
import assert from 'assert/strict';
import { recordVerdict } from '../../conformance/xfstests/run-test';

describe('scripts/xfstests: reading check output', () => {
  it('a time is a pass, also with the previous run time before it', () => {
    assert.equal(recordVerdict(' 11s').verdict, 'pass');
    assert.equal(recordVerdict('  15s ...  11s').verdict, 'pass');
  });

  it('[not run] and [expunged] are not runs, with the reason', () => {
    assert.deepEqual(recordVerdict('       [not run] O_TMPFILE is not supported'), { verdict: 'not run', detail: 'O_TMPFILE is not supported' });
    assert.equal(recordVerdict('       [expunged]').verdict, 'not run');
  });

  it('an output mismatch, a failed exit status or a check complaint is a failure, whatever follows', () => {
    const mismatch = ' - output mismatch (see /r/generic/120.out.bad)\n    --- tests/generic/120.out\n    +++ /r/generic/120.out.bad\n    @@ -2,9 +2,43 @@';
    assert.equal(recordVerdict(mismatch).verdict, 'fail');
    assert.equal(recordVerdict(' [failed, exit status 1]- output mismatch (see /r/generic/002.out.bad)').verdict, 'fail');
    assert.equal(recordVerdict(' 3s\n_check_dmesg: something found (see /r/generic/013.dmesg)').verdict, 'fail');
  });
});
