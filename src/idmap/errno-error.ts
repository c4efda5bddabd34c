import { constants } from 'os';

export type IdmapErrorCode = 'EINVAL' | 'EOVERFLOW';

/** An Error in Node's fs error shape (`code`, negative `errno`), for the daemon to answer with. */
export class IdmapErrnoError extends Error {
  readonly errno: number;

  constructor(
    readonly code: IdmapErrorCode,
    message: string,
  ) {
    super(`${code}: ${message}`);
    this.name = 'IdmapErrnoError';
    this.errno = -constants.errno[code];
  }
}
