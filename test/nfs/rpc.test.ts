import assert from 'assert/strict';
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { PortmapError, getTcpPorts } from '../../src/layers/nfs/portmap';
import { RpcClient, RpcClientOptions } from '../../src/layers/nfs/rpc';
import { RpcGarbageArgsError, RpcProcUnavailError, RpcProgMismatchError, RpcProgUnavailError } from '../../src/layers/nfs/rpc-message';
import { NfsTestServer, startNfsServer } from './server';

describe('ONC RPC against nfs-ganesha and rpcbind', function () {
  this.timeout(60_000);
  let root: string;
  let server: NfsTestServer;
  const clients: RpcClient[] = [];

  function client(program: number, version: number, extra: Partial<RpcClientOptions> = {}): RpcClient {
    const rpc = new RpcClient({
      host: '127.0.0.1',
      port: server.port,
      target: { program, version },
      credential: { flavor: 'sys', uid: 0, gid: 0, gids: [], machineName: os.hostname() },
      timeoutMs: 5000,
      retrans: 1,
      soft: true,
      privilegedPort: false,
      label: 'test',
      ...extra,
    });
    clients.push(rpc);
    return rpc;
  }

  before(async () => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'ovshift-nfs-export-'));
    server = await startNfsServer(root);
  });

  afterEach(() => {
    for (const rpc of clients.splice(0)) rpc.close();
  });

  after(async () => {
    await server?.stop();
    fs.rmSync(root, { recursive: true, force: true });
  });

  it('asks the portmapper for the ports of NFS and MOUNT', async () => {
    const ports = await getTcpPorts(
      '127.0.0.1',
      [
        { program: 100003, version: 3, name: 'NFS' },
        { program: 100005, version: 3, name: 'MOUNT' },
      ],
      { timeoutMs: 5000, retrans: 1, privilegedPort: true },
    );
    assert.deepEqual(ports, [server.port, server.mountPort]);
  });

  it('reports a program the portmapper does not know', async () => {
    await assert.rejects(
      getTcpPorts('127.0.0.1', [{ program: 100099, version: 1, name: 'NOTHING' }], { timeoutMs: 5000, retrans: 1, privilegedPort: false }),
      (error: unknown) => error instanceof PortmapError && /NOTHING \(program 100099 v1 over TCP\) is not registered/.test(error.message),
    );
  });

  it('answers a NULL call, AUTH_SYS and AUTH_NONE alike', async () => {
    assert.equal((await client(100003, 3).call(0)).remaining, 0);
    assert.equal((await client(100003, 3, { credential: { flavor: 'none' } }).call(0)).remaining, 0);
  });

  it('tells PROG_UNAVAIL, PROG_MISMATCH, PROC_UNAVAIL and GARBAGE_ARGS apart', async () => {
    await assert.rejects(client(100099, 1).call(0), RpcProgUnavailError);
    await assert.rejects(client(100003, 5).call(0), (e: unknown) => e instanceof RpcProgMismatchError && e.low === 3 && e.high === 4);
    await assert.rejects(client(100003, 3).call(99), (e: unknown) => e instanceof RpcProcUnavailError && e.procedure === 99);
    // GETATTR whose file handle claims more bytes than follow
    await assert.rejects(
      client(100003, 3).call(1, (w) => w.uint32(64)),
      RpcGarbageArgsError,
    );
  });

  it('binds a privileged source port when running as root', async function () {
    if (process.getuid?.() !== 0) this.skip();
    await client(100003, 3, { privilegedPort: true }).call(0);
    const connections = execFileSync('ss', ['-Htnp', 'state', 'established', `( dport = :${server.port} )`], { encoding: 'utf8' })
      .split('\n')
      .filter((line) => line.includes(`pid=${process.pid},`));
    assert.equal(connections.length, 1, connections.join('\n'));
    const sourcePort = Number(/127\.0\.0\.1:(\d+)/.exec(connections[0])?.[1]);
    assert.ok(sourcePort > 0 && sourcePort < 1024, `source port ${sourcePort}`);
  });
});
