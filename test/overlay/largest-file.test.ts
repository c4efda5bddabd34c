/**
 * A file of the largest size Linux allows, 2^63 - 1 bytes (sparse; xfs and tmpfs hold one):
 * the mount shows it, and does not answer EIO for the name (xfstests generic/529 met one that
 * an earlier test left in the scratch filesystem, and every access to it failed).
 */
import assert from 'assert/strict';
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import { join } from 'path';
import { Scratch, startDaemon, type Daemon } from '../helpers/ovshift';
import { python, run } from '../helpers/proc';

const LARGEST = '9223372036854775807';

const THROUGH_MOUNT_PY = `
import errno, os, sys
mnt = sys.argv[1]
print(os.stat(mnt + '/lower-big').st_size)
open(mnt + '/made', 'w').close()
os.truncate(mnt + '/made', 2**63 - 1)
print(os.stat(mnt + '/made').st_size)
fd = os.open(mnt + '/made', os.O_WRONLY | os.O_APPEND)
try:
    os.write(fd, b'x')
except OSError as e:
    print(errno.errorcode[e.errno])
os.close(fd)
os.unlink(mnt + '/lower-big')
print(sorted(os.listdir(mnt)))
`;

describe('overlay: the largest file size', function () {
  this.timeout(30000);
  let s: Scratch;
  let d: Daemon | undefined;
  let tmpfs: string | undefined;

  beforeEach(() => {
    s = new Scratch();
  });

  afterEach(async () => {
    await d?.stop();
    d = undefined;
    if (tmpfs) await run('umount', ['-l', tmpfs]);
    tmpfs = undefined;
    s.remove();
  });

  it('is shown exactly, and the file can be made, stat-ed and removed through the mount', async () => {
    tmpfs = s.dir('tmpfs');
    execFileSync('mount', ['-t', 'tmpfs', 'ovshift-test-layers', tmpfs]);
    const [lower, upper, work] = ['lower', 'upper', 'work'].map((n) => join(tmpfs!, n));
    for (const dir of [lower!, upper!, work!]) fs.mkdirSync(dir);
    execFileSync('truncate', ['-s', LARGEST, join(lower!, 'lower-big')]);
    d = await startDaemon(['-o', `lowerdir=${lower},upperdir=${upper},workdir=${work}`, s.mnt], s.mnt);
    const r = await python(THROUGH_MOUNT_PY, [s.mnt]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.stdout.trim().split('\n'), [LARGEST, LARGEST, 'EFBIG', "['made']"]);
    assert.equal(fs.statSync(join(upper!, 'made'), { bigint: true }).size, BigInt(LARGEST));
  });
});
