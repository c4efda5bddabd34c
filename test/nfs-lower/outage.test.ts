import assert from 'assert/strict';
import { createHash, randomBytes } from 'crypto';
import * as fs from 'fs';
import { join } from 'path';
import { Background } from '../helpers/proc';
import { NFS_VERSIONS, exportPerSuite } from './fixture';

const SIZE = 64 * 1024 * 1024;

/** Reads a file in 1 MiB pieces, slowly after the first 8 MiB; prints "started", then the hash. */
const SLOW_READER = `
import hashlib, sys, time
h = hashlib.sha256()
with open(sys.argv[1], 'rb', buffering=0) as f:
    done = 0
    while True:
        b = f.read(1 << 20)
        if not b: break
        h.update(b)
        done += len(b)
        if done == 8 << 20: print('started', flush=True)
        if done > 8 << 20: time.sleep(0.03)
print(h.hexdigest(), flush=True)
`;

for (const vers of NFS_VERSIONS)
  describe(`nfs:// lower (NFSv${vers}) when the server goes away`, function () {
    this.timeout(120000);
    let reader: Background | undefined;
    const suite = exportPerSuite({
      vers,
      beforeRemove: async () => {
        suite.exp.server.thaw();
        await suite.exp.server.resume();
        await reader?.stop();
        reader = undefined;
      },
    });

    it('hard (default): a read through the mount waits while the server restarts, then completes with the right bytes', async () => {
      const data = randomBytes(SIZE);
      const { dir, url } = suite.exp.area();
      fs.writeFileSync(join(dir, 'big'), data);
      await suite.m.mount(url);
      reader = new Background('python3', ['-c', SLOW_READER, join(suite.m.mnt, 'big')]);
      await reader.waitFor('started', 20000);
      await suite.exp.server.crash();
      const downAt = Date.now();
      await new Promise((r) => setTimeout(r, 2000));
      assert.ok(reader.running, 'the reader is still waiting while the server is down');
      await suite.exp.server.resume();
      const { code } = await reader.exited;
      assert.equal(code, 0, reader.stderr);
      assert.ok(Date.now() - downAt >= 2000);
      assert.equal(reader.stdout.trim().split('\n').at(-1), createHash('sha256').update(data).digest('hex'));
      assert.equal(fs.statSync(join(suite.m.mnt, 'big')).size, SIZE, 'the mount serves on');
    });

    for (const [how, takeDown] of [
      ['is down', () => suite.exp.server.halt()],
      ['is frozen', () => suite.exp.server.freeze()],
    ] as const) {
      it(`soft&timeo=5&retrans=1: a read through the mount fails with EIO after about timeo × (retrans + 1) when the server ${how}`, async () => {
        // Read past what NFSv4's OPEN reads of a file with it (its first 128 KiB).
        const content = 'x'.repeat(256 * 1024);
        const { dir, url } = suite.exp.area({ f: content }, 'soft&timeo=5&retrans=1');
        await suite.m.mount(url);
        const file = await fs.promises.open(join(suite.m.mnt, 'f'), 'r');
        try {
          await takeDown();
          let started = Date.now();
          await assert.rejects(file.read(Buffer.alloc(10), 0, 10, 200 * 1024), { code: 'EIO' });
          let elapsed = Date.now() - started;
          // timeo × (retrans + 1) = 1 s per NFS call; the kernel may first ask for attributes.
          assert.ok(elapsed >= 900 && elapsed < 8000, `read failed after ${elapsed} ms`);
          started = Date.now();
          await assert.rejects(fs.promises.stat(join(suite.m.mnt, 'other')), { code: 'EIO' });
          elapsed = Date.now() - started;
          assert.ok(elapsed >= 900 && elapsed < 8000, `stat failed after ${elapsed} ms`);
          assert.equal(fs.readFileSync(join(dir, 'f'), 'utf8'), content);
        } finally {
          suite.exp.server.thaw();
          await file.close();
        }
      });
    }
  });
