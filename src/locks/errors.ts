import { constants } from 'os';

export type LockErrorCode = 'EAGAIN' | 'EDEADLK' | 'EINTR' | 'EBADF' | 'EINVAL';

/** A lock failure in Node's error shape: `code` ('EAGAIN') and a negative `errno`. */
export class LockError extends Error {
  readonly errno: number;

  constructor(
    readonly code: LockErrorCode,
    message: string,
  ) {
    super(`${code}: ${message}`);
    this.name = 'LockError';
    this.errno = -constants.errno[code];
  }
}

export function toError(reason: unknown): Error {
  return reason instanceof Error ? reason : new Error(String(reason));
}
