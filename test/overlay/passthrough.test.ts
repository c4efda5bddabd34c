/**
 * FUSE passthrough for upper files, the mount's read-ahead and pooled read buffers: what a
 * user sees is the same bytes and metadata as without them, and `ovshift ctl status` tells
 * which files the kernel serves itself.
 */
import assert from 'assert/strict';
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import { join } from 'path';
import { OVSHIFT, Scratch } from '../helpers/ovshift';
import { python, run } from '../helpers/proc';
import { waitUntil } from '../helpers/wait';
import { makeTree, read, sha256 } from '../helpers/tree';

/** Python prelude: the mountpoint and ovshift from argv, and status() for the passthrough files line of ctl status. */
const STATUS_PY = `
import os, subprocess, sys
mnt, ovshift = sys.argv[1:3]
def status():
    out = subprocess.run([ovshift, 'ctl', mnt, 'status'], capture_output=True, text=True).stdout
    return [l for l in out.splitlines() if l.startswith('passthrough files')][0]
`;

async function passthroughFiles(mnt: string): Promise<string> {
  const r = await run(OVSHIFT, ['ctl', mnt, 'status']);
  assert.equal(r.code, 0, r.stderr);
  const m = /passthrough files (\S+)/.exec(r.stdout);
  assert.ok(m, r.stdout);
  return m[1]!;
}

