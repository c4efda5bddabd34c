/**
 * SIGTERM and SIGINT end the daemon promptly even while another mount namespace holds a copy
 * of the mount (a process started with `unshare -m` while it existed): the daemon unmounts
 * here and then ends the FUSE connection, as fuse-overlayfs does. A plain umount here, with a
 * copy elsewhere, leaves the daemon serving the copy.
 */
import assert from 'assert/strict';
import { readlinkSync, writeFileSync } from 'fs';
import { join } from 'path';
import { connectionId } from '../../src/fuse/mount';
import { Scratch, type Daemon } from '../helpers/ovshift';
import { Background, run, sleep, type RunResult } from '../helpers/proc';

/** How long a signalled daemon may take to exit. */
const EXIT_WITHIN_MS = 1000;

/** Starts a process in a mount namespace of its own, holding a copy of every current mount. */
async function holdCopy(): Promise<Background> {
  const holder = new Background('unshare', ['-m', '--propagation', 'private', 'sleep', '60']);
  const ours = readlinkSync('/proc/self/ns/mnt');
  for (let i = 0; i < 200; i++) {
    try {
      if (readlinkSync(`/proc/${holder.child.pid}/ns/mnt`) !== ours) return holder;
    } catch {
      // Not started yet.
    }
    await sleep(10);
  }
  await holder.stop();
  throw new Error(`unshare -m did not make a mount namespace: ${holder.stderr}`);
}

function readInCopy(holder: Background, file: string): Promise<RunResult> {
  return run('nsenter', ['-t', String(holder.child.pid), '-m', 'cat', file], { timeoutMs: 5000 });
}

/** Sends `sig` and resolves with the exit status and how long the daemon took to exit. */
async function signalAndWait(d: Daemon, sig: NodeJS.Signals): Promise<{ code: number | null; ms: number | undefined }> {
  const start = Date.now();
  d.child.kill(sig);
  const exit = await Promise.race([d.exited, sleep(EXIT_WITHIN_MS + 500).then(() => undefined)]);
  return { code: exit?.code ?? null, ms: exit ? Date.now() - start : undefined };
}

describe('security: signals with copies of the mount in other mount namespaces', function () {
  this.timeout(20000);
  let s: Scratch;
  let holder: Background | undefined;

  beforeEach(() => {
    s = new Scratch('ovshift-signals-');
    writeFileSync(join(s.lower, 'file'), 'from the lower\n');
  });

  afterEach(async () => {
    await holder?.stop();
    holder = undefined;
    await s.dispose();
  });

  for (const sig of ['SIGTERM', 'SIGINT'] as const) {
    it(`keeps serving a copy after umount here, and ends within a second on ${sig}`, async () => {
      const d = await s.mount();
      holder = await holdCopy();
      const um = await run('umount', [s.mnt]);
      assert.equal(um.code, 0, um.stderr);
      assert.equal(await connectionId(s.mnt), undefined, 'unmounted here');
      await sleep(300);
      assert.equal(d.child.exitCode, null, `the daemon serves the copy: ${d.stderr()}`);
      const before = await readInCopy(holder, join(s.mnt, 'file'));
      assert.equal(before.stdout, 'from the lower\n', before.stderr);

      const { code, ms } = await signalAndWait(d, sig);
      assert.ok(ms !== undefined && ms <= EXIT_WITHIN_MS, `exited within ${EXIT_WITHIN_MS} ms of ${sig} (took ${ms ?? 'longer'})`);
      assert.equal(code, 0, d.stderr());
      const after = await readInCopy(holder, join(s.mnt, 'file'));
      assert.notEqual(after.code, 0, 'the copy no longer serves');
      assert.match(after.stderr, /Transport endpoint is not connected|Software caused connection abort/);
    });
  }

  it('ends within a second on SIGTERM while mounted here and copied elsewhere, leaving nothing mounted here', async () => {
    const d = await s.mount();
    holder = await holdCopy();
    const { code, ms } = await signalAndWait(d, 'SIGTERM');
    assert.ok(ms !== undefined && ms <= EXIT_WITHIN_MS, `exited within ${EXIT_WITHIN_MS} ms (took ${ms ?? 'longer'})`);
    assert.equal(code, 0, d.stderr());
    assert.equal(await connectionId(s.mnt), undefined, 'nothing mounted here');
    const copy = await readInCopy(holder, join(s.mnt, 'file'));
    assert.notEqual(copy.code, 0, 'the copy no longer serves');
    assert.match(copy.stderr, /Transport endpoint is not connected|Software caused connection abort/);
  });

  it('still ends on a plain umount when no copy exists', async () => {
    const d = await s.mount();
    assert.equal((await run('umount', [s.mnt])).code, 0);
    const exit = await Promise.race([d.exited, sleep(5000).then(() => undefined)]);
    assert.equal(exit?.code, 0, d.stderr());
  });
});
