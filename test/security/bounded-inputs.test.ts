/**
 * Every number a mount takes has a documented range and is refused outside it: the real
 * `ovshift` command exits 1 with one line on stderr naming the option and the range, and
 * nothing is mounted. A fault rule given at runtime (`ovshift ctl MNT inject add`) that is out
 * of range answers an error and is not added. (Before, inject=stat:**:delay=99999999999 was
 * taken and became a 1 ms delay: Node's timers fire at once beyond 2^31-1 ms.)
 */
import assert from 'assert/strict';
import { writeFileSync } from 'fs';
import { join } from 'path';
import { connectionId } from '../../src/fuse/mount';
import { OVSHIFT, Scratch } from '../helpers/ovshift';
import { run, type RunResult } from '../helpers/proc';

/** [option as given to -o, what the one line must say after "ovshift: "] */
const REFUSED: Array<[string, string]> = [
  ['upper_timeout=99999999999', 'option upper_timeout=99999999999: expected seconds from 0 to 31536000'],
  ['lower_timeout=31536000.5', 'option lower_timeout=31536000.5: expected seconds from 0 to 31536000'],
  ['lower_timeout=-1', 'option lower_timeout=-1: expected seconds from 0 to 31536000'],
  ['upper_size=0', 'option upper_size=0: expected a size from 4k to 1p (k, m, g, t, p: powers of 1024), or 1% to 100% of RAM'],
  ['upper_size=99999999999p', 'option upper_size=99999999999p: expected a size from 4k to 1p (k, m, g, t, p: powers of 1024), or 1% to 100% of RAM'],
  ['upper_size=1000%', 'option upper_size=1000%: expected a size from 4k to 1p (k, m, g, t, p: powers of 1024), or 1% to 100% of RAM'],
  ['squash_to_uid=4294967295', 'option squash_to_uid=4294967295: expected an id from 0 to 4294967294'],
  ['squash_to_gid=99999999999', 'option squash_to_gid=99999999999: expected an id from 0 to 4294967294'],
  ['uidmapping=0:100000:4294967295', 'option uidmapping: range 0:100000:4294967295 goes past 4294967294 on the view side'],
  ['gidmapping=0:100000:0', 'option gidmapping: range 0:100000:0 has count 0'],
  ['inject=stat:**:delay=99999999999', 'option inject: fault rule "stat:**:delay=99999999999": delay=99999999999: expected milliseconds from 0 to 3600000'],
  ['inject=read:**:EIO:count=0', 'option inject: fault rule "read:**:EIO:count=0": count=0: expected a count from 1 to 1000000000'],
  ['inject=read:**:EIO:p=2', 'option inject: fault rule "read:**:EIO:p=2": p=2: expected a probability from 0 to 1'],
  ['inject=stat@3:**:EIO', 'option inject: fault rule "stat@3:**:EIO": layer 3: expected a lower layer number from 1 to 2'],
];

/** nfs:// URL options, checked before anything is mounted (no server is reached for them). */
const REFUSED_NFS: Array<[string, string]> = [
  ['nfs://127.0.0.1:0/export', 'port 0: expected a port from 1 to 65535'],
  ['nfs://127.0.0.1/export?mountport=65536', 'mountport=65536: expected a port from 1 to 65535'],
  ['nfs://127.0.0.1/export?uid=4294967295', 'uid=4294967295: expected an id from 0 to 4294967294'],
  ['nfs://127.0.0.1/export?gid=99999999999', 'gid=99999999999: expected an id from 0 to 4294967294'],
  ['nfs://127.0.0.1/export?timeo=0', 'timeo=0: expected deciseconds from 1 to 36000'],
  ['nfs://127.0.0.1/export?timeo=99999999999', 'timeo=99999999999: expected deciseconds from 1 to 36000'],
  ['nfs://127.0.0.1/export?retrans=1001', 'retrans=1001: expected retransmissions from 0 to 1000'],
  ['nfs://127.0.0.1/export?actimeo=3601', 'actimeo=3601: expected seconds from 0 to 3600'],
  ['nfs://127.0.0.1/export?dircache=99999999999', 'dircache=99999999999: expected seconds from 0 to 3600'],
];

