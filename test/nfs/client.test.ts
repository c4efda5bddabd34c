import assert from 'assert/strict';
import { spawnSync } from 'child_process';
import { createHash, randomBytes } from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { inspect } from 'util';
import { Access, FileType, NfsClient, NfsError, NfsMountError } from '../../src/layers/nfs';
import { NfsTestServer, startNfsServer } from './server';

const BIG_SIZE = 5 * 1024 * 1024 + 123;
const MANY = 2000;

function sha256(data: Buffer | Buffer[]): string {
  const hash = createHash('sha256');
  for (const chunk of Array.isArray(data) ? data : [data]) hash.update(chunk);
  return hash.digest('hex');
}

async function collect(stream: AsyncIterable<Buffer>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.from(chunk));
  return Buffer.concat(chunks);
}

function sortedNames(names: Buffer[]): string[] {
  return names.map((n) => n.toString('hex')).sort();
}

describe('NfsClient against nfs-ganesha', function () {
  this.timeout(60_000);
  let root: string;
  let server: NfsTestServer;
  let client: NfsClient;
  let big: Buffer;
  const oddName = Buffer.from([0x66, 0xff, 0xfe, 0x0a]); // not UTF-8, with a newline

  before(async () => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'ovshift-nfs-export-'));
    fs.chmodSync(root, 0o755);
    fs.writeFileSync(path.join(root, 'hello.txt'), 'hello world\n');
    fs.writeFileSync(path.join(root, 'empty'), '');
    big = randomBytes(BIG_SIZE);
    fs.writeFileSync(path.join(root, 'big.bin'), big);
    fs.symlinkSync('hello.txt', path.join(root, 'link'));
    fs.mkdirSync(path.join(root, 'dir', 'sub'), { recursive: true });
    fs.writeFileSync(path.join(root, 'dir', 'sub', 'nested.txt'), 'nested\n');
    fs.mkdirSync(path.join(root, 'many'));
    for (let i = 0; i < MANY; i++) fs.writeFileSync(path.join(root, 'many', `entry-with-a-rather-long-name-${String(i).padStart(5, '0')}`), '');
    fs.writeFileSync(Buffer.from([...Buffer.from(`${root}/`), ...oddName]), 'odd\n');
    fs.writeFileSync(path.join(root, 'secret'), 'root only\n', { mode: 0o600 });
    assert.equal(spawnSync('mkfifo', [path.join(root, 'fifo')]).status, 0);
    server = await startNfsServer(root);
    client = await NfsClient.connect(server.url());
  });

  after(async () => {
    await client?.close();
    await server?.stop();
    fs.rmSync(root, { recursive: true, force: true });
  });

  describe('mounting', () => {
    it('finds the NFS and MOUNT ports through the portmapper when the URL names none', async () => {
      const viaPortmap = await NfsClient.connect(`nfs://127.0.0.1${server.exportDir}`);
      try {
        assert.deepEqual(viaPortmap.root, client.root);
        assert.equal((await viaPortmap.lookup(viaPortmap.root, 'hello.txt')).attr?.size, 12n);
      } finally {
        await viaPortmap.close();
      }
    });

    it('mounts a subdirectory of the export', async () => {
      const sub = await NfsClient.connect(server.url('dir/sub'));
      try {
        const names = (await sub.readdirplus(sub.root)).map((e) => e.name.toString());
        assert.deepEqual(names, ['nested.txt']);
        assert.equal(sub.exportPath.toString(), `${server.exportDir}/dir/sub`);
      } finally {
        await sub.close();
      }
    });

    it('mounts the longest accepted prefix and looks up the rest; a missing component fails naming the URL', async () => {
      await assert.rejects(NfsClient.connect(server.url('dir/missing/deeper')), (error: unknown) => {
        assert.ok(error instanceof NfsMountError);
        assert.equal(error.code, 'ENOENT');
        assert.match(error.message, new RegExp(`^cannot mount nfs://127\\.0\\.0\\.1:${server.port}${server.exportDir}/dir/missing/deeper: `));
        assert.match(error.message, /NFS3ERR_NOENT\), lookup 'missing'/);
        assert.doesNotMatch(error.message, /\n/);
        return true;
      });
    });

    it('rejects an export the server does not have, with a one-line message naming host and export', async () => {
      await assert.rejects(NfsClient.connect(`nfs://127.0.0.1:${server.port}/no/such/export?mountport=${server.mountPort}`), (error: unknown) => {
        assert.ok(error instanceof NfsMountError);
        assert.equal(error.code, 'EACCES');
        assert.match(error.message, /^cannot mount nfs:\/\/127\.0\.0\.1:\d+\/no\/such\/export: .*MNT3ERR_ACCES/);
        assert.doesNotMatch(error.message, /\n/);
        return true;
      });
    });

    it('rejects at once when no server listens', async () => {
      const started = Date.now();
      await assert.rejects(NfsClient.connect('nfs://127.0.0.1:1/export?mountport=1'), (error: unknown) => {
        assert.ok(error instanceof NfsMountError);
        assert.equal(error.code, 'ECONNREFUSED');
        assert.match(error.message, /^cannot mount nfs:\/\/127\.0\.0\.1:1\/export: cannot reach mount server at 127\.0\.0\.1:1/);
        return true;
      });
      assert.ok(Date.now() - started < 5000);
    });
  });

  describe('metadata', () => {
    it('looks up files and converts their attributes like stat(2)', async () => {
      for (const name of ['hello.txt', 'dir', 'link', 'fifo', 'empty']) {
        const st = fs.lstatSync(path.join(root, name), { bigint: true });
        const { fh, attr } = await client.lookup(client.root, name);
        assert.ok(attr, name);
        const fresh = await client.getattr(fh);
        for (const a of [attr, fresh]) {
          assert.equal(a.mode, Number(st.mode), `${name} mode`);
          assert.equal(a.nlink, Number(st.nlink));
          assert.equal(a.uid, Number(st.uid));
          assert.equal(a.gid, Number(st.gid));
          assert.equal(a.fileid, st.ino);
          assert.equal(a.mtime.sec, Number(st.mtimeMs / 1000n));
          if (!st.isDirectory()) assert.equal(a.size, st.size, `${name} size`);
        }
      }
      assert.equal((await client.lookup(client.root, 'dir')).attr?.type, FileType.DIR);
      assert.equal((await client.lookup(client.root, 'link')).attr?.type, FileType.LNK);
      assert.equal((await client.lookup(client.root, 'fifo')).attr?.type, FileType.FIFO);
      assert.equal((await client.getattr(client.root)).mode & 0o170000, 0o040000);
    });

    it('answers ENOENT for a missing name and ENOTDIR below a file', async () => {
      await assert.rejects(
        client.lookup(client.root, 'absent'),
        (e: unknown) => e instanceof NfsError && e.code === 'ENOENT' && e.syscall === 'lookup' && e.errno === -2,
      );
      const file = await client.lookup(client.root, 'hello.txt');
      await assert.rejects(client.lookup(file.fh, 'x'), { code: 'ENOTDIR' });
      await assert.rejects(client.lookup(client.root, 'a/b'), { code: 'EINVAL' });
    });

    it('reads a symlink target', async () => {
      const { fh } = await client.lookup(client.root, 'link');
      assert.deepEqual(await client.readlink(fh), Buffer.from('hello.txt'));
    });

    it('walks a path component by component', async () => {
      assert.equal((await client.lookupPath('dir/sub/nested.txt')).attr?.size, 7n);
      assert.equal((await client.lookupPath('/dir/./sub/../../hello.txt')).attr?.size, 12n);
      assert.deepEqual((await client.lookupPath('..')).fh, client.root);
      await assert.rejects(client.lookupPath('dir/nope/x'), { code: 'ENOENT' });
    });

    it('lists a directory with READDIRPLUS (attributes and handles) and READDIR', async () => {
      const expected = fs.readdirSync(root, { encoding: 'buffer' });
      const plus = await client.readdirplus(client.root);
      assert.deepEqual(sortedNames(plus.map((e) => e.name)), sortedNames(expected));
      for (const entry of plus) {
        const st = fs.lstatSync(Buffer.from([...Buffer.from(`${root}/`), ...entry.name]), { bigint: true });
        assert.equal(entry.fileid, st.ino);
        assert.ok(entry.attr && entry.fh, entry.name.toString());
        assert.equal(entry.attr.mode, Number(st.mode));
        assert.equal((await client.getattr(entry.fh)).fileid, st.ino);
      }
      const plain = await client.readdir(client.root);
      assert.deepEqual(sortedNames(plain.map((e) => e.name)), sortedNames(expected));
    });

    it('pages through a directory of 2000 entries', async () => {
      const { fh } = await client.lookup(client.root, 'many');
      const expected = fs.readdirSync(path.join(root, 'many'), { encoding: 'buffer' });
      for (const entries of [await client.readdirplus(fh), await client.readdir(fh)]) {
        assert.equal(entries.length, MANY);
        assert.deepEqual(sortedNames(entries.map((e) => e.name)), sortedNames(expected));
      }
    });

    it('keeps file names as raw bytes', async () => {
      const listed = (await client.readdirplus(client.root)).find((e) => e.name.equals(oddName));
      assert.ok(listed, 'non-UTF-8 name listed');
      const { fh } = await client.lookup(client.root, oddName);
      assert.equal((await client.read(fh, 0, 100)).data.toString(), 'odd\n');
    });

    it('reports access rights for the URL identity', async () => {
      const { fh } = await client.lookup(client.root, 'secret');
      assert.equal((await client.access(fh, Access.READ | Access.MODIFY)).access, Access.READ | Access.MODIFY);
      const nobody = await NfsClient.connect(server.url('', 'uid=65534&gid=65534'));
      try {
        const asNobody = await nobody.lookup(nobody.root, 'secret');
        assert.equal((await nobody.access(asNobody.fh, Access.READ | Access.MODIFY)).access, 0);
        await assert.rejects(nobody.read(asNobody.fh, 0, 10), { code: 'EACCES', syscall: 'read' });
        assert.equal((await nobody.access(nobody.root, Access.READ | Access.LOOKUP)).access, Access.READ | Access.LOOKUP);
      } finally {
        await nobody.close();
      }
    });

    it('reports FSSTAT, FSINFO and PATHCONF', async () => {
      const stat = await client.fsstat();
      assert.ok(stat.totalBytes > 0n && stat.freeBytes <= stat.totalBytes);
      const info = await client.fsinfo();
      assert.ok(info.rtmax >= info.rtpref && info.rtpref > 0 && info.dtpref > 0);
      assert.ok(info.maxfilesize > BigInt(BIG_SIZE));
      const conf = await client.pathconf();
      assert.ok(conf.nameMax >= 255 && conf.linkmax > 0, inspect(conf));
      assert.deepEqual([conf.noTrunc, conf.caseInsensitive, conf.casePreserving], [true, false, true]);
    });
  });

  describe('reading', () => {
    it('reads a small file and signals end of file', async () => {
      const { fh } = await client.lookup(client.root, 'hello.txt');
      const all = await client.read(fh, 0, 100);
      assert.equal(all.data.toString(), 'hello world\n');
      assert.equal(all.eof, true);
      const part = await client.read(fh, 6n, 5);
      assert.equal(part.data.toString(), 'world');
      assert.equal(part.eof, false);
      const past = await client.read(fh, 1000, 10);
      assert.equal(past.data.length, 0);
      assert.equal(past.eof, true);
      assert.equal((await client.read((await client.lookup(client.root, 'empty')).fh, 0, 10)).data.length, 0);
    });

    it('reads a multi-MB file by hash: single READs, and streamed with several chunk sizes and depths', async () => {
      const { fh } = await client.lookup(client.root, 'big.bin');
      const chunks: Buffer[] = [];
      for (let offset = 0; offset < BIG_SIZE; offset += 1 << 20) chunks.push(Buffer.from((await client.read(fh, offset, 1 << 20)).data));
      assert.equal(sha256(chunks), sha256(big));
      for (const options of [{}, { chunkSize: 65536, depth: 8 }, { chunkSize: 1000, depth: 3 }, { chunkSize: 4 << 20, depth: 1 }]) {
        assert.equal(sha256(await collect(client.readStream(fh, options))), sha256(big), JSON.stringify(options));
      }
      const range = await collect(client.readStream(fh, { offset: 1_000_000, size: 2_000_000, chunkSize: 300_000 }));
      assert.deepEqual(range, big.subarray(1_000_000, 3_000_000));
      const pastEnd = await collect(client.readStream(fh, { offset: BIG_SIZE - 10, size: 1000 }));
      assert.deepEqual(pastEnd, big.subarray(BIG_SIZE - 10));
    });

    it('keeps 500 requests in flight on one connection and matches every reply to its call', async () => {
      const names = fs.readdirSync(path.join(root, 'many')).slice(0, 50);
      const dir = await client.lookup(client.root, 'many');
      const handles = await Promise.all(names.map((n) => client.lookup(dir.fh, n)));
      const calls = Array.from({ length: 500 }, (_, i) => handles[i % handles.length]);
      const pending = calls.map((h) => client.getattr(h.fh));
      assert.equal(client.inFlight, 500);
      const attrs = await Promise.all(pending);
      attrs.forEach((attr, i) => assert.equal(attr.fileid, calls[i].attr?.fileid));
      assert.equal(client.inFlight, 0);
    });
  });

  describe('changes made on the server', () => {
    it('shows new attributes at the next GETATTR, and new and removed names at the next LOOKUP', async () => {
      const file = path.join(root, 'changing.txt');
      fs.writeFileSync(file, 'v1');
      const { fh, attr } = await client.lookup(client.root, 'changing.txt');
      assert.equal(attr?.size, 2n);
      fs.appendFileSync(file, ' and more');
      fs.chmodSync(file, 0o640);
      const after = await client.getattr(fh);
      assert.equal(after.size, 11n);
      assert.equal(after.mode & 0o777, 0o640);
      assert.equal((await client.read(fh, 0, 100)).data.toString(), 'v1 and more');
      fs.unlinkSync(file);
      await assert.rejects(client.lookup(client.root, 'changing.txt'), { code: 'ENOENT' });
      fs.writeFileSync(path.join(root, 'appeared.txt'), 'new');
      assert.equal((await client.lookup(client.root, 'appeared.txt')).attr?.size, 3n);
      assert.ok((await client.readdirplus(client.root)).some((e) => e.name.toString() === 'appeared.txt'));
    });

    it('answers ESTALE for a handle whose file was deleted and recreated; a new lookup works', async () => {
      const file = path.join(root, 'replaced.txt');
      fs.writeFileSync(file, 'old contents');
      const old = await client.lookup(client.root, 'replaced.txt');
      fs.unlinkSync(file);
      fs.writeFileSync(file, 'new contents!');
      await assert.rejects(client.getattr(old.fh), (e: unknown) => e instanceof NfsError && e.code === 'ESTALE' && e.errno === -116 && e.syscall === 'getattr');
      await assert.rejects(client.read(old.fh, 0, 100), { code: 'ESTALE', syscall: 'read' });
      const fresh = await client.lookup(client.root, 'replaced.txt');
      assert.notDeepEqual(fresh.fh, old.fh);
      assert.equal((await client.read(fresh.fh, 0, 100)).data.toString(), 'new contents!');
    });

    it('serves GETATTR from cache within actimeo, and never with the default actimeo=0', async () => {
      const file = path.join(root, 'cached.txt');
      fs.writeFileSync(file, 'abc');
      const cached = await NfsClient.connect(server.url('', 'actimeo=60'));
      try {
        const { fh } = await cached.lookup(cached.root, 'cached.txt');
        assert.equal((await cached.getattr(fh)).size, 3n);
        fs.appendFileSync(file, 'defg');
        assert.equal((await cached.getattr(fh)).size, 3n, 'cached within actimeo');
        const uncachedFh = (await client.lookup(client.root, 'cached.txt')).fh;
        assert.equal((await client.getattr(uncachedFh)).size, 7n, 'default client sees the change');
      } finally {
        await cached.close();
      }
    });
  });
});
