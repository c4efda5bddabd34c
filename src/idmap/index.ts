export { ACL_ACCESS_XATTR, ACL_DEFAULT_XATTR, aclToLayer, aclToView, encodePosixAcl, PosixAclTag, type PosixAclEntry } from './acl-xattr';
export { CAP_XATTR, capToLayer, capToView } from './cap-xattr';
export { IdmapErrnoError, type IdmapErrorCode } from './errno-error';
export { IdMap, type IdMapSettings } from './id-map';
export { IdShift, type IdShiftOptions, createIdShift, parseSquashId } from './id-shift';
export { DEFAULT_OVERFLOW_ID, type OverflowIds, readOverflowId, systemOverflowIds } from './overflow';
export { type IdRange, MAX_MAPPABLE_ID, type MappingOption, parseIdRanges } from './ranges';
