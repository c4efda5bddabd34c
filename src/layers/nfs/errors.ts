// NFSv3 and MOUNTv3 status codes as Node-style errors: `code` is the errno name, `errno` its
// negated Linux number, `syscall` the protocol procedure that failed.
import { errnoNumber } from '../../util/errno';

export enum Nfs3Status {
  OK = 0,
  PERM = 1,
  NOENT = 2,
  IO = 5,
  NXIO = 6,
  ACCES = 13,
  EXIST = 17,
  XDEV = 18,
  NODEV = 19,
  NOTDIR = 20,
  ISDIR = 21,
  INVAL = 22,
  FBIG = 27,
  NOSPC = 28,
  ROFS = 30,
  MLINK = 31,
  NAMETOOLONG = 63,
  NOTEMPTY = 66,
  DQUOT = 69,
  STALE = 70,
  REMOTE = 71,
  BADHANDLE = 10001,
  NOT_SYNC = 10002,
  BAD_COOKIE = 10003,
  NOTSUPP = 10004,
  TOOSMALL = 10005,
  SERVERFAULT = 10006,
  BADTYPE = 10007,
  JUKEBOX = 10008,
}

export enum Mount3Status {
  OK = 0,
  PERM = 1,
  NOENT = 2,
  IO = 5,
  ACCES = 13,
  NOTDIR = 20,
  INVAL = 22,
  NAMETOOLONG = 63,
  NOTSUPP = 10004,
  SERVERFAULT = 10006,
}

// strerror texts for every code a status can map to; the numbers are util/errno's.
const ERRNO_TEXT: Record<string, string> = {
  EPERM: 'operation not permitted',
  ENOENT: 'no such file or directory',
  EIO: 'i/o error',
  ENXIO: 'no such device or address',
  EAGAIN: 'resource temporarily unavailable',
  EACCES: 'permission denied',
  EEXIST: 'file already exists',
  EXDEV: 'cross-device link not permitted',
  ENODEV: 'no such device',
  ENOTDIR: 'not a directory',
  EISDIR: 'is a directory',
  EINVAL: 'invalid argument',
  EFBIG: 'file too large',
  ENOSPC: 'no space left on device',
  EROFS: 'read-only file system',
  EMLINK: 'too many links',
  ENAMETOOLONG: 'file name too long',
  ENOTEMPTY: 'directory not empty',
  EREMOTE: 'object is remote',
  EOPNOTSUPP: 'operation not supported',
  ESTALE: 'stale file handle',
  EREMOTEIO: 'remote i/o error',
  EDQUOT: 'disk quota exceeded',
  EDEADLK: 'resource deadlock avoided',
  EBADF: 'bad file descriptor',
  ENOLCK: 'no locks available',
  ELOOP: 'too many levels of symbolic links',
  ENODATA: 'no data available',
  E2BIG: 'argument list too long',
};

