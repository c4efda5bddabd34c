"""Runs a command as root of a new user namespace whose ids map onto a host range.

usage: userns.py HOST_FIRST_ID COUNT -- COMMAND [ARG...]

Run as host root. The namespace maps its ids 0..COUNT-1 onto HOST_FIRST_ID.., owns a mount
namespace of its own, and sees a private /dev whose fuse device is usable by anyone (0666), as
on most systems, so that its root may mount FUSE filesystems.
"""
import ctypes
import os
import sys

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
MS_REC, MS_PRIVATE = 0x4000, 0x40000

libc = ctypes.CDLL(None, use_errno=True)


def check(rc, what):
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, '%s: %s' % (what, os.strerror(err)))


def main():
    first, count = int(sys.argv[1]), int(sys.argv[2])
    command = sys.argv[sys.argv.index('--') + 1:]
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(ready_r)
        os.close(go_w)
        # Still host root: a private /dev with a usable fuse device.
        check(libc.unshare(CLONE_NEWNS), 'unshare(mount)')
        check(libc.mount(b'none', b'/', None, MS_REC | MS_PRIVATE, None), 'make / private')
        check(libc.mount(b'none', b'/dev', b'tmpfs', 0, b'mode=0755'), 'mount /dev')
        os.mknod('/dev/null', 0o20666, os.makedev(1, 3))
        os.mknod('/dev/fuse', 0o20666, os.makedev(10, 229))
        os.chmod('/dev/null', 0o666)
        os.chmod('/dev/fuse', 0o666)
        check(libc.unshare(CLONE_NEWUSER), 'unshare(user)')
        os.write(ready_w, b'r')
        os.read(go_r, 1)
        # A mount namespace owned by the new user namespace, so its root may mount.
        check(libc.unshare(CLONE_NEWNS), 'unshare(mount) in the user namespace')
        os.setgid(0)
        os.setgroups([])
        os.setuid(0)
        os.execvp(command[0], command)
    os.close(ready_w)
    os.close(go_r)
    os.read(ready_r, 1)
    for name in ('uid_map', 'gid_map'):
        with open('/proc/%d/%s' % (pid, name), 'w') as f:
            f.write('0 %d %d\n' % (first, count))
    os.write(go_w, b'g')
    _, status = os.waitpid(pid, 0)
    sys.exit(os.waitstatus_to_exitcode(status))


main()
