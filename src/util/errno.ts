/** errno names and Node-shaped errors, for code that gets a bare -errno from a syscall. */
import { constants } from 'os';

const byNumber = new Map<number, string>(Object.entries(constants.errno as Record<string, number>).map(([name, n]) => [n, name]));

export function errnoName(errno: number): string {
  return byNumber.get(Math.abs(errno)) ?? `errno ${Math.abs(errno)}`;
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
