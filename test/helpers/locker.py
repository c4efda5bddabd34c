"""A process that takes file locks on command, for lock tests through real mounts.

One command per stdin line; one answer line per command on stdout (a blocking lock answers
when granted, so the test sees it wait). Commands:
  open PATH [rw|ro]             -> ok FD
  lock FD r|w START LEN [wait] [ofd]   (LEN 0: to the end of the file)
                                -> ok | EAGAIN | EDEADLK | EINTR | errno name
  unlock FD START LEN [ofd]     -> ok
  getlk FD r|w START LEN [ofd]  -> unlocked | TYPE START LEN PID
  flock FD sh|ex|un [wait]      -> ok | EWOULDBLOCK | EINTR
  read FD OFFSET COUNT          -> ok DATA (repr)
  close FD                      -> ok
  pid                           -> ok PID (as this process sees itself)
A SIGUSR1 interrupts a blocked call (EINTR); SIGTERM ends the process.
"""
import errno
import fcntl
import os
import signal
import struct
import sys

F_OFD_GETLK, F_OFD_SETLK, F_OFD_SETLKW = 36, 37, 38


class Interrupted(Exception):
    pass


def on_usr1(signum, frame):
    raise Interrupted()


signal.signal(signal.SIGUSR1, on_usr1)


def flock_struct(kind, start, length):
    ltype = {'r': fcntl.F_RDLCK, 'w': fcntl.F_WRLCK, 'u': fcntl.F_UNLCK}[kind]
    return struct.pack('hhqqi4x', ltype, os.SEEK_SET, start, length, 0)


def answer(text):
    sys.stdout.write(text + '\n')
    sys.stdout.flush()


def run(words):
    cmd = words[0]
    if cmd == 'open':
        flags = os.O_RDWR if (len(words) < 3 or words[2] == 'rw') else os.O_RDONLY
        return 'ok %d' % os.open(words[1], flags)
    if cmd in ('lock', 'unlock', 'getlk'):
        fd = int(words[1])
        ofd = 'ofd' in words
        if cmd == 'unlock':
            fcntl.fcntl(fd, F_OFD_SETLK if ofd else fcntl.F_SETLK, flock_struct('u', int(words[2]), int(words[3])))
            return 'ok'
        kind, start, length = words[2], int(words[3]), int(words[4])
        if cmd == 'getlk':
            out = fcntl.fcntl(fd, F_OFD_GETLK if ofd else fcntl.F_GETLK, flock_struct(kind, start, length))
            ltype, _, lstart, llen, lpid = struct.unpack('hhqqi4x', out)
            if ltype == fcntl.F_UNLCK:
                return 'unlocked'
            return '%s %d %d %d' % ('r' if ltype == fcntl.F_RDLCK else 'w', lstart, llen, lpid)
        wait = 'wait' in words
        cmdno = (F_OFD_SETLKW if wait else F_OFD_SETLK) if ofd else (fcntl.F_SETLKW if wait else fcntl.F_SETLK)
        fcntl.fcntl(fd, cmdno, flock_struct(kind, start, length))
        return 'ok'
    if cmd == 'flock':
        op = {'sh': fcntl.LOCK_SH, 'ex': fcntl.LOCK_EX, 'un': fcntl.LOCK_UN}[words[2]]
        if 'wait' not in words:
            op |= fcntl.LOCK_NB
        fcntl.flock(int(words[1]), op)
        return 'ok'
    if cmd == 'read':
        return 'ok ' + repr(os.pread(int(words[1]), int(words[3]), int(words[2])))
    if cmd == 'close':
        os.close(int(words[1]))
        return 'ok'
    if cmd == 'pid':
        return 'ok %d' % os.getpid()
    return 'unknown command'


for line in sys.stdin:
    words = line.split()
    if not words:
        continue
    try:
        answer(run(words))
    except Interrupted:
        answer('EINTR')
    except OSError as e:
        answer(errno.errorcode.get(e.errno, str(e.errno)))
