/** Turning whatever a handler throws into the errno the kernel gets. */
import { errnoNumber, isErrnoName } from '../util/errno';

/** An error that names its errno directly: `throw new FuseError('ENOENT')`. Its `errno` is positive, as the kernel gets it. */
export class FuseError extends Error {
  readonly errno: number;
  readonly code: string;

  constructor(code: string, message?: string) {
    // An answer, not a bug: no stack trace, whose capture costs more than most requests (a
    // lookup's ENOENT, a getxattr's ENODATA on every write).
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    super(message ?? code);
    Error.stackTraceLimit = limit;
    this.errno = errnoNumber(code);
    this.code = code;
    this.name = 'FuseError';
  }
}

const EIO = errnoNumber('EIO');

/**
 * Positive errno for an error from a handler: a FuseError, a Node system error (`code` such as
 * 'ENOENT', or a negative `errno`), else EIO. The second value says whether it was recognised.
 */
export function errnoOf(err: unknown): { errno: number; known: boolean } {
  if (err instanceof FuseError) return { errno: err.errno, known: true };
  if (typeof err === 'object' && err !== null) {
    const e = err as { code?: unknown; errno?: unknown };
    if (typeof e.code === 'string' && isErrnoName(e.code)) return { errno: errnoNumber(e.code), known: true };
    if (typeof e.errno === 'number' && e.errno < 0 && e.errno > -4096) return { errno: -e.errno, known: true };
  }
  return { errno: EIO, known: false };
}
