import assert from 'assert/strict';
import { createHash, randomBytes } from 'crypto';
import * as fs from 'fs';
import { join } from 'path';
import { run } from '../helpers/proc';
import { NFS_VERSIONS, NfsExport, NfsLowerMount } from './fixture';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

/** Writes `size` bytes that differ in every MiB (no two blocks alike) and returns their sha256. */
function writePatterned(path: string, size: number): string {
  const block = randomBytes(MiB);
  const hash = createHash('sha256');
  const fd = fs.openSync(path, 'w');
  try {
    for (let i = 0; i * MiB < size; i++) {
      block.writeUInt32BE(i, 0);
      const piece = block.subarray(0, Math.min(MiB, size - i * MiB));
      fs.writeSync(fd, piece);
      hash.update(piece);
    }
  } finally {
    fs.closeSync(fd);
  }
  return hash.digest('hex');
}

for (const vers of NFS_VERSIONS)
  describe(`nfs:// lower (NFSv${vers}): a 1 GiB file`, function () {
    this.timeout(600000);
    let exp: NfsExport;
    let m: NfsLowerMount;

    before(async () => {
      exp = await NfsExport.start({ vers });
    });

    after(async () => {
      await m?.remove();
      // The export (with the file) lives on disk under the temporary directory and goes here.
      await exp?.stop();
    });

    it('reads through the mount with the right sha256', async () => {
      const { dir, url } = exp.area();
      const file = join(dir, 'huge.bin');
      const want = writePatterned(file, GiB + 12345);
      m = new NfsLowerMount();
      await m.mount(url);
      const r = await run('sha256sum', [join(m.mnt, 'huge.bin')], { timeoutMs: 540000 });
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout.split(' ')[0], want);
    });
  });
