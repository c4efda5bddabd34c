/**
 * POSIX ACL inheritance for objects the overlay builds in the work directory, where the upper
 * filesystem cannot apply it (it applies it itself to objects made in place): a new object in
 * a directory with a default ACL gets that ACL, its permissions limited by the mode asked for,
 * and the mode limited by the ACL, as Linux does at creation (posix_acl_create); a new
 * directory also gets the default ACL itself.
 */
import { ACL_ACCESS_XATTR, ACL_DEFAULT_XATTR, decodePosixAcl, encodePosixAcl, PosixAclTag, type PosixAclEntry } from '../idmap/acl-xattr';
import type { UpperDir } from '../layers/upper-dir';
import type { Loc } from '../layers/types';

const RWX = 7;

/**
 * The access ACL a new object with the requested `mode` gets from its directory's default ACL,
 * and its mode; `needed` is false when the mode alone says it all (no named entries, no mask).
 */
export function inheritedAcl(defaultAcl: readonly PosixAclEntry[], mode: number): { entries: PosixAclEntry[]; mode: number; needed: boolean } {
  let perms = mode & 0o777;
  let needed = false;
  const entries = defaultAcl.map((e) => ({ ...e }));
  let groupObj: PosixAclEntry | undefined;
  let mask: PosixAclEntry | undefined;
  for (const e of entries) {
    if (e.tag === PosixAclTag.USER_OBJ) {
      e.perm &= (perms >> 6) & RWX;
      perms = (perms & ~0o700) | (e.perm << 6);
    } else if (e.tag === PosixAclTag.OTHER) {
      e.perm &= perms & RWX;
      perms = (perms & ~0o007) | e.perm;
    } else if (e.tag === PosixAclTag.GROUP_OBJ) groupObj = e;
    else if (e.tag === PosixAclTag.MASK) {
      mask = e;
      needed = true;
    } else needed = true;
  }
  // The group class: the mask where there is one, else the owning group's entry.
  const groupClass = mask ?? groupObj;
  if (groupClass) {
    groupClass.perm &= (perms >> 3) & RWX;
    perms = (perms & ~0o070) | (groupClass.perm << 3);
  }
  return { entries, mode: (mode & ~0o777) | perms, needed };
}

/**
 * Gives `at` (just made with `mode`) what its directory's default ACL `defaultAcl` (an xattr
 * value, in the upper's ids) gives a new object there; returns the resulting mode.
 */
export async function inheritAcls(upper: UpperDir, at: Loc, defaultAcl: Buffer, mode: number, isDir: boolean): Promise<number> {
  const inherited = inheritedAcl(decodePosixAcl(defaultAcl), mode);
  if (isDir) await upper.setxattr(at, ACL_DEFAULT_XATTR, defaultAcl);
  if (inherited.needed) await upper.setxattr(at, ACL_ACCESS_XATTR, encodePosixAcl(inherited.entries));
  await upper.chmod(at, inherited.mode & 0o7777);
  return inherited.mode;
}
