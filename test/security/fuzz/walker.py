"""One walker of the layer fuzzer: visits everything reachable in a mount, read-only.

  walker.py CONFIG_JSON

CONFIG: mnt, names (the names the layers hold), private (the overlay-private names they hold,
looked up, never listed nor entered), seed, mode ('fd': every call relative to the
parent's descriptor; 'path': full paths, so the kernel walks each one through the mount),
maxObjects, maxDepth, passes, seconds.

Prints one JSON line per observation: an object ({p, t, ino} and, by type, names, sha, target,
rdev, xattrs) or an error ({p, op, err}); the last line is {done, visited, truncated}. Never
follows a symlink, never opens anything but directories and regular files, and never enters a
name the layers do not hold (a foreign listing is reported, not explored). In every directory it
also looks up the layers' names its listing lacks.
"""
import errno
import hashlib
import json
import os
import random
import stat
import sys
import time

cfg = json.loads(sys.argv[1])
MNT = cfg['mnt']
KNOWN = set(cfg['names'])
PRIVATE = set(cfg['private'])
rng = random.Random(cfg['seed'])
deadline = time.monotonic() + cfg['seconds']
visited = 0
truncated = False
# Line by line: what a walker killed at its time limit saw still reaches the fuzzer.
sys.stdout.reconfigure(line_buffering=True)
out = sys.stdout


def emit(obj):
    out.write(json.dumps(obj) + '\n')


def error(rel, op, err):
    emit({'p': rel, 'op': op, 'err': errno.errorcode.get(err.errno, str(err.errno))})


def kind_of(mode):
    for test, k in ((stat.S_ISDIR, 'd'), (stat.S_ISREG, 'f'), (stat.S_ISLNK, 'l'), (stat.S_ISCHR, 'c'),
                    (stat.S_ISBLK, 'b'), (stat.S_ISFIFO, 'p'), (stat.S_ISSOCK, 's')):
        if test(mode):
            return k
    return '?'


def budget_left():
    global truncated
    if visited >= cfg['maxObjects'] or time.monotonic() > deadline:
        truncated = True
    return not truncated


def xattrs(fd, rec, rel):
    try:
        rec['xattrs'] = sorted(os.listxattr(fd))
    except OSError as err:
        error(rel, 'listxattr', err)


def at(dfd, name, rel):
    """The (dir_fd, path) pair naming rel: relative to its parent's fd, or a full path."""
    if cfg['mode'] == 'fd':
        return dfd, name
    return None, os.path.join(MNT, rel) if rel != '.' else MNT


def visit(dfd, name, rel, depth, probe=False):
    global visited
    visited += 1
    d, p = at(dfd, name, rel)
    try:
        st = os.stat(p, dir_fd=d, follow_symlinks=False)
    except OSError as err:
        if not (probe and err.errno == errno.ENOENT):
            error(rel, 'lstat', err)
        return
    rec = {'p': rel, 't': kind_of(st.st_mode), 'ino': st.st_ino}
    if rec['t'] == 'd':
        try:
            fd = os.open(p, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=d)
        except OSError as err:
            error(rel, 'opendir', err)
            emit(rec)
            return
        try:
            xattrs(fd, rec, rel)
            try:
                names = os.listdir(fd)
                rec['names'] = sorted(names)
            except OSError as err:
                error(rel, 'readdir', err)
                names = []
            emit(rec)
            if depth >= cfg['maxDepth']:
                return
            # Names the listing lacks are looked up too: hidden ones (whiteouts, opaque dirs),
            # and all of them where the listing failed, must still resolve inside the layers.
            listed = [n for n in names if n in KNOWN]
            probed = [n for n in KNOWN | PRIVATE if n not in names]
            children = [(n, False) for n in listed] + [(n, True) for n in probed]
            rng.shuffle(children)
            for child, probe in children:
                if not budget_left():
                    return
                visit(fd, child, child if rel == '.' else rel + '/' + child, depth + 1, probe)
        finally:
            os.close(fd)
    elif rec['t'] == 'f':
        try:
            fd = os.open(p, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC, dir_fd=d)
        except OSError as err:
            error(rel, 'open', err)
            emit(rec)
            return
        try:
            xattrs(fd, rec, rel)
            try:
                data = os.read(fd, 1 << 20)
                rec['sha'] = hashlib.sha256(data).hexdigest()
            except OSError as err:
                error(rel, 'read', err)
        finally:
            os.close(fd)
        emit(rec)
    elif rec['t'] == 'l':
        try:
            rec['target'] = os.readlink(p, dir_fd=d)
        except OSError as err:
            error(rel, 'readlink', err)
        emit(rec)
    else:
        if rec['t'] in 'cb':
            rec['rdev'] = [os.major(st.st_rdev), os.minor(st.st_rdev)]
        emit(rec)


def main():
    for _ in range(cfg['passes']):
        if not budget_left():
            break
        try:
            fd = os.open(MNT, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as err:
            error('.', 'opendir', err)
            break
        try:
            visit(fd, '.', '.', 0)
        finally:
            os.close(fd)
    emit({'done': True, 'visited': visited, 'truncated': truncated})


main()
