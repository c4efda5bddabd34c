// NFSv4 statuses as Node-style errors, as the kernel's NFS client maps them for applications.
import { errnoAndText } from '../errors';
import { Nfs4Status, Op } from './protocol';

const NFS4_CODE: Partial<Record<Nfs4Status, string>> = {
  [Nfs4Status.PERM]: 'EPERM',
  [Nfs4Status.NOENT]: 'ENOENT',
  [Nfs4Status.IO]: 'EIO',
  [Nfs4Status.NXIO]: 'ENXIO',
  [Nfs4Status.ACCESS]: 'EACCES',
  [Nfs4Status.EXIST]: 'EEXIST',
  [Nfs4Status.XDEV]: 'EXDEV',
  [Nfs4Status.NOTDIR]: 'ENOTDIR',
  [Nfs4Status.ISDIR]: 'EISDIR',
  [Nfs4Status.INVAL]: 'EINVAL',
  [Nfs4Status.FBIG]: 'EFBIG',
  [Nfs4Status.NOSPC]: 'ENOSPC',
  [Nfs4Status.ROFS]: 'EROFS',
  [Nfs4Status.MLINK]: 'EMLINK',
  [Nfs4Status.NAMETOOLONG]: 'ENAMETOOLONG',
  [Nfs4Status.NOTEMPTY]: 'ENOTEMPTY',
  [Nfs4Status.DQUOT]: 'EDQUOT',
  [Nfs4Status.STALE]: 'ESTALE',
  // A handle the server cannot parse or no longer honours is as unusable as a stale one.
  [Nfs4Status.BADHANDLE]: 'ESTALE',
  [Nfs4Status.FHEXPIRED]: 'ESTALE',
  [Nfs4Status.BAD_COOKIE]: 'EINVAL',
  [Nfs4Status.NOTSUPP]: 'EOPNOTSUPP',
  [Nfs4Status.ATTRNOTSUPP]: 'EOPNOTSUPP',
  [Nfs4Status.TOOSMALL]: 'EINVAL',
  [Nfs4Status.SERVERFAULT]: 'EREMOTEIO',
  [Nfs4Status.BADTYPE]: 'EINVAL',
  [Nfs4Status.DELAY]: 'EAGAIN',
  [Nfs4Status.DENIED]: 'EAGAIN',
  [Nfs4Status.LOCKED]: 'EAGAIN',
  [Nfs4Status.GRACE]: 'EAGAIN',
  [Nfs4Status.DEADLOCK]: 'EDEADLK',
  [Nfs4Status.LOCK_NOTSUPP]: 'ENOLCK',
  [Nfs4Status.LOCK_RANGE]: 'ENOLCK',
  [Nfs4Status.SHARE_DENIED]: 'EACCES',
  // A write lock under a read-only open: as for a descriptor not open for writing.
  [Nfs4Status.OPENMODE]: 'EBADF',
  [Nfs4Status.WRONGSEC]: 'EPERM',
  [Nfs4Status.SYMLINK]: 'ELOOP',
  [Nfs4Status.BADNAME]: 'EINVAL',
  [Nfs4Status.BADCHAR]: 'EINVAL',
  [Nfs4Status.BADOWNER]: 'EINVAL',
  [Nfs4Status.NOXATTR]: 'ENODATA',
  [Nfs4Status.XATTR2BIG]: 'E2BIG',
};

/** An operation of a COMPOUND answered with a status other than NFS4_OK. */
export class Nfs4Error extends Error {
  readonly code: string;
  readonly errno: number;
  /** The NFS4ERR_* name, e.g. "NFS4ERR_STALE". */
  readonly nfsStatus: string;
  /** The operation's name in lower case, e.g. "lookup". */
  readonly syscall: string;

  constructor(
    readonly status: Nfs4Status,
    readonly op: Op | undefined,
    detail?: string,
  ) {
    const code = NFS4_CODE[status] ?? 'EIO';
    const [errno, text] = errnoAndText(code);
    const nfsStatus = `NFS4ERR_${Nfs4Status[status] ?? status}`;
    const syscall = op === undefined ? 'compound' : (Op[op]?.toLowerCase() ?? `op ${op}`);
    super(`${code}: ${text} (${nfsStatus}), ${syscall}${detail === undefined ? '' : ` ${detail}`}`);
    this.name = 'Nfs4Error';
    this.code = code;
    this.errno = -errno;
    this.nfsStatus = nfsStatus;
    this.syscall = syscall;
  }
}

/** The server's answer makes no sense (a result for another operation, a bad length): EIO. */
export function protocolViolation(what: string): Nfs4Error {
  return new Nfs4Error(Nfs4Status.IO, undefined, `(server protocol error: ${what})`);
}
