// The userspace NFSv3 client a layer backend uses.

export { NfsClient, NfsMountError, ReadStreamOptions } from './client';
export type { ReadAhead } from './read-ahead';
export { NfsError, Mount3Error, Nfs3Status, Mount3Status } from './errors';
export { Access, AccessResult, DirEntry, DirEntryPlus, FileType, FsInfo, FsStat, LookupResult, NfsAttr, NfsTime, PathConf, ReadResult } from './nfs3';
export { NfsUrl, parseNfsUrl, describeNfsUrl } from './url';
export { RpcError } from './rpc-message';
export { RpcTimeoutError, RpcConnectionError, RpcClosedError } from './rpc';