describe('overlay: passthrough and read paths', function () {
  this.timeout(60000);
  let s: Scratch;

  beforeEach(() => {
    s = new Scratch();
  });

  afterEach(() => s.dispose());

  it('lets the kernel serve open upper files itself, with the same bytes, sizes and mmap as through the daemon', async () => {
    await s.mount();
    const r = await python(
      `
import mmap, os, sys
p = sys.argv[1] + '/new'
fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o644)
os.write(fd, b'x' * 100000)
print(os.fstat(fd).st_size, os.stat(p).st_size)
os.pwrite(fd, b'HEAD', 0)
m = mmap.mmap(fd, 0)
m[4:8] = b'MMAP'
m.flush(); m.close()
a = os.open(p, os.O_WRONLY | os.O_APPEND)
os.write(a, b'TAIL')
print(os.pread(fd, 8, 0).decode(), os.pread(fd, 4, 100000).decode(), os.fstat(fd).st_size)
`,
      [s.mnt],
    );
    assert.equal(r.stdout, '100000 100000\nHEADMMAP TAIL 100004\n', r.stderr);
    const upper = fs.readFileSync(join(s.upper, 'new'));
    assert.equal(upper.length, 100004);
    assert.equal(upper.subarray(0, 8).toString(), 'HEADMMAP');
  });

  it('reports passthrough files in ctl status while they are open, and none after close', async () => {
    makeTree(s.lower, { low: 'lower bytes' });
    await s.mount();
    fs.writeFileSync(join(s.mnt, 'up'), 'upper bytes');
    const fd = fs.openSync(join(s.mnt, 'up'), 'r+');
    const lowFd = fs.openSync(join(s.mnt, 'low'), 'r');
    try {
      assert.equal(await passthroughFiles(s.mnt), '1', 'the upper file, not the lower one');
      assert.equal(fs.readFileSync(fd, 'utf8'), 'upper bytes');
    } finally {
      fs.closeSync(fd);
      fs.closeSync(lowFd);
    }
    await waitUntil(async () => (await passthroughFiles(s.mnt)) === '0', { what: 'no passthrough file left open' });
    assert.equal(await passthroughFiles(s.mnt), '0');
  });

  it('keeps a file opened before its copy-up with the daemon, so every handle sees the copy', async () => {
    makeTree(s.lower, { f: 'lower content' });
    await s.mount();
    const r = await python(
      `${STATUS_PY}ro = os.open(mnt + '/f', os.O_RDONLY)
rw = os.open(mnt + '/f', os.O_RDWR)
os.pwrite(rw, b'UPPER', 0)
late = os.open(mnt + '/f', os.O_RDONLY)
print(os.pread(ro, 100, 0).decode(), os.pread(late, 100, 0).decode(), status())
for fd in (ro, rw, late): os.close(fd)
fresh = os.open(mnt + '/f', os.O_RDWR)
os.pwrite(fresh, b'FRESH', 0)
print(os.pread(fresh, 100, 0).decode(), status())
os.close(fresh)
`,
      [s.mnt, OVSHIFT],
    );
    assert.equal(r.stdout, 'UPPER content UPPER content passthrough files 0\nFRESH content passthrough files 1\n', r.stderr);
    assert.equal(read(join(s.upper, 'f')), 'FRESH content');
    assert.equal(read(join(s.lower, 'f')), 'lower content');
  });

  it('copies a lower file up when it is opened write-only, so that handle is a passthrough one from the start', async () => {
    makeTree(s.lower, { 'log/app.log': 'line 1\n', 'log/untouched': 'u' });
    await s.mount();
    const r = await python(
      `${STATUS_PY}fd = os.open(mnt + '/log/app.log', os.O_WRONLY | os.O_APPEND)
for i in range(2, 5): os.write(fd, b'line %d\\n' % i)
print(status())
os.close(fd)
print(open(mnt + '/log/app.log').read(), end='')
`,
      [s.mnt, OVSHIFT],
    );
    assert.equal(r.stdout, 'passthrough files 1\nline 1\nline 2\nline 3\nline 4\n', r.stderr);
    assert.equal(read(join(s.upper, 'log/app.log')), 'line 1\nline 2\nline 3\nline 4\n');
    assert.equal(read(join(s.lower, 'log/app.log')), 'line 1\n', 'the lower keeps its file');
    assert.equal(fs.existsSync(join(s.upper, 'log/untouched')), false, 'what is not opened for writing stays in the lower');
  });

  it('clears set-user-ID and set-group-ID when another user writes a passthrough file', async () => {
    await s.mount();
    const p = join(s.mnt, 'tool');
    fs.writeFileSync(p, 'binary');
    fs.chmodSync(p, 0o6777);
    const holder = fs.openSync(p, 'r');
    try {
      execFileSync('setpriv', ['--reuid=1234', '--regid=1234', '--clear-groups', 'sh', '-c', `printf more >> ${p}`]);
      assert.equal(fs.statSync(p).mode & 0o7777, 0o0777);
      assert.equal(fs.statSync(join(s.upper, 'tool')).mode & 0o7777, 0o0777);
      assert.equal(read(p), 'binarymore');
    } finally {
      fs.closeSync(holder);
    }
  });

  it('clears set-group-ID without group execute when a user outside the group writes, truncates or fallocates; keeps it for one inside (generic/683-687)', async () => {
    await s.mount();
    fs.mkdirSync(join(s.mnt, 'd'), { mode: 0o777 });
    fs.chmodSync(join(s.mnt, 'd'), 0o777);
    const as = (uid: number, groups: string, cmd: string): void => {
      execFileSync('setpriv', [`--reuid=${uid}`, `--regid=${uid}`, groups, 'sh', '-c', cmd]);
    };
    const modes: string[] = [];
    for (const [op, cmd] of [
      ['write', 'printf more >> F'],
      ['truncate', 'truncate -s 1 F'],
      ['fallocate', 'fallocate -l 65536 F'],
    ] as const) {
      const f = join(s.mnt, 'd', op);
      fs.writeFileSync(f, 'data');
      fs.chownSync(f, 0, 4321);
      fs.chmodSync(f, 0o6666);
      as(1234, '--clear-groups', cmd.replace('F', f));
      modes.push(`${op} outside ${(fs.statSync(f).mode & 0o7777).toString(8)}`);
      fs.chmodSync(f, 0o2666);
      as(1234, '--groups=4321', cmd.replace('F', f));
      modes.push(`${op} inside ${(fs.statSync(f).mode & 0o7777).toString(8)}`);
    }
    assert.deepEqual(modes, [
      'write outside 666',
      'write inside 2666',
      'truncate outside 666',
      'truncate inside 2666',
      'fallocate outside 666',
      'fallocate inside 2666',
    ]);
  });

  it('frees the space of a file removed through the mount at once, though files closed stay ready for their next open', async () => {
    await s.mount();
    const free = (): number => {
      const st = fs.statfsSync(s.upper);
      return st.bavail * st.bsize;
    };
    const before = free();
    const size = 64 * 1024 * 1024;
    const p = join(s.mnt, 'big');
    fs.writeFileSync(p, Buffer.alloc(size, 1));
    // Opened and closed again: its backing file is kept for the next open.
    assert.equal(fs.readFileSync(p).length, size);
    assert.ok(free() < before - size / 2, 'the file takes space');
    fs.unlinkSync(p);
    await waitUntil(() => free() > before - size / 4, { what: "the removed file's space back" });
  });

  it('serves every read and write through the daemon with passthrough=off', async () => {
    await s.mount('passthrough=off');
    fs.writeFileSync(join(s.mnt, 'f'), 'through the daemon');
    const fd = fs.openSync(join(s.mnt, 'f'), 'r');
    try {
      assert.equal(await passthroughFiles(s.mnt), 'off');
      assert.equal(fs.readFileSync(fd, 'utf8'), 'through the daemon');
    } finally {
      fs.closeSync(fd);
    }
  });

  it('returns the right bytes to many concurrent large reads of lower and upper files', async () => {
    const block = Buffer.alloc(3 * 1024 * 1024 + 12345);
    for (let i = 0; i + 4 <= block.length; i += 4) block.writeUInt32LE(i, i);
    fs.writeFileSync(join(s.lower, 'a'), block);
    fs.writeFileSync(join(s.lower, 'b'), block.subarray(1000));
    await s.mount('passthrough=off');
    fs.writeFileSync(join(s.mnt, 'c'), block.subarray(7));
    const want = [sha256(join(s.lower, 'a')), sha256(join(s.lower, 'b')), sha256(join(s.upper, 'c'))];
    const r = await python(
      `
import hashlib, os, sys, threading
mnt = sys.argv[1]
out = {}
def reader(name, k):
    h = hashlib.sha256()
    fd = os.open(mnt + '/' + name, os.O_RDONLY | os.O_DIRECT) if k % 2 else os.open(mnt + '/' + name, os.O_RDONLY)
    off = 0
    while True:
        b = os.pread(fd, 1 << 20, off)
        if not b: break
        h.update(b); off += len(b)
    os.close(fd)
    out[(name, k)] = h.hexdigest()
ts = [threading.Thread(target=reader, args=(n, k)) for n in 'abc' for k in range(4)]
for t in ts: t.start()
for t in ts: t.join()
for n in 'abc': print(' '.join(sorted(set(out[(n, k)] for k in range(4)))))
`,
      [s.mnt],
      { timeoutMs: 30000 },
    );
    assert.equal(r.stdout, want.join('\n') + '\n', r.stderr);
  });

  it('sets the mount read-ahead to 1 MiB, the largest READ', async () => {
    await s.mount();
    const st = fs.statSync(s.mnt);
    const minor = (st.dev & 0xff) | ((st.dev >> 12) & 0xfff00);
    assert.equal(fs.readFileSync(`/sys/class/bdi/0:${minor}/read_ahead_kb`, 'utf8').trim(), '1024');
  });

  it('creates and closes a file with CREATE, FLUSH and RELEASE alone, and a mapped write to it after still shows its times', async () => {
    const d = await s.mount('debug');
    const r = await python(
      `
import mmap, os, sys, time
p = sys.argv[1]
os.close(os.open(p + '/made', os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
fd = os.open(p + '/mapped', os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o644)
os.ftruncate(fd, 4096)
before = os.stat(p + '/mapped').st_mtime_ns
time.sleep(0.05)
m = mmap.mmap(fd, 4096)
m[0:5] = b'hello'
m.close()
os.close(fd)
print(os.stat(p + '/mapped').st_mtime_ns > before)
`,
      [s.mnt],
    );
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), 'True', 'the mapped write moved the mtime');
    const log = d.stderr();
    const created = /← #\d+ CREATE OK entry=\{nodeid=(\d+) /.exec(log.slice(log.indexOf('CREATE node=1 ')));
    assert.ok(created, log);
    const requests = [...log.matchAll(new RegExp(`→ #\\d+ (\\w+) node=${created[1]} `, 'g'))].map((m) => m[1]);
    assert.deepEqual(requests, ['FLUSH', 'RELEASE'], log);
  });
});
