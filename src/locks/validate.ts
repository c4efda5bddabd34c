import { LockError } from './errors';
import { F_RDLCK, F_UNLCK, F_WRLCK, LockRequest, OFFSET_MAX, ValidRequest } from './types';

function isLockType(type: number): type is ValidRequest['type'] {
  return type === F_RDLCK || type === F_WRLCK || type === F_UNLCK;
}

/**
 * Checks a request as FUSE delivered it and returns it normalized: flock requests always
 * cover the whole file, whatever range came with them.
 */
export function validateRequest(request: LockRequest): ValidRequest {
  const { family, owner, fh, pid, type, start, end } = request;
  const invalid = (why: string): LockError => new LockError('EINVAL', why);
  if (family !== 'posix' && family !== 'flock') throw invalid(`unknown lock family ${String(family)}`);
  if (typeof owner !== 'bigint') throw invalid('owner must be a bigint');
  if (!Number.isInteger(fh) || !Number.isInteger(pid)) throw invalid('fh and pid must be integers');
  if (!isLockType(type)) throw invalid(`unknown lock type ${type}`);
  if (typeof start !== 'bigint' || typeof end !== 'bigint') throw invalid('range must be bigints');
  if (start < 0n || end < start || end > OFFSET_MAX) throw invalid(`bad range ${start}..${end}`);
  if (family === 'flock') return { family, owner, fh, pid, type, start: 0n, end: OFFSET_MAX };
  return { family, owner, fh, pid, type, start, end };
}

/** GETLK probes must ask about a read or write lock. */
export function validateProbe(probe: LockRequest): ValidRequest {
  const valid = validateRequest(probe);
  if (valid.type === F_UNLCK) throw new LockError('EINVAL', 'GETLK probe cannot be F_UNLCK');
  return valid;
}
