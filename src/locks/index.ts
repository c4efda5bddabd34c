export { LockManager } from './lock-manager';
export { LockError, LockErrorCode } from './errors';
export {
  ExternalAnswer,
  ExternalLocks,
  F_RDLCK,
  F_UNLCK,
  F_WRLCK,
  HeldLock,
  HeldLockType,
  LockFamily,
  LockManagerOptions,
  LockRequest,
  LockType,
  OFFSET_MAX,
  PendingLock,
} from './types';
