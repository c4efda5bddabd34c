"""Crafted layer trees on disk, for the layer fuzzer.

  layers.py apply PLAN.json     writes the trees the plan describes; prints what could not be set
  layers.py snapshot DIR...     prints, per DIR, every object with all a writer could change

The snapshot leaves atime out (reading through the mount may update it) and reads files with
O_NOATIME so taking it changes nothing.
"""
import hashlib
import json
import os
import stat
import sys


def apply(plan_path):
    with open(plan_path) as f:
        plan = json.load(f)
    skipped = []
    for layer in plan['layers']:
        base = layer['dir']
        os.makedirs(base, exist_ok=True)
        for e in layer['entries']:
            p = os.path.join(base, e['path'])
            kind = e['kind']
            if kind == 'dir':
                os.mkdir(p)
            elif kind == 'file':
                with open(p, 'wb') as out:
                    out.write(e['content'].encode())
            elif kind == 'symlink':
                os.symlink(e['target'], p)
            elif kind == 'whiteout':
                os.mknod(p, stat.S_IFCHR | 0o600, os.makedev(0, 0))
            else:
                raise ValueError('unknown kind ' + kind)
        for x in layer['xattrs']:
            p = os.path.join(base, x['path'])
            try:
                os.setxattr(p, x['name'], bytes.fromhex(x['value']), follow_symlinks=False)
            except OSError as err:
                # ext4 keeps one block of xattrs per inode: a large junk value may not fit.
                skipped.append({'path': p, 'name': x['name'], 'error': err.strerror})
    print(json.dumps({'skipped': skipped}))


def kind_of(mode):
    for test, k in ((stat.S_ISDIR, 'd'), (stat.S_ISREG, 'f'), (stat.S_ISLNK, 'l'), (stat.S_ISCHR, 'c'),
                    (stat.S_ISBLK, 'b'), (stat.S_ISFIFO, 'p'), (stat.S_ISSOCK, 's')):
        if test(mode):
            return k
    return '?'


def describe(p):
    st = os.lstat(p)
    k = kind_of(st.st_mode)
    obj = {'type': k, 'ino': st.st_ino, 'mode': st.st_mode, 'uid': st.st_uid, 'gid': st.st_gid,
           # As strings: nanoseconds since 1970 are past what a JSON reader keeps exact.
           'size': st.st_size, 'mtime': str(st.st_mtime_ns), 'ctime': str(st.st_ctime_ns)}
    if k == 'f':
        fd = os.open(p, os.O_RDONLY | os.O_NOATIME | os.O_NOFOLLOW)
        try:
            h = hashlib.sha256()
            while True:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    break
                h.update(chunk)
            obj['sha'] = h.hexdigest()
        finally:
            os.close(fd)
    elif k == 'l':
        obj['target'] = os.readlink(p)
    elif k in 'cb':
        obj['rdev'] = [os.major(st.st_rdev), os.minor(st.st_rdev)]
    obj['xattrs'] = {n: os.getxattr(p, n, follow_symlinks=False).hex()
                     for n in sorted(os.listxattr(p, follow_symlinks=False))}
    return obj


def snapshot(root):
    out = {}

    def walk(rel):
        p = os.path.join(root, rel) if rel else root
        obj = describe(p)
        out[rel or '.'] = obj
        if obj['type'] == 'd':
            for name in sorted(os.listdir(p)):
                walk(os.path.join(rel, name) if rel else name)

    walk('')
    return out


def main():
    if sys.argv[1] == 'apply':
        apply(sys.argv[2])
    elif sys.argv[1] == 'snapshot':
        print(json.dumps({root: snapshot(root) for root in sys.argv[2:]}))
    else:
        raise SystemExit('usage: layers.py apply PLAN.json | snapshot DIR...')


main()
