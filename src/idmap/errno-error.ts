import { ErrnoError } from '../util/errno';

export type IdmapErrorCode = 'EINVAL' | 'EOVERFLOW';

/** An Error in Node's fs error shape (`code`, negative `errno`), for the daemon to answer with. */
export class IdmapErrnoError extends ErrnoError<IdmapErrorCode> {
  constructor(code: IdmapErrorCode, message: string) {
    super(code, message);
    this.name = 'IdmapErrnoError';
  }
}
