import assert from 'assert/strict';
import { createHash, randomBytes } from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { NfsClient, RpcClosedError } from '../../src/layers/nfs';
import { NfsTestServer, startNfsServer } from './server';
import { sleep } from '../helpers/proc';

const LARGE_SIZE = 48 * 1024 * 1024;

function resourceCount(): number {
  return process.getActiveResourcesInfo().filter((r) => r !== 'TTYWrap').length;
}

describe('NfsClient when the server goes away', function () {
  this.timeout(120_000);
  let root: string;
  let server: NfsTestServer;
  let largeHash: string;
  const clients: NfsClient[] = [];

  async function connect(options = ''): Promise<NfsClient> {
    const client = await NfsClient.connect(server.url('', options));
    clients.push(client);
    return client;
  }

  before(async () => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'ovshift-nfs-export-'));
    const large = randomBytes(LARGE_SIZE);
    largeHash = createHash('sha256').update(large).digest('hex');
    fs.writeFileSync(path.join(root, 'large.bin'), large);
    fs.writeFileSync(path.join(root, 'small.txt'), 'small\n');
    server = await startNfsServer(root);
  });

  afterEach(async () => {
    server?.thaw();
    await Promise.all(clients.splice(0).map((c) => c.close()));
    await server?.resume();
  });

  after(async () => {
    await server?.stop();
    fs.rmSync(root, { recursive: true, force: true });
  });

  it('hard mount: a pipelined read survives the server dying and restarting mid-stream, with correct data', async () => {
    const client = await connect();
    const { fh } = await client.lookup(client.root, 'large.bin');
    const hash = createHash('sha256');
    let received = 0;
    let outage: Promise<number> | undefined;
    for await (const chunk of client.readStream(fh, { chunkSize: 256 * 1024, depth: 4 })) {
      hash.update(chunk);
      received += chunk.length;
      if (outage === undefined && received >= 8 * 1024 * 1024) {
        // Reads are in flight when ganesha dies; they wait until it is back.
        outage = (async () => {
          await server.crash();
          await sleep(1500);
          await server.resume();
          return received;
        })();
      }
    }
    assert.ok(outage, 'the restart happened');
    const receivedWhenBack = await outage;
    assert.ok(receivedWhenBack < LARGE_SIZE, `server was back before the stream ended (${receivedWhenBack} bytes read by then)`);
    assert.equal(received, LARGE_SIZE);
    assert.equal(hash.digest('hex'), largeHash);
  });

  it('hard mount: calls sent while the server is down complete once it is back', async () => {
    const client = await connect('timeo=5&retrans=1');
    const { fh } = await client.lookup(client.root, 'small.txt');
    await server.halt();
    const pending = Promise.all(Array.from({ length: 20 }, () => client.getattr(fh)));
    await sleep(2000);
    assert.equal(client.inFlight, 20);
    await server.resume();
    const attrs = await pending;
    assert.ok(attrs.every((a) => a.size === 6n));
  });

  it('hard mount: a frozen server is retried until it answers again', async () => {
    const client = await connect('timeo=5&retrans=1');
    const { fh } = await client.lookup(client.root, 'small.txt');
    await server.freeze();
    const pending = client.read(fh, 0, 100);
    await sleep(2500);
    assert.equal(client.inFlight, 1);
    server.thaw();
    assert.equal((await pending).data.toString(), 'small\n');
  });

  for (const [how, takeDown] of [
    ['is down', () => server.halt()],
    ['is frozen', () => server.freeze()],
  ] as const) {
    it(`soft mount: a call fails with EIO after about timeo × (retrans + 1) when the server ${how}`, async () => {
      const client = await connect('soft&timeo=5&retrans=2');
      const { fh } = await client.lookup(client.root, 'small.txt');
      await takeDown();
      const started = Date.now();
      await assert.rejects(client.getattr(fh), (error: unknown) => {
        assert.ok(error instanceof Error);
        assert.equal((error as Error & { code?: string }).code, 'EIO');
        assert.match(error.message, /not responding/);
        return true;
      });
      const elapsed = Date.now() - started;
      assert.ok(elapsed >= 1400, `failed after ${elapsed} ms, before timeo × (retrans + 1) = 1500 ms`);
      assert.ok(elapsed < 5000, `failed only after ${elapsed} ms`);
    });
  }

  it('close() fails pending calls and leaves no sockets or timers behind', async () => {
    await sleep(200);
    const baseline = resourceCount();
    const client = await NfsClient.connect(server.url());
    const { fh } = await client.lookup(client.root, 'small.txt');
    await server.freeze();
    const pending = assert.rejects(client.getattr(fh), RpcClosedError);
    await client.close();
    await pending;
    await assert.rejects(client.getattr(fh), { code: 'ECANCELED' });
    server.thaw();
    await sleep(200);
    assert.equal(resourceCount(), baseline, process.getActiveResourcesInfo().join(', '));
  });
});
