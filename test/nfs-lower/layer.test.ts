import assert from 'assert/strict';
import { createHash, randomBytes } from 'crypto';
import * as fs from 'fs';
import { join } from 'path';
import { parseNfsUrl } from '../../src/layers/nfs';
import { NfsLayer } from '../../src/layers/nfs-layer';
import { NFS_VERSIONS, NfsExport } from './fixture';

const DT_FIFO = 1;
const DT_DIR = 4;
const DT_REG = 8;
const DT_LNK = 10;

for (const vers of NFS_VERSIONS)
  describe(`NfsLayer (the nfs:// lower backend) against nfs-ganesha, NFSv${vers}`, function () {
    this.timeout(60000);
    let exp: NfsExport;
    const layers: NfsLayer[] = [];

    async function layer(url: string): Promise<NfsLayer> {
      const l = await NfsLayer.connect(parseNfsUrl(url), 'test layer');
      layers.push(l);
      return l;
    }

    before(async () => {
      exp = await NfsExport.start({ vers });
    });

    afterEach(async () => {
      await Promise.all(layers.splice(0).map((l) => l.close()));
    });

    after(async () => {
      await exp?.stop();
    });

    it('stats paths by walking them from the root: absent names are null, the identity is the file handle', async () => {
      const { dir, url } = exp.area({ 'a/b/file': 'x', 'a/other': 'y' });
      const l = await layer(url);
      const root = await l.stat('');
      const file = await l.stat('a/b/file');
      assert.ok(root && file);
      assert.equal(file.size, 1);
      assert.equal(file.ino, fs.statSync(join(dir, 'a/b/file')).ino);
      assert.ok(file.dev >= 2 ** 52 && file.dev === root.dev, 'one NFS filesystem, above local device numbers');
      assert.equal(await l.stat('a/missing'), null);
      assert.equal(await l.stat('a/other/below-a-file'), null);
      assert.equal(await l.stat('a/' + 'n'.repeat(300)), null);
      fs.renameSync(join(dir, 'a/b/file'), join(dir, 'a/renamed'));
      assert.equal((await l.stat('a/renamed'))?.identity, file.identity, 'a rename keeps the object');
      fs.unlinkSync(join(dir, 'a/renamed'));
      fs.writeFileSync(join(dir, 'a/renamed'), 'x');
      assert.notEqual((await l.stat('a/renamed'))?.identity, file.identity, 'a new file is another object');
    });

    it('lists with types from READDIRPLUS, reads links, has no xattrs, reports space', async () => {
      const { dir, url } = exp.area({ f: 'x', d: { dir: true }, l: { symlink: 'f' }, p: { fifo: true } });
      const l = await layer(url);
      const listed = (await l.readdir('')).map((e) => [e.name, e.type]).sort();
      assert.deepEqual(listed, [
        ['d', DT_DIR],
        ['f', DT_REG],
        ['l', DT_LNK],
        ['p', DT_FIFO],
      ]);
      assert.equal((await l.readdir('')).find((e) => e.name === 'f')?.ino, fs.statSync(join(dir, 'f')).ino);
      assert.equal((await l.readlink('l')).toString(), 'f');
      assert.equal(await l.getxattr('f', 'user.x'), null);
      assert.deepEqual(await l.listxattr('f'), []);
      await assert.rejects(l.readdir('missing'), { code: 'ENOENT' });
      const s = await l.statfs();
      assert.ok(s.blocks > 0 && s.bavail <= s.bfree && s.bfree <= s.blocks && s.namelen === 255, JSON.stringify(s));
    });

    it('reads an open file through READs with no local descriptor; streams it with several READs in flight', async () => {
      const data = randomBytes(40 * 1024 * 1024 + 7);
      const { dir, url } = exp.area();
      fs.writeFileSync(join(dir, 'big'), data);
      const l = await layer(url);
      const file = await l.openRead('big');
      assert.equal(file.fd, undefined);
      assert.equal((await file.stat()).size, data.length);
      const buf = Buffer.alloc(3 * 1024 * 1024);
      const n = await file.read(buf, 10, buf.length - 10, data.length - 2_000_000);
      assert.equal(n, 2_000_000);
      assert.ok(buf.subarray(10, 10 + n).equals(data.subarray(data.length - 2_000_000)));
      const hash = createHash('sha256');
      let inFlight = 0;
      for await (const chunk of file.chunks!(data.length)) {
        inFlight = Math.max(inFlight, l.client.inFlight);
        hash.update(chunk);
      }
      assert.equal(hash.digest('hex'), createHash('sha256').update(data).digest('hex'));
      assert.ok(inFlight >= 2, `at most ${inFlight} READs in flight`);
      const head = Buffer.alloc(100);
      let got = 0;
      for await (const chunk of file.chunks!(100)) {
        chunk.copy(head, got);
        got += chunk.length;
      }
      assert.ok(got === 100 && head.equals(data.subarray(0, 100)), 'chunks(size) stops at size');
      await file.close();
    });

    it('reads ahead of sequential reads: the right bytes two at a time, after jumps, and after the file grew', async () => {
      const piece = 128 * 1024;
      const data = randomBytes(6 * 1024 * 1024 + 999);
      const { dir, url } = exp.area();
      fs.writeFileSync(join(dir, 'seq'), data);
      const l = await layer(url);
      const file = await l.openRead('seq');
      const readPiece = async (position: number): Promise<Buffer> => {
        const buf = Buffer.alloc(piece);
        return buf.subarray(0, await file.read(buf, 0, piece, position));
      };
      const check = async (from: number, to: number): Promise<void> => {
        for (let position = from; position < to; position += 2 * piece) {
          const [a, b] = await Promise.all([readPiece(position), readPiece(position + piece)]);
          const want = data.subarray(position, position + 2 * piece);
          assert.ok(Buffer.concat([a, b]).equals(want), `bytes at ${position}`);
        }
      };
      await check(0, data.length);
      await check(1024 * 1024 + 17, 3 * 1024 * 1024);
      await check(0, 2 * 1024 * 1024);
      const more = randomBytes(300_000);
      fs.appendFileSync(join(dir, 'seq'), more);
      const grown = Buffer.concat([data, more]);
      const tail = Buffer.alloc(400_000);
      const n = await file.read(tail, 0, tail.length, data.length - 100_000);
      assert.ok(n === 400_000 && tail.equals(grown.subarray(data.length - 100_000)), 'bytes past the old end of file');
    });

    it('surfaces a stale handle as ESTALE; the same path walked again finds the new object', async () => {
      const { dir, url } = exp.area({ f: 'old' });
      const l = await layer(url);
      const file = await l.openRead('f');
      fs.unlinkSync(join(dir, 'f'));
      fs.writeFileSync(join(dir, 'f'), 'new!');
      await exp.server.restart();
      await assert.rejects(file.read(Buffer.alloc(10), 0, 10, 0), { code: 'ESTALE' });
      await assert.rejects(file.stat(), { code: 'ESTALE' });
      const again = await l.openRead('f');
      const buf = Buffer.alloc(10);
      assert.equal(buf.subarray(0, await again.read(buf, 0, 10, 0)).toString(), 'new!');
    });

    it('reaches an object found before by its handle: after a rename on the server still; once the handle is stale, by its path', async () => {
      const { dir, url } = exp.area({ 'd/e/f': 'first' });
      const l = await layer(url);
      const e = await l.stat('d/e');
      assert.ok(e);
      const found = { path: 'd/e', identity: e.identity };
      assert.equal((await l.lookup(found, 'f'))?.size, 5);
      fs.renameSync(join(dir, 'd'), join(dir, 'moved'));
      assert.equal((await l.lookup(found, 'f'))?.size, 5, 'the renamed directory is reached by its handle');
      assert.equal(await l.stat('d/e/f'), null, 'its old path names nothing');
      fs.rmSync(join(dir, 'moved'), { recursive: true });
      fs.mkdirSync(join(dir, 'd/e'), { recursive: true });
      fs.writeFileSync(join(dir, 'd/e/f'), 'second');
      await exp.server.restart();
      const again = await l.lookup(found, 'f');
      assert.equal(again?.size, 6, 'a stale handle: the path is walked afresh, finding what is there now');
      assert.notEqual((await l.stat(found))?.identity, e.identity, 'and stat() answers for the new directory');
    });
  });
