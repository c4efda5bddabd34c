/**
 * Opening a layer object without being made to wait by whoever can change the layer.
 *
 * The object at a path may have been replaced behind the daemon's back: by a FIFO, whose open
 * waits for the other end forever (on the daemon's only thread, for a local layer), or by a
 * terminal, which would become the daemon's controlling one. And a file someone holds a lease
 * on makes a blocking open wait out the lease break. So every open is made O_NONBLOCK and
 * O_NOCTTY, and then: a lease answers EWOULDBLOCK at once (the break has started) and the open
 * is tried again after a pause, off the event loop's back; an object that is neither a regular
 * file nor a directory is refused, since the daemon never opens anything else (the kernel
 * opens a FUSE mount's FIFOs and devices itself); and the descriptor gets back the status
 * flags the caller asked for, so it behaves as a blocking one would.
 */
import { closeSync, constants as K } from 'fs';
import { native, StatxField, STATX_FIELDS } from '../native';
import { errnoError, errnoNumber, errorCode } from '../util/errno';
import { O_PATH, O_TMPFILE } from '../util/linux';

/** The status flags F_SETFL sets (fcntl(2)): the ones to give back to the descriptor. */
const SETTABLE = K.O_APPEND | K.O_NONBLOCK | K.O_DIRECT | K.O_NOATIME | 0o20000; /* O_ASYNC */
/** How long an open waits for a lease to be broken: past the kernel's default lease-break-time (45 s). */
const LEASE_WAIT_MS = 60_000;
const S_IFMT = 0o170000;
/** settle's fstat result: filled and read in one synchronous call, so one is enough. */
const statBuf = new Float64Array(STATX_FIELDS);

/** Whether opening with `flags` needs what this module does (O_PATH opens nothing and takes no other flags). */
function guarded(flags: number): boolean {
  return (flags & O_PATH) === 0 && (flags & K.O_NONBLOCK) === 0;
}

/** The type of what an open with `flags` opens when it succeeds, if the flags say. */
function typeByFlags(flags: number): number | undefined {
  if ((flags & O_TMPFILE) === O_TMPFILE) return K.S_IFREG;
  if (flags & K.O_DIRECTORY) return K.S_IFDIR;
  if ((flags & (K.O_CREAT | K.O_EXCL)) === (K.O_CREAT | K.O_EXCL)) return K.S_IFREG;
  return undefined;
}

/** Whether an open with `flags` needs its object's type asked after it (see settle). */
export function needsType(flags: number): boolean {
  return guarded(flags) && typeByFlags(flags) === undefined;
}

/** The flags to open with, given the caller's. */
export function openFlags(flags: number): number {
  return guarded(flags) ? flags | K.O_NONBLOCK | K.O_NOCTTY : flags;
}

/**
 * Checks what `fd` (opened with openFlags(flags)) is and gives it the caller's status flags;
 * closes it and throws ENXIO (as an open of a device with nothing behind it) if it is neither
 * a regular file nor a directory. `mode` is the object's st_mode if known, else it is asked.
 */
export function settle(fd: number, flags: number, path: string, mode?: number): number {
  if (!guarded(flags)) return fd;
  let type = typeByFlags(flags) ?? (mode === undefined ? undefined : mode & S_IFMT);
  if (type === undefined) {
    const res = native.fstatxSync(fd, statBuf);
    if (res < 0) {
      closeSync(fd);
      throw errnoError(res, 'fstat', path);
    }
    type = statBuf[StatxField.mode]! & S_IFMT;
  }
  if (type !== K.S_IFREG && type !== K.S_IFDIR) {
    closeSync(fd);
    throw errnoError(-errnoNumber('ENXIO'), 'open', path);
  }
  const res = native.setStatusFlagsSync(fd, flags & SETTABLE);
  if (res < 0) {
    closeSync(fd);
    throw errnoError(res, 'fcntl', path);
  }
  return fd;
}

/** Runs `open` again while it fails on a lease being broken (EWOULDBLOCK), up to LEASE_WAIT_MS. */
export async function waitingOutLeases(open: () => Promise<number>): Promise<number> {
  let pause = 10;
  for (let waited = 0; ; waited += pause, pause = Math.min(pause * 2, 1000)) {
    try {
      return await open();
    } catch (err) {
      const code = errorCode(err);
      if ((code !== 'EWOULDBLOCK' && code !== 'EAGAIN') || waited >= LEASE_WAIT_MS) throw err;
    }
    await new Promise((resolve) => setTimeout(resolve, pause));
  }
}