// The kernel's own internal codes (EBADHANDLE, EBADCOOKIE, ETOOSMALL, EJUKEBOX...) never reach
// applications; these are the errno values a userspace caller can act on instead.
const NFS3_CODE: Record<Nfs3Status, string> = {
  [Nfs3Status.OK]: 'EIO',
  [Nfs3Status.PERM]: 'EPERM',
  [Nfs3Status.NOENT]: 'ENOENT',
  [Nfs3Status.IO]: 'EIO',
  [Nfs3Status.NXIO]: 'ENXIO',
  [Nfs3Status.ACCES]: 'EACCES',
  [Nfs3Status.EXIST]: 'EEXIST',
  [Nfs3Status.XDEV]: 'EXDEV',
  [Nfs3Status.NODEV]: 'ENODEV',
  [Nfs3Status.NOTDIR]: 'ENOTDIR',
  [Nfs3Status.ISDIR]: 'EISDIR',
  [Nfs3Status.INVAL]: 'EINVAL',
  [Nfs3Status.FBIG]: 'EFBIG',
  [Nfs3Status.NOSPC]: 'ENOSPC',
  [Nfs3Status.ROFS]: 'EROFS',
  [Nfs3Status.MLINK]: 'EMLINK',
  [Nfs3Status.NAMETOOLONG]: 'ENAMETOOLONG',
  [Nfs3Status.NOTEMPTY]: 'ENOTEMPTY',
  [Nfs3Status.DQUOT]: 'EDQUOT',
  [Nfs3Status.STALE]: 'ESTALE',
  [Nfs3Status.REMOTE]: 'EREMOTE',
  // A handle the server cannot parse is as unusable as a stale one: re-resolve by path.
  [Nfs3Status.BADHANDLE]: 'ESTALE',
  [Nfs3Status.NOT_SYNC]: 'EIO',
  [Nfs3Status.BAD_COOKIE]: 'EINVAL',
  [Nfs3Status.NOTSUPP]: 'EOPNOTSUPP',
  [Nfs3Status.TOOSMALL]: 'EINVAL',
  [Nfs3Status.SERVERFAULT]: 'EREMOTEIO',
  [Nfs3Status.BADTYPE]: 'EINVAL',
  [Nfs3Status.JUKEBOX]: 'EAGAIN',
};

const MOUNT3_CODE: Record<Mount3Status, string> = {
  [Mount3Status.OK]: 'EIO',
  [Mount3Status.PERM]: 'EPERM',
  [Mount3Status.NOENT]: 'ENOENT',
  [Mount3Status.IO]: 'EIO',
  [Mount3Status.ACCES]: 'EACCES',
  [Mount3Status.NOTDIR]: 'ENOTDIR',
  [Mount3Status.INVAL]: 'EINVAL',
  [Mount3Status.NAMETOOLONG]: 'ENAMETOOLONG',
  [Mount3Status.NOTSUPP]: 'EOPNOTSUPP',
  [Mount3Status.SERVERFAULT]: 'EREMOTEIO',
};

export function errnoAndText(code: string): readonly [number, string] {
  const text = ERRNO_TEXT[code];
  return text === undefined ? [errnoNumber('EIO'), ERRNO_TEXT.EIO!] : [errnoNumber(code), text];
}

/** An NFSv3 procedure answered with a status other than NFS3_OK. */
export class NfsError extends Error {
  readonly code: string;
  readonly errno: number;
  /** The NFS3ERR_* name, e.g. "NFS3ERR_STALE". */
  readonly nfsStatus: string;

  constructor(
    readonly status: Nfs3Status,
    readonly syscall: string,
    detail?: string,
  ) {
    const code = NFS3_CODE[status] ?? 'EIO';
    const [errno, text] = errnoAndText(code);
    const nfsStatus = `NFS3ERR_${Nfs3Status[status] ?? status}`;
    super(`${code}: ${text} (${nfsStatus}), ${syscall}${detail === undefined ? '' : ` ${detail}`}`);
    this.name = 'NfsError';
    this.code = code;
    this.errno = -errno;
    this.nfsStatus = nfsStatus;
  }
}

/** A MOUNT procedure answered with a status other than MNT3_OK. */
export class Mount3Error extends Error {
  readonly code: string;
  readonly errno: number;
  readonly syscall = 'mnt';
  /** The MNT3ERR_* name, e.g. "MNT3ERR_ACCES". */
  readonly mountStatus: string;

  constructor(
    readonly status: Mount3Status,
    readonly path: string,
  ) {
    const code = MOUNT3_CODE[status] ?? 'EIO';
    const [errno, text] = errnoAndText(code);
    const mountStatus = `MNT3ERR_${Mount3Status[status] ?? status}`;
    super(`${code}: ${text} (${mountStatus}), mnt '${path}'`);
    this.name = 'Mount3Error';
    this.code = code;
    this.errno = -errno;
    this.mountStatus = mountStatus;
  }
}
