import assert from 'assert/strict';
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Access, NfsClient } from '../../src/layers/nfs';
import { NfsServerInfo, NfsTestServer, isAlive, nfsServerScript, startNfsServer } from './server';

const script = nfsServerScript();

/** Local addresses of every listening TCP and bound UDP socket owned by `pid`. */
function listeningAddresses(pid: number): string[] {
  const out = execFileSync('ss', ['-H', '-ltunp'], { encoding: 'utf8' });
  return out
    .split('\n')
    .filter((line) => line.includes(`pid=${pid},`))
    .map((line) => line.trim().split(/\s+/)[4]);
}

function isLoopback(address: string): boolean {
  return /^(127\.0\.0\.1|\[::1\]|\[::ffff:127\.0\.0\.1\]):\d+$/.test(address);
}

describe('scripts/nfs-server', function () {
  this.timeout(60_000);
  let root: string;

  before(() => {
    root = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'ovshift-nfs-export-')));
    fs.writeFileSync(path.join(root, 'file'), 'data');
  });

  after(() => fs.rmSync(root, { recursive: true, force: true }));

  describe('run (through the test helper)', () => {
    let server: NfsTestServer;
    let info: NfsServerInfo;

    before(async () => {
      server = await startNfsServer(root);
      info = server.info;
    });

    after(async () => {
      await server?.stop();
    });

    it('listens on loopback only, TCP only for NFS, MOUNT and NLM', () => {
      const ganesha = listeningAddresses(info.ganeshaPid);
      assert.deepEqual(ganesha.map((a) => a.replace(/^.*:/, '')).sort(), [String(info.port), String(info.mountPort), String(info.nlmPort)].sort());
      assert.ok(ganesha.every(isLoopback), ganesha.join(' '));
      if (info.rpcbindPid !== null) {
        const rpcbind = listeningAddresses(info.rpcbindPid);
        assert.ok(rpcbind.length > 0);
        assert.ok(rpcbind.every(isLoopback), rpcbind.join(' '));
      }
    });

    it('exports the directory read-write with root not squashed', async () => {
      const client = await NfsClient.connect(server.url());
      try {
        const { attr } = await client.lookup(client.root, 'file');
        assert.equal(attr?.size, 4n);
        const all = Access.READ | Access.LOOKUP | Access.MODIFY | Access.EXTEND | Access.DELETE;
        assert.equal((await client.access(client.root, all)).access, all);
      } finally {
        await client.close();
      }
    });

    it('stops exactly the processes it started', async () => {
      const pids = [info.supervisorPid, info.ganeshaPid, info.rpcbindPid].filter((p): p is number => p !== null);
      assert.ok(pids.every(isAlive));
      await server.stop();
      assert.deepEqual(pids.filter(isAlive), []);
      assert.equal(fs.existsSync(info.stateDir), false, 'state directory removed');
    });
  });

  describe('start and stop', () => {
    let started: NfsServerInfo | undefined;

    afterEach(() => {
      // Only if the test failed half-way: stop what the script reported.
      if (started !== undefined && isAlive(started.supervisorPid)) execFileSync(script, ['stop', started.stateDir]);
    });

    it('starts a background server, prints its PIDs and ports, and stop ends them and removes the temporary state', async () => {
      started = JSON.parse(execFileSync(script, ['start', root], { encoding: 'utf8' })) as NfsServerInfo;
      const { supervisorPid, ganeshaPid, rpcbindPid, stateDir } = started;
      assert.ok(isAlive(supervisorPid) && isAlive(ganeshaPid));
      assert.ok(fs.existsSync(path.join(stateDir, 'ganesha.log')));
      const client = await NfsClient.connect(`nfs://127.0.0.1${root}`);
      assert.equal((await client.lookup(client.root, 'file')).attr?.size, 4n);
      await client.close();
      execFileSync(script, ['stop', stateDir]);
      assert.deepEqual(
        [supervisorPid, ganeshaPid, rpcbindPid].filter((p): p is number => p !== null && isAlive(p)),
        [],
      );
      assert.equal(fs.existsSync(stateDir), false);
    });

    it('refuses a directory that does not exist', () => {
      assert.throws(
        () => execFileSync(script, ['run', path.join(root, 'missing')], { stdio: 'pipe' }),
        (error: unknown) => /cannot export/.test(String((error as { stderr?: Buffer }).stderr)),
      );
    });
  });
});
