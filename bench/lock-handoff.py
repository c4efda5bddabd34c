"""Lock handoffs between two processes: bench/nfs.ts runs it as
`python3 bench/lock-handoff.py N HOLD_MS FILE_A FILE_B`.

Two forked processes, A on FILE_A and B on FILE_B (two mounts of one export standing for two
hosts, or the same local file twice), take turns holding an fcntl write lock on the whole file.
The holder tells the other it is about to wait, keeps the lock HOLD_MS more, notes the time,
unlocks and sends that time over a pipe; the other, waiting in F_SETLKW meanwhile, notes the
time it is granted and says so, and only then does the first wait for the lock again. N handoffs in all (N even).
Prints one JSON line: {"ns": A's first grant to the last handoff, "count": N, "median_ns",
"p99_ns": unlock-to-grant latency over every handoff}. CLOCK_MONOTONIC is one clock for the
whole machine, so times taken by two processes compare.
"""
import fcntl
import json
import os
import signal
import struct
import sys
import time

DEADLINE_S = int(os.environ.get("HANDOFF_DEADLINE", "300"))


def lock(fd, kind):
    ltype = fcntl.F_WRLCK if kind == 'w' else fcntl.F_UNLCK
    cmd = fcntl.F_SETLKW if kind == 'w' else fcntl.F_SETLK
    fcntl.fcntl(fd, cmd, struct.pack('hhqqi4x', ltype, os.SEEK_SET, 0, 0, 0))


def read_exactly(fd, n):
    data = b''
    while len(data) < n:
        chunk = os.read(fd, n - len(data))
        if not chunk:
            sys.exit(3)  # the other side is gone
        data += chunk
    return data


def side(path, first, rounds, hold_s, inbox, outbox, results):
    """`first` takes the lock first. Each round: waiter phase, then holder phase (the first
    side holds first and waits last)."""
    signal.alarm(DEADLINE_S)
    fd = os.open(path, os.O_RDWR)
    latencies = []

    def hold_then_pass():
        # "about to wait" from the other side, then the hold, then the unlock.
        read_exactly(inbox, 1)
        if hold_s:
            time.sleep(hold_s)
        t = time.monotonic_ns()
        lock(fd, 'u')
        os.write(outbox, b'w' + struct.pack('q', t))
        # Not waiting again before the other side has it: a local unlocker could take it back.
        read_exactly(inbox, 1)

    def wait_for_it():
        os.write(outbox, b'a')
        lock(fd, 'w')
        granted = time.monotonic_ns()
        os.write(outbox, b'g')
        tag, = struct.unpack('c', read_exactly(inbox, 1))
        assert tag == b'w'
        unlocked, = struct.unpack('q', read_exactly(inbox, 8))
        latencies.append(granted - unlocked)

    if first:
        lock(fd, 'w')
        start = time.monotonic_ns()
        os.write(outbox, b's')
        for _ in range(rounds):
            hold_then_pass()
            wait_for_it()
        end = time.monotonic_ns()
        lock(fd, 'u')
    else:
        read_exactly(inbox, 1)
        start = end = 0
        for _ in range(rounds):
            wait_for_it()
            hold_then_pass()
    os.write(results, (json.dumps({'start': start, 'end': end, 'latencies': latencies}) + '\n').encode())
    os.close(fd)


def main():
    n, hold_ms, file_a, file_b = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3], sys.argv[4]
    if n < 2 or n % 2:
        sys.exit('lock-handoff: N must be even and at least 2')
    a_to_b, b_to_a = os.pipe(), os.pipe()
    results = os.pipe()
    children = []
    for first, path, inbox, outbox in ((True, file_a, b_to_a[0], a_to_b[1]), (False, file_b, a_to_b[0], b_to_a[1])):
        pid = os.fork()
        if pid == 0:
            try:
                side(path, first, n // 2, hold_ms / 1000, inbox, outbox, results[1])
                os._exit(0)
            except BaseException as err:  # noqa: BLE001 - a child must never return into main
                sys.stderr.write('lock-handoff: %s: %r\n' % (path, err))
                sys.stderr.flush()
                os._exit(1)
        children.append(pid)
    os.close(results[1])
    signal.alarm(DEADLINE_S + 10)
    failed = False
    for pid in children:
        _, status = os.waitpid(pid, 0)
        failed = failed or status != 0
    out = b''
    while True:
        chunk = os.read(results[0], 65536)
        if not chunk:
            break
        out += chunk
    if failed:
        sys.exit(1)
    sides = [json.loads(line) for line in out.decode().splitlines()]
    first = next(s for s in sides if s['start'])
    latencies = sorted(l for s in sides for l in s['latencies'])
    print(json.dumps({
        'ns': first['end'] - first['start'],
        'count': len(latencies),
        'median_ns': latencies[len(latencies) // 2],
        'p99_ns': latencies[len(latencies) * 99 // 100],
    }))


main()