/** Out-of-range rules for `ovshift ctl MNT inject add` on a mount with two lowers: [given, refused rule, problem]. */
const REFUSED_RULES: Array<[string, string, string]> = [
  ['stat:**:delay=99999999999', 'stat:**:delay=99999999999', 'delay=99999999999: expected milliseconds from 0 to 3600000'],
  ['stat:**:delay=3600001', 'stat:**:delay=3600001', 'delay=3600001: expected milliseconds from 0 to 3600000'],
  ['read:**:EIO:count=0', 'read:**:EIO:count=0', 'count=0: expected a count from 1 to 1000000000'],
  ['read:**:EIO:count=99999999999', 'read:**:EIO:count=99999999999', 'count=99999999999: expected a count from 1 to 1000000000'],
  ['read:**:EIO:p=1.5', 'read:**:EIO:p=1.5', 'p=1.5: expected a probability from 0 to 1'],
  ['stat@0:**:EIO', 'stat@0:**:EIO', 'layer 0: expected a lower layer number from 1 to the number of lower layers'],
  ['stat@3:**:EIO', 'stat@3:**:EIO', 'layer 3: expected a lower layer number from 1 to 2'],
  // Several rules in one command: the good one before the refused one is not added either.
  ['stat:a:EIO;stat:**:delay=99999999999', 'stat:**:delay=99999999999', 'delay=99999999999: expected milliseconds from 0 to 3600000'],
];

function assertOneLineRefusal(r: RunResult, what: string, line: string): void {
  assert.equal(r.code, 1, `${what}: exit status (stderr: ${r.stderr})`);
  assert.equal(r.stderr, `ovshift: ${line}\n`, `${what}: one line naming the option and its range`);
}

describe('security: bounded inputs (issue 11)', function () {
  this.timeout(60000);
  let s: Scratch;
  let lower2: string;

  beforeEach(() => {
    s = new Scratch();
    lower2 = s.dir('lower2');
    writeFileSync(join(s.lower, 'f'), 'lower');
  });

  afterEach(async () => {
    // A value that was taken (the bug) left a mount made by a daemon of its own.
    if ((await connectionId(s.mnt)) !== undefined) await run('umount', [s.mnt]);
    await s.dispose();
  });

  it('refuses each numeric mount option outside its range, before anything is mounted', async () => {
    const taken: string[] = [];
    for (const [opt, line] of REFUSED) {
      const args = ['-o', `lowerdir=${s.lower}:${lower2},upperdir=${s.upper},workdir=${s.work},${opt}`, s.mnt];
      const r = await run(OVSHIFT, args);
      if (r.code === 0) {
        taken.push(opt);
        await run('umount', [s.mnt]);
        continue;
      }
      assertOneLineRefusal(r, opt, line);
      assert.equal(await connectionId(s.mnt), undefined, `${opt}: nothing mounted`);
    }
    assert.deepEqual(taken, [], 'mounted with values out of range');
  });

  it('refuses them in the foreground form and from OVSHIFT_OPTIONS alike', async () => {
    const [opt, line] = REFUSED[0]!;
    const fg = await run(OVSHIFT, ['-f', '-o', `lowerdir=${s.lower},${opt}`, s.mnt]);
    assertOneLineRefusal(fg, `-f ${opt}`, line);
    const env = await run(OVSHIFT, ['-o', `lowerdir=${s.lower}`, s.mnt], { env: { ...process.env, OVSHIFT_OPTIONS: opt } });
    assertOneLineRefusal(env, `OVSHIFT_OPTIONS=${opt}`, line);
    assert.equal(await connectionId(s.mnt), undefined, 'nothing mounted');
  });

  it('refuses each nfs:// URL option outside its range, naming the URL, before anything is mounted', async () => {
    for (const [url, problem] of REFUSED_NFS) {
      const r = await run(OVSHIFT, ['-o', `lowerdir=${s.lower}:${url},upperdir=${s.upper},workdir=${s.work}`, s.mnt], { timeoutMs: 30000 });
      assertOneLineRefusal(r, url, `lower layer 2: invalid NFS URL '${url}': ${problem}`);
      assert.equal(await connectionId(s.mnt), undefined, `${url}: nothing mounted`);
    }
  });

  it('answers an out-of-range rule given at runtime with an error, and adds nothing', async () => {
    await s.mount(`lowerdir=${lower2}`);
    for (const [rule, refused, problem] of REFUSED_RULES) {
      const r = await run(OVSHIFT, ['ctl', s.mnt, 'inject', 'add', rule]);
      assertOneLineRefusal(r, `inject add ${rule}`, `fault rule "${refused}": ${problem}`);
      const list = await run(OVSHIFT, ['ctl', s.mnt, 'inject', 'list']);
      assert.equal(list.code, 0, list.stderr);
      assert.equal(list.stdout, '', `inject add ${rule}: no rule in force`);
    }
    // In range, the same rules are taken.
    const ok = await run(OVSHIFT, ['ctl', s.mnt, 'inject', 'add', 'stat@2:nothing:delay=3600000:count=1000000000;read@1:nothing:EIO:p=1']);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal((await run(OVSHIFT, ['ctl', s.mnt, 'inject', 'list'])).stdout.split('\n').filter((l) => l !== '').length, 2);
    assert.equal((await run('cat', [join(s.mnt, 'f')])).stdout, 'lower', 'the mount serves on');
  });
});
