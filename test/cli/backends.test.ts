import assert from 'assert/strict';
import { realpathSync, symlinkSync } from 'fs';
import { join } from 'path';
import { checkLayout, LayoutError } from '../../src/cli/layout';
import { parseArgs } from '../../src/cli/options';
import { backendOf, directoryBackend, LOWER_BACKENDS, nfsBackend } from '../../src/layers/backends';
import type { ReadableLayer } from '../../src/layers/types';
import { isDirectoryLower, type LowerLocation } from '../../src/layers/lower-location';
import { openLowers } from '../../src/layers/lowers';
import { Scratch } from '../helpers/ovshift';

describe('lower layer backends', () => {
  it('has one backend per scheme and one for directories', () => {
    const schemes = LOWER_BACKENDS.map((b) => b.scheme);
    assert.equal(new Set(schemes).size, schemes.length);
    assert.equal(schemes.filter((s) => s === 'directory').length, 1);
  });

  it('gives a lower to the backend whose scheme it starts with (any case), else to the directory backend', () => {
    assert.equal(backendOf('nfs://h/e'), nfsBackend);
    assert.equal(backendOf('NFS://h:1/e'), nfsBackend);
    assert.equal(backendOf('nfs://'), nfsBackend);
    for (const dir of ['/a', 'rel/dir', '/x/nfs://y', 'nfs:/x', 'nfs', 'a:b://c']) {
      assert.equal(backendOf(dir), directoryBackend, dir);
      assert.ok(isDirectoryLower(dir), dir);
    }
    assert.ok(!isDirectoryLower('nfs://h/e'));
  });

  describe('layout', () => {
    let s: Scratch;

    beforeEach(() => {
      s = new Scratch('ovshift-backends-test-');
    });

    afterEach(() => s.remove());

    async function layout(lowerdir: string) {
      const cmd = parseArgs(['-o', `lowerdir=${lowerdir},upperdir=${s.upper},workdir=${s.work}`, s.mnt]);
      assert.ok(cmd.kind === 'mount');
      return checkLayout(cmd.options);
    }

    it('checks each lower by its backend: a directory resolved, an nfs:// URL only parsed', async () => {
      const link = join(s.root, 'link');
      symlinkSync(s.lower, link);
      const { lowers } = await layout(`${link}:nfs://127.0.0.1:1/export?mountport=1&soft`);
      const real = realpathSync(s.lower);
      assert.deepEqual(
        lowers.map((l) => [l.kind, l.description, l.directory]),
        [
          ['directory', real, real],
          ['nfs', 'nfs://127.0.0.1:1/export', undefined],
        ],
      );
    });

    it('refuses as before, naming the layer', async () => {
      await assert.rejects(
        layout(`${s.lower}:nfs://h:99999/e`),
        (e: Error) => e instanceof LayoutError && e.message.startsWith("lower layer 2: invalid NFS URL 'nfs://h:99999/e'"),
      );
      await assert.rejects(layout(`${s.root}/nowhere`), (e: Error) => e instanceof LayoutError && e.message === `lower layer ${s.root}/nowhere does not exist`);
      await assert.rejects(layout(`${s.mnt}`), /mountpoint .* is inside lower layer/);
    });
  });

  describe('opening', () => {
    function fake(name: string, closed: string[]): LowerLocation {
      return {
        kind: 'fake',
        description: name,
        directory: undefined,
        sharedLocks: 'none',
        open: async (label) => ({ label, close: () => void closed.push(name) }) as unknown as ReadableLayer,
      };
    }

    it('labels the layers by their descriptions and closes every one', async () => {
      const closed: string[] = [];
      const opened = await openLowers([fake('a', closed), fake('b', closed)]);
      assert.deepEqual(
        opened.layers.map((l) => l.label),
        ['lower layer 1 (a)', 'lower layer 2 (b)'],
      );
      await opened.close();
      assert.deepEqual(closed, ['a', 'b']);
    });

    it('closes what was opened when another lower fails to open, and says why', async () => {
      const closed: string[] = [];
      const failing: LowerLocation = {
        kind: 'fake',
        description: 'x',
        directory: undefined,
        sharedLocks: 'none',
        open: async () => {
          throw new Error('cannot mount x');
        },
      };
      await assert.rejects(openLowers([fake('a', closed), failing, fake('c', closed)]), /cannot mount x/);
      assert.deepEqual(closed, ['a', 'c']);
    });
  });
});
