/**
 * An NFSv3 open (Nfs3Lower.openEntry) against nfs-ganesha, its calls counted by a proxy: the
 * close-to-open LOOKUP and, when reads are expected, a READ of the first bytes leave together,
 * and those bytes serve the first read only when the LOOKUP finds the object expected.
 */
import assert from 'assert/strict';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { NfsClient } from '../../src/layers/nfs';
import { Nfs3Lower } from '../../src/layers/nfs/v3-lower';
import { NFS3_PROC, NFS_PROGRAM, startRpcCounter, type RpcCounter } from '../helpers/rpc-counter';
import { NfsTestServer, startNfsServer } from './server';

describe('NFSv3 open: the LOOKUP and the first READ together', function () {
  this.timeout(60_000);
  let root: string;
  let server: NfsTestServer;
  let counter: RpcCounter;
  let client: NfsClient;
  let lower: Nfs3Lower;

  before(async () => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'ovshift-nfs-open-'));
    fs.chmodSync(root, 0o755);
    server = await startNfsServer(root);
    counter = await startRpcCounter(server.port);
    client = await NfsClient.connect(server.url().replace(`127.0.0.1:${server.port}/`, `127.0.0.1:${counter.port}/`));
    lower = new Nfs3Lower(client);
  });

  after(async () => {
    await client?.close();
    await counter?.stop();
    await server?.stop();
    fs.rmSync(root, { recursive: true, force: true });
  });

  const reads = (): number => counter.calls(NFS_PROGRAM).get(NFS3_PROC.READ) ?? 0;
  const lookups = (): number => counter.calls(NFS_PROGRAM).get(NFS3_PROC.LOOKUP) ?? 0;

  async function handleOf(name: string): Promise<Buffer> {
    return (await client.lookup(client.root, name)).fh;
  }

  /** Reads as the overlay does: up to 4 KiB from the start, the size it knows the file by given. */
  async function readAll(
    file: { read(buf: Buffer, offset: number, length: number, position: number, knownEnd?: number): Promise<number> },
    size: number,
  ): Promise<string> {
    const buf = Buffer.alloc(4096);
    const n = await file.read(buf, 0, buf.length, 0, size);
    return buf.toString('utf8', 0, n);
  }

  /** Writes `name` on the server, then opens it as the overlay would, counting from the open on. */
  async function openNew(name: string, content: string, readSoon: boolean) {
    fs.writeFileSync(path.join(root, name), content);
    const fh = await handleOf(name);
    counter.reset();
    const opened = await lower.openEntry(client.root, Buffer.from(name), fh, readSoon);
    assert.ok(opened !== null);
    return opened.file;
  }

  it('reads the first bytes with the open, and the first read asks the server nothing', async () => {
    const file = await openNew('same', 'the same object', true);
    assert.equal(lookups(), 1);
    assert.equal(reads(), 1, 'the READ left with the LOOKUP');
    assert.equal(await readAll(file, 15), 'the same object');
    assert.equal(reads(), 1, 'the read was answered from it');
    await file.close();
  });

  it('reads nothing with the open when no read is expected', async () => {
    const file = await openNew('cached', 'pages the kernel keeps', false);
    assert.equal(reads(), 0);
    assert.equal(await readAll(file, 22), 'pages the kernel keeps');
    assert.equal(reads(), 1, 'the read went to the server');
    await file.close();
  });

  it('never serves the bytes of the object a name led to before: replaced on the server, the open finds nothing', async () => {
    fs.writeFileSync(path.join(root, 'replaced'), 'old bytes');
    const old = await handleOf('replaced');
    // The old object lives on under another name (a READ of its handle still gets its bytes);
    // another file renamed over the name: a new object (new handle) at the same name.
    fs.linkSync(path.join(root, 'replaced'), path.join(root, 'replaced.kept'));
    fs.writeFileSync(path.join(root, 'replaced.new'), 'new bytes');
    fs.renameSync(path.join(root, 'replaced.new'), path.join(root, 'replaced'));
    assert.equal(await lower.openEntry(client.root, Buffer.from('replaced'), old, true), null);
    const now = await handleOf('replaced');
    const opened = await lower.openEntry(client.root, Buffer.from('replaced'), now, true);
    assert.ok(opened !== null);
    assert.equal(await readAll(opened.file, 9), 'new bytes');
    await opened.file.close();
  });

  it('fails the open of a name removed on the server, whatever the READ beside it got', async () => {
    fs.writeFileSync(path.join(root, 'removed'), 'gone soon');
    const fh = await handleOf('removed');
    fs.unlinkSync(path.join(root, 'removed'));
    await assert.rejects(lower.openEntry(client.root, Buffer.from('removed'), fh, true), { code: 'ENOENT' });
  });
});
