/**
 * Python scripts that change a lower directly, as a server or another client would, and check
 * what a mount over it shows. Each takes the lower directory and the mountpoint as arguments;
 * the directory-lower and nfs://-lower suites run the same ones.
 */

/** 300 rename-over edits of conf/app.cfg, each read back through the mount: prints how many were stale. */
export const RENAME_OVER_EDITS = `
import hashlib, os, sys
lower, mnt = sys.argv[1], sys.argv[2]
bad = 0
for i in range(300):
    data = (('version %d ' % i) * (1 + i % 50)).encode()
    with open(lower + '/conf/app.cfg.tmp', 'wb') as f: f.write(data)
    os.rename(lower + '/conf/app.cfg.tmp', lower + '/conf/app.cfg')
    with open(mnt + '/conf/app.cfg', 'rb') as f: got = f.read()
    if hashlib.md5(got).hexdigest() != hashlib.md5(data).hexdigest(): bad += 1
print(bad)
`;

/**
 * Appends to mbox on the lower while it is open through the mount, waits for fstat to show
 * the new size, then prints that size and the bytes read past the old end.
 */
export const APPEND_WHILE_OPEN = `
import os, sys, time
lower, mnt = sys.argv[1], sys.argv[2]
fd = os.open(mnt + '/mbox', os.O_RDWR)
old = os.read(fd, 1 << 20)
with open(lower + '/mbox', 'ab') as f: f.write(b'appended on the server\\n')
for _ in range(200):
    if os.fstat(fd).st_size > len(old): break
    time.sleep(0.01)
print(os.fstat(fd).st_size)
print(os.pread(fd, 100, len(old)))
`;

/**
 * For each name given after the mountpoint: opens it through the mount, unlinks it there, and
 * uses the descriptor (fstat, read, write, /proc reopen, ftruncate); prints what it saw.
 */
export const UNLINKED_BUT_OPEN = `
import os, sys
m = sys.argv[1]
out = []
for name in sys.argv[2:]:
    fd = os.open(m + '/' + name, os.O_RDWR)
    os.unlink(m + '/' + name)
    out.append(os.path.exists(m + '/' + name))
    out.append(os.fstat(fd).st_nlink)
    out.append(os.pread(fd, 100, 0).decode())
    os.pwrite(fd, b'WRITTEN', 0)
    out.append(os.pread(fd, 100, 0).decode())
    fd2 = os.open('/proc/self/fd/%d' % fd, os.O_RDONLY)
    out.append(os.read(fd2, 100).decode())
    os.ftruncate(fd, 3)
    out.append(os.fstat(fd2).st_size)
    out.append(os.read(fd2, 100).decode() + '|' + os.pread(fd2, 100, 0).decode())
    os.close(fd2); os.close(fd)
print(repr(out))
`;
