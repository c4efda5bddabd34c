import assert from 'assert/strict';
import { parseArgs, splitLowerdir } from '../../src/cli/options';
import { connectionId } from '../../src/fuse/mount';
import { OVSHIFT, Scratch } from '../helpers/ovshift';
import { unusedPort } from '../helpers/ports';
import { run } from '../helpers/proc';
import { NFS_VERSIONS, NfsExport } from './fixture';

describe('nfs:// lowers on the command line', function () {
  this.timeout(60000);

  describe('parsing', () => {
    it('keeps "nfs://HOST:PORT" and [IPv6] hosts whole in lowerdir, and still splits at the other colons', () => {
      assert.deepEqual(splitLowerdir('nfs://srv:2049/export'), ['nfs://srv:2049/export']);
      assert.deepEqual(splitLowerdir('/a:nfs://srv:2049/e/sub?mountport=635&soft:/b'), ['/a', 'nfs://srv:2049/e/sub?mountport=635&soft', '/b']);
      assert.deepEqual(splitLowerdir('nfs://[fe80::1]:2049/e:nfs://h/e2:/c'), ['nfs://[fe80::1]:2049/e', 'nfs://h/e2', '/c']);
      assert.deepEqual(splitLowerdir('NFS://h:/b'), ['NFS://h', '/b']);
      assert.deepEqual(splitLowerdir('/x/nfs://y:/z'), ['/x/nfs', '//y', '/z'], 'only a layer that starts with nfs:// is a URL');
      assert.deepEqual(splitLowerdir('nfs://h/a\\:b:/c'), ['nfs://h/a:b', '/c']);
    });

    it('takes --lower nfs://… as it is', () => {
      const cmd = parseArgs(['--lower', 'nfs://h:1/e?mountport=2', '-o', 'lowerdir=nfs://h:3/f:/d', '/m']);
      assert.ok(cmd.kind === 'mount');
      assert.deepEqual(cmd.options.lowers, ['nfs://h:1/e?mountport=2', 'nfs://h:3/f', '/d']);
    });
  });

  describe('refusals', () => {
    let s: Scratch;

    beforeEach(() => {
      s = new Scratch('ovshift-nfs-cli-test-');
    });

    afterEach(async () => {
      if ((await connectionId(s.mnt)) !== undefined) await run('umount', ['-l', s.mnt]);
      s.remove();
    });

    /** Runs ovshift (daemonizing form) and insists on a one-line refusal, exit 1, nothing mounted. */
    async function refused(lowerdir: string): Promise<string> {
      const r = await run(OVSHIFT, ['-o', `lowerdir=${lowerdir},upperdir=${s.upper},workdir=${s.work}`, s.mnt], { timeoutMs: 40000 });
      assert.equal(r.code, 1, r.stderr);
      assert.equal(r.stderr.split('\n').length, 2, `one line: ${r.stderr}`);
      assert.equal(await connectionId(s.mnt), undefined, 'nothing mounted');
      return r.stderr;
    }

    for (const [url, problem] of [
      ['nfs://', /empty host/],
      ['nfs://ho$t/export', /host 'ho\$t'/],
      ['nfs://h:99999/export', /port 99999: expected a port from 1 to 65535/],
      ['nfs://h/export?vers=4', /vers=4: versions are 3, 4\.1 and 4\.2 \(NFSv4\.0 is not supported\)/],
      ['nfs://h/export?nfsvers=2', /nfsvers=2: versions are 3, 4\.1 and 4\.2/],
      ['nfs://h/export?frob=1', /unknown option 'frob'/],
      ['nfs://h/export?timeo=x', /timeo=x: expected deciseconds from 1 to 36000/],
      ['nfs://h/export/../etc', /path component '\.\.' is not allowed/],
    ] as const) {
      it(`refuses the malformed ${url}, naming it`, async () => {
        const stderr = await refused(`${s.lower}:${url}`);
        assert.ok(stderr.startsWith(`ovshift: lower layer 2: invalid NFS URL '${url}'`), stderr);
        assert.match(stderr, problem);
      });
    }

    it('refuses a server that does not answer, naming the URL', async () => {
      const port = await unusedPort();
      const stderr = await refused(`nfs://127.0.0.1:${port}/export?mountport=${port}`);
      assert.match(stderr, new RegExp(`^ovshift: cannot mount nfs://127\\.0\\.0\\.1:${port}/export: .*ECONNREFUSED`));
    });

    for (const vers of NFS_VERSIONS)
      describe(`with a server (NFSv${vers})`, () => {
        let exp: NfsExport;

        before(async () => {
          exp = await NfsExport.start({ vers });
        });

        after(async () => {
          await exp?.stop();
        });

        it('refuses an export or a subdirectory the server does not have, naming the URL', async () => {
          const { url } = exp.area({ file: 'x' });
          const missing = url.replace(/\/area\d+\?/, '/area-missing?');
          assert.match(await refused(missing), /^ovshift: cannot mount nfs:\/\/127\.0\.0\.1:\d+\/.*\/area-missing( over NFSv4\.1)?: .*ENOENT/);
          const notDir = url.replace('?', '/file?');
          assert.match(await refused(notDir), /^ovshift: cannot mount nfs:\/\/.*\/file( over NFSv4\.1)?: .*ENOTDIR/);
        });

        if (vers === '4.1') {
          it('refuses vers=4.1 where the server speaks only NFSv3, naming the URL', async () => {
            const v3only = await NfsExport.start({ vers: '4.1', protocols: '3' });
            try {
              const { url } = v3only.area({ file: 'x' });
              assert.match(await refused(url), /^ovshift: cannot mount nfs:\/\/127\.0\.0\.1:\d+\/.* over NFSv4\.1: .*(not supported|not available)/);
            } finally {
              await v3only.stop();
            }
          });
        }
      });
  });
});
