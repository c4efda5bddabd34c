import { ErrnoError } from '../util/errno';

export type LockErrorCode = 'EAGAIN' | 'EDEADLK' | 'EINTR' | 'EBADF' | 'EINVAL';

/** A lock failure in Node's error shape: `code` ('EAGAIN') and a negative `errno`. */
export class LockError extends ErrnoError<LockErrorCode> {
  constructor(code: LockErrorCode, message: string) {
    super(code, message);
    this.name = 'LockError';
  }
}

export function toError(reason: unknown): Error {
  return reason instanceof Error ? reason : new Error(String(reason));
}
