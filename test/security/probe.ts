/**
 * File operations as a user would make them, each answering 'ok' (or what it read) or the errno
 * name: one python3 process runs a list of them, as root or as a throwaway user (from an inline
 * script: a user cannot read a checkout under /root).
 */
import assert from 'assert/strict';
import { python } from '../helpers/proc';
import type { TestUser } from '../helpers/users';

const OPS = `
import errno, json, os, sys
def run(op):
    kind, a = op[0], op[1:]
    if kind == 'stat': os.lstat(a[0]); return 'ok'
    if kind == 'mode':
        st = os.lstat(a[0]); return '%o %d:%d' % (st.st_mode & 0o7777, st.st_uid, st.st_gid)
    if kind == 'ls': return sorted(os.listdir(a[0]))
    if kind == 'read': return open(a[0]).read()
    if kind == 'write': open(a[0], 'w').write(a[1]); return 'ok'
    if kind == 'create': os.close(os.open(a[0], os.O_CREAT | os.O_WRONLY, 0o644)); return 'ok'
    if kind == 'mkfifo': os.mkfifo(a[0]); return 'ok'
    if kind == 'mkdir': os.mkdir(a[0]); return 'ok'
    if kind == 'symlink': os.symlink(a[1], a[0]); return 'ok'
    if kind == 'link': os.link(a[0], a[1]); return 'ok'
    if kind == 'rename': os.rename(a[0], a[1]); return 'ok'
    if kind == 'unlink': os.unlink(a[0]); return 'ok'
    if kind == 'rmdir': os.rmdir(a[0]); return 'ok'
    if kind == 'getxattr': return os.getxattr(a[0], a[1]).decode('latin1')
    if kind == 'setxattr': os.setxattr(a[0], a[1], a[2].encode('latin1')); return 'ok'
    if kind == 'removexattr': os.removexattr(a[0], a[1]); return 'ok'
    if kind == 'listxattr': return sorted(os.listxattr(a[0]))
    raise Exception('unknown op ' + kind)
out = []
for op in json.loads(sys.argv[1]):
    try: out.append(run(op))
    except OSError as e:
        n = errno.errorcode.get(e.errno, str(e.errno))
        out.append('EOPNOTSUPP' if n == 'ENOTSUP' else n)
print(json.dumps(out))
`;

export type Op = [string, ...string[]];

/** Runs `list` in order, as `as` (or root), and returns each operation's answer. */
export async function ops(list: Op[], as?: TestUser): Promise<unknown[]> {
  const r = as
    ? await as.run(['/usr/bin/python3', '-c', OPS, JSON.stringify(list)], { timeoutMs: 15000 })
    : await python(OPS, [JSON.stringify(list)], { timeoutMs: 15000 });
  assert.equal(r.code, 0, `probe failed (${r.code ?? r.signal}): ${r.stderr}`);
  return JSON.parse(r.stdout) as unknown[];
}
