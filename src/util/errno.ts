/**
 * The one errno module: Linux errno names and numbers (from Node's table of the running system),
 * and the Node error shape (`code` 'ENOENT', negative `errno`, `syscall`, `path`) that every layer
 * throws and the FUSE session turns back into the number the kernel gets.
 */
import { constants } from 'os';

// Linux numbers Node's table leaves out, which NFS status codes map to.
const byName: Readonly<Record<string, number>> = { EREMOTE: 66, EREMOTEIO: 121, ...(constants.errno as Record<string, number>) };
const byNumber = new Map<number, string>(Object.entries(byName).map(([name, n]) => [n, name]));

export function isErrnoName(code: string): boolean {
  return byName[code] !== undefined;
}

/** The positive number of an errno name; an unknown name is a programming error. */
export function errnoNumber(code: string): number {
  const n = byName[code];
  if (n === undefined) throw new TypeError(`unknown errno name ${code}`);
  return n;
}

/** The name of an errno, positive or negative: 'ENOENT', or 'errno N' for one without a name. */
export function errnoName(errno: number): string {
  return byNumber.get(Math.abs(errno)) ?? `errno ${Math.abs(errno)}`;
}

/** An Error in Node's errno shape: `code` names the errno, `errno` is its negative number. */
export class ErrnoError<Code extends string = string> extends Error {
  readonly errno: number;

  constructor(
    readonly code: Code,
    message: string,
  ) {
    super(`${code}: ${message}`);
    this.name = 'ErrnoError';
    this.errno = -errnoNumber(code);
  }
}

/** An Error shaped like Node's fs errors (`code`, negative `errno`, `syscall`, `path`). */
export function errnoError(errno: number, syscall: string, path?: string): NodeJS.ErrnoException {
  const code = errnoName(errno);
  const err: NodeJS.ErrnoException = new Error(`${code}: ${syscall}${path === undefined ? '' : ` '${path}'`}`);
  err.code = code;
  err.errno = -Math.abs(errno);
  err.syscall = syscall;
  if (path !== undefined) err.path = path;
  return err;
}

export function errorCode(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | null)?.code;
}
