/** What the overlay filesystem itself is told at mount (the CLI parses it from the user). */
import type { IdShift } from '../idmap';
import type { AtimeRule } from '../layers/atime-mount';
import type { OverlayXattrs } from './format';

/**
 * How lookups of lower-dependent names are checked:
 *  always  every lookup re-checks the lower (a change there shows at once)
 *  cached  lookups are cached in the daemon and the kernel, as fuse-overlayfs does
 *  kernel  cached like kernel overlayfs; a lower object that changed answers ESTALE
 */
export type RevalidateMode = 'always' | 'cached' | 'kernel';

/**
 * What reads do to atimes, as the mount asks (noatime, relatime, strictatime): FUSE leaves
 * atimes to the filesystem (the kernel never sets one on a FUSE inode).
 *  noatime      upper files are read with O_NOATIME: their atime never moves
 *  relatime     the upper filesystem's own rule applies to the upper file (relatime on most)
 *  strictatime  every read the daemon serves sets the upper file's atime to now
 * A lower file's atime never moves (a layer is read, not used).
 */
export type AtimeMode = AtimeRule;

export interface OverlayOptions {
  revalidate: RevalidateMode;
  /** Kernel cache timeout, in seconds, for entries and attributes that depend on the upper alone. */
  upperTimeout: number;
  /**
   * The same for those a lower decides (revalidate=always): one clock tick by default. While
   * the lowers are watched (`watch`), `upperTimeout` instead: a change invalidates them.
   */
  lowerTimeout: number;
  /** Have the lowers report their changes where they can (revalidate=always). */
  watch?: boolean;
  /** Where the overlay's own xattrs live: trusted.overlay.* as root, user.overlay.* otherwise. */
  xattrs: OverlayXattrs;
  /** Renaming directories that have lower parts records a redirect; off answers EXDEV. */
  redirectDir: boolean;
  /** No upper layer: a read-only merged view. */
  readOnly: boolean;
  /** Locks granted through the mount are also taken on the files underneath (locks=local: not). */
  forwardLocks: boolean;
  /** uid/gid shift between the layers and the mount (identity when none is set). */
  ids: IdShift;
  atime: AtimeMode;
  /**
   * The kernel enforces POSIX ACLs (FUSE_POSIX_ACL) and default ACLs are inherited as on a
   * local filesystem; off (noacl), ACL xattrs are only stored and translated.
   */
  posixAcl: boolean;
  /** Let the kernel read and write upper files itself (FUSE passthrough) where it can. */
  passthrough: boolean;
  /**
   * Kernel overlayfs's volatile (fuse-overlayfs: also fsync=0): nothing syncs the upper, FSYNC
   * and FSYNCDIR succeed at once. Data may be lost in a crash; the upper is then to be dropped.
   */
  volatile?: boolean;
  /** fuse-overlayfs's static_nlink: every directory shows st_nlink 1. */
  staticNlink?: boolean;
  /**
   * fuse-overlayfs's noxattrs=1: every xattr request answers ENOSYS, which the kernel remembers
   * and turns into EOPNOTSUPP for this mount.
   */
  noXattrs?: boolean;
}
