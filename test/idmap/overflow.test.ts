import assert from 'assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { readOverflowId, systemOverflowIds } from '../../src/idmap/overflow';

describe('overflow ids', function () {
  this.timeout(2000);
  let dir: string;

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'ovshift-idmap-overflow-'));
  });

  after(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('reads the value of the file, ignoring the newline', () => {
    const file = join(dir, 'overflowuid');
    writeFileSync(file, '4321\n');
    assert.equal(readOverflowId(file), 4321);
  });

  it('defaults to 65534 when the file is missing', () => {
    assert.equal(readOverflowId(join(dir, 'absent')), 65534);
  });

  it('defaults to 65534 when the file holds no id', () => {
    const file = join(dir, 'garbage');
    writeFileSync(file, 'nobody\n');
    assert.equal(readOverflowId(file), 65534);
  });

  it('returns the kernel values for the system ids', () => {
    const ids = systemOverflowIds();
    assert.equal(ids.uid, Number(readFileSync('/proc/sys/kernel/overflowuid', 'utf8')));
    assert.equal(ids.gid, Number(readFileSync('/proc/sys/kernel/overflowgid', 'utf8')));
  });
});
