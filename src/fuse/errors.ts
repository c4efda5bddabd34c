/** Turning whatever a handler throws into the errno the kernel gets. */
import { constants } from 'os';

const errnos = constants.errno as Readonly<Record<string, number>>;

/** An error that names its errno directly: `throw new FuseError('ENOENT')`. */
export class FuseError extends Error {
  readonly errno: number;
  readonly code: string;

  constructor(code: string, message?: string) {
    super(message ?? code);
    const n = errnos[code];
    if (n === undefined) throw new TypeError(`unknown errno name ${code}`);
    this.errno = n;
    this.code = code;
    this.name = 'FuseError';
  }
}

export function errnoNumber(code: string): number {
  const n = errnos[code];
  if (n === undefined) throw new TypeError(`unknown errno name ${code}`);
  return n;
}

/**
 * Positive errno for an error from a handler: a FuseError, a Node system error (`code` such as
 * 'ENOENT', or a negative `errno`), else EIO. The second value says whether it was recognised.
 */
export function errnoOf(err: unknown): { errno: number; known: boolean } {
  if (err instanceof FuseError) return { errno: err.errno, known: true };
  if (typeof err === 'object' && err !== null) {
    const e = err as { code?: unknown; errno?: unknown };
    if (typeof e.code === 'string' && errnos[e.code] !== undefined) return { errno: errnos[e.code]!, known: true };
    if (typeof e.errno === 'number' && e.errno < 0 && e.errno > -4096) return { errno: -e.errno, known: true };
  }
  return { errno: errnos.EIO!, known: false };
}

const names = new Map<number, string>(Object.entries(errnos).map(([k, v]) => [v, k]));

export function errnoName(errno: number): string {
  return names.get(errno) ?? `errno ${errno}`;
}
