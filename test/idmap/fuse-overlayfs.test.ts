import assert from 'assert/strict';
import { execFileSync } from 'child_process';
import { chownSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { createIdShift, type IdShiftOptions } from '../../src/idmap/id-shift';
import { hasFuseOverlayfs } from '../helpers/fuse-overlayfs';

/**
 * Side by side with fuse-overlayfs 1.10: for the same options, the owners it shows through a
 * mount equal what our maps compute for the lower's owners.
 */
describe('ids shown match fuse-overlayfs', function () {
  this.timeout(30000);
  const mounted: string[] = [];
  let root: string;

  function isMountPoint(dir: string): boolean {
    return readFileSync('/proc/self/mountinfo', 'utf8')
      .split('\n')
      .some((line) => line.split(' ')[4] === dir);
  }

  before(function () {
    if (process.getuid?.() !== 0 || !hasFuseOverlayfs()) this.skip();
    root = mkdtempSync(join(tmpdir(), 'ovshift-idmap-fovl-'));
  });

  after(() => {
    const stillMounted = mounted.splice(0).filter((dir) => {
      try {
        execFileSync('fusermount3', ['-u', dir], { timeout: 10000 });
        return false;
      } catch {
        return true;
      }
    });
    // Removing the tree under a live mount would delete through it; leave it for inspection.
    assert.deepEqual(stillMounted, [], 'could not unmount');
    if (root !== undefined) rmSync(root, { recursive: true, force: true });
  });

  const owners: Array<[string, number, number]> = [
    ['by-root', 0, 0],
    ['by-1000', 1000, 1000],
    ['by-65535', 65535, 65535],
    ['unmapped', 70000, 70001],
  ];

  function mountCase(name: string, mountOptions: string): string {
    const base = join(root, name);
    const lower = join(base, 'lower');
    for (const dir of ['lower', 'upper', 'work', 'merged']) mkdirSync(join(base, dir), { recursive: true });
    for (const [file, uid, gid] of owners) {
      writeFileSync(join(lower, file), file);
      chownSync(join(lower, file), uid, gid);
    }
    const merged = join(base, 'merged');
    execFileSync('fuse-overlayfs', ['-o', `lowerdir=${lower},upperdir=${join(base, 'upper')},workdir=${join(base, 'work')},${mountOptions}`, merged], {
      stdio: 'ignore',
      timeout: 10000,
    });
    mounted.push(merged);
    assert.ok(isMountPoint(merged), `fuse-overlayfs did not mount ${merged}`);
    return merged;
  }

  const cases: Array<[string, string, IdShiftOptions]> = [
    ['mapping', 'uidmapping=0:100000:65536,gidmapping=0:100000:65536', { uidmapping: '0:100000:65536', gidmapping: '0:100000:65536' }],
    [
      'split-mapping',
      'uidmapping=0:1000:1:1:110000:65535,gidmapping=1000:5000:70000',
      { uidmapping: '0:1000:1:1:110000:65535', gidmapping: '1000:5000:70000' },
    ],
    ['squash-root', 'squash_to_root', { squashToRoot: true }],
    [
      'mapping-squash-uid',
      'uidmapping=0:100000:65536,gidmapping=0:100000:65536,squash_to_uid=42',
      { uidmapping: '0:100000:65536', gidmapping: '0:100000:65536', squashToUid: '42' },
    ],
  ];

  for (const [name, mountOptions, options] of cases) {
    it(`with -o ${mountOptions}`, () => {
      const merged = mountCase(name, mountOptions);
      const shift = createIdShift(options);
      for (const [file, uid, gid] of owners) {
        const shown = statSync(join(merged, file));
        assert.deepEqual({ file, uid: shown.uid, gid: shown.gid }, { file, uid: shift.uids.toView(uid), gid: shift.gids.toView(gid) });
      }
    });
  }
});
