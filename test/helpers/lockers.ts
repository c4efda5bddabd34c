/**
 * Processes that take file locks the way mail readers and delivery agents do (flock, or
 * fcntl through lockf), for tests of locks shared between hosts: each prints what it did with
 * a timestamp, so a test can order events between processes.
 */
import { Background, python } from './proc';

export type LockKind = 'flock' | 'posix';

const LOCKER = `
import fcntl, os, signal, struct, sys, time
path, kind, mode = sys.argv[1], sys.argv[2], sys.argv[3]
fd = os.open(path, os.O_RDWR)
def lock(block):
    nb = 0 if block else fcntl.LOCK_NB
    if kind == 'flock': fcntl.flock(fd, fcntl.LOCK_EX | nb)
    else: fcntl.lockf(fd, fcntl.LOCK_EX | nb)
def unlock():
    if kind == 'flock': fcntl.flock(fd, fcntl.LOCK_UN)
    else: fcntl.lockf(fd, fcntl.LOCK_UN)
if mode == 'try':
    try:
        lock(False)
        print('ok')
    except OSError as e:
        print('errno %d' % e.errno)
    sys.exit(0)
if mode == 'getlk':
    got = fcntl.fcntl(fd, fcntl.F_GETLK, struct.pack('hh4xqqi4x', fcntl.F_WRLCK, 0, 0, 0, 0))
    t, w, start, length, pid = struct.unpack('hh4xqqi4x', got)
    print('type %d start %d len %d' % (t, start, length))
    sys.exit(0)
class Interrupted(Exception): pass
def interrupt(*a): raise Interrupted()
signal.signal(signal.SIGUSR2, interrupt)
done = []
signal.signal(signal.SIGUSR1, lambda *a: done.append(1))
print('waiting %.6f' % time.time(), flush=True)
try:
    lock(True)
except Interrupted:
    print('interrupted', flush=True)
    sys.exit(0)
print('locked %.6f' % time.time(), flush=True)
while not done: signal.pause()
print('unlocking %.6f' % time.time(), flush=True)
unlock()
print('unlocked %.6f' % time.time(), flush=True)
`;

/** A process that takes an exclusive lock (waiting for it) and holds it until release(). */
export class Locker {
  readonly proc: Background;

  constructor(
    path: string,
    readonly kind: LockKind,
  ) {
    this.proc = new Background('python3', ['-c', LOCKER, path, kind, 'hold']);
  }

  /** Resolves once the lock is held; the time it was taken (seconds since the epoch). */
  async locked(ms = 20000): Promise<number> {
    await this.proc.waitFor('locked ', ms);
    return stamp(this.proc.stdout, 'locked');
  }

  get holds(): boolean {
    return this.proc.stdout.includes('locked ');
  }

  /** Unlocks and ends; the time just before the unlock call. */
  async release(): Promise<number> {
    await this.proc.waitFor('waiting ');
    this.proc.signal('SIGUSR1');
    await this.proc.waitFor('unlocked ');
    await this.proc.exited;
    return stamp(this.proc.stdout, 'unlocking');
  }

  /** A signal whose handler raises: the waiting lock call returns EINTR. */
  async interrupt(): Promise<void> {
    this.proc.signal('SIGUSR2');
    await this.proc.exited;
  }

  async stop(): Promise<void> {
    await this.proc.stop();
  }
}

function stamp(out: string, word: string): number {
  const m = new RegExp(`^${word} (\\d+\\.\\d+)$`, 'm').exec(out);
  if (!m) throw new Error(`no "${word}" line in ${out}`);
  return Number(m[1]);
}

/** A non-blocking exclusive lock attempt: 'ok' (taken, then let go at exit) or 'errno N'. */
export async function tryLock(path: string, kind: LockKind): Promise<string> {
  const r = await python(LOCKER, [path, kind, 'try']);
  if (r.code !== 0) throw new Error(`locker failed: ${r.stderr}`);
  return r.stdout.trim();
}

/** F_GETLK for a whole-file write lock: "type T start S len L" (T 2: nothing in the way). */
export async function getLock(path: string): Promise<string> {
  const r = await python(LOCKER, [path, 'posix', 'getlk']);
  if (r.code !== 0) throw new Error(`locker failed: ${r.stderr}`);
  return r.stdout.trim();
}
