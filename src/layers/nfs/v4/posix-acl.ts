/**
 * An NFSv4 ACL as POSIX ACLs, where it is exactly one: the reverse of the mapping Linux's nfsd
 * uses to show a POSIX ACL over NFSv4 (fs/nfsd/nfs4acl.c). A candidate POSIX ACL is read off
 * the ACL's ALLOW entries, mapped forward the way nfsd would, and kept only if that gives back
 * the same entries (same order, same principals, same effect on read, write and execute): then
 * the POSIX ACL grants exactly what the NFSv4 ACL did. Otherwise there is no POSIX ACL, and the
 * reason says why.
 */
import { ACL_ACCESS_XATTR, ACL_DEFAULT_XATTR, encodePosixAcl, PosixAclTag, type PosixAclEntry } from '../../../idmap';
import type { Nfs4Ace } from './attrs';
import { certainId } from './owners';
import { AceFlag, AceType } from './protocol';

/** ACE access mask bits (RFC 8881 §6.2.1.3.1). */
const Ace = {
  READ_DATA: 0x1,
  WRITE_DATA: 0x2,
  APPEND_DATA: 0x4,
  EXECUTE: 0x20,
  DELETE_CHILD: 0x40,
  READ_ATTRIBUTES: 0x80,
  WRITE_ATTRIBUTES: 0x100,
  DELETE: 0x10000,
  READ_ACL: 0x20000,
  WRITE_ACL: 0x40000,
  WRITE_OWNER: 0x80000,
  SYNCHRONIZE: 0x100000,
} as const;

/** The bits a POSIX ACL can say anything about; the others (attributes, named attributes, sync) are ignored both ways. */
const SIGNIFICANT =
  Ace.READ_DATA | Ace.WRITE_DATA | Ace.APPEND_DATA | Ace.EXECUTE | Ace.DELETE_CHILD | Ace.DELETE | Ace.WRITE_ACL | Ace.WRITE_OWNER | Ace.WRITE_ATTRIBUTES;
const INHERIT = AceFlag.FILE_INHERIT | AceFlag.DIRECTORY_INHERIT;
const DEFAULT_FLAGS = INHERIT | AceFlag.INHERIT_ONLY;

const R = 4;
const W = 2;
const X = 1;

/** Who an ACE is about, as the comparison sees it. */
type Who = 'OWNER@' | 'GROUP@' | 'EVERYONE@' | `user ${number}` | `group ${number}`;

interface Ace4 {
  type: number;
  flag: number;
  mask: number;
  who: Who;
}

/** nfsd's mask_from_posix: what an ALLOW ACE grants for `perm`. */
function allowMask(perm: number, isDir: boolean, owner: boolean): number {
  let mask = Ace.READ_ATTRIBUTES | Ace.READ_ACL | Ace.SYNCHRONIZE;
  if (owner) mask |= Ace.WRITE_ATTRIBUTES | Ace.WRITE_ACL;
  return mask | denyMask(perm, isDir);
}

/** nfsd's deny_mask_from_posix: what a DENY ACE refuses for `perm`. */
function denyMask(perm: number, isDir: boolean): number {
  let mask = 0;
  if (perm & R) mask |= Ace.READ_DATA;
  if (perm & W) mask |= Ace.WRITE_DATA | Ace.APPEND_DATA | (isDir ? Ace.DELETE_CHILD : 0);
  if (perm & X) mask |= Ace.EXECUTE;
  return mask;
}

/** The ACEs nfsd shows for a POSIX ACL (access, or a directory's default one). */
export function posixToNfs4(entries: readonly PosixAclEntry[], isDir: boolean, isDefault: boolean): Ace4[] {
  const eflag = isDefault ? DEFAULT_FLAGS : 0;
  const of = (tag: number): PosixAclEntry[] => entries.filter((e) => e.tag === tag).sort((a, b) => (a.id ?? 0) - (b.id ?? 0));
  const perm = (tag: number): number => of(tag)[0]?.perm ?? 0;
  const mask = of(PosixAclTag.MASK)[0]?.perm ?? 7;
  const users = of(PosixAclTag.USER).reduce((p, e) => p | e.perm, 0) & mask;
  const groups = of(PosixAclTag.GROUP).reduce((p, e) => p | e.perm, 0) & mask;
  const group = perm(PosixAclTag.GROUP_OBJ) & mask;
  const other = perm(PosixAclTag.OTHER);
  const out: Ace4[] = [];
  const ace = (type: number, bits: number, who: Who, extra = 0): void => {
    out.push({ type, flag: eflag | extra, mask: bits, who });
  };

  let deny = ~perm(PosixAclTag.USER_OBJ) & (users | group | groups | other) & 7;
  if (deny) ace(AceType.DENY, denyMask(deny, isDir), 'OWNER@');
  ace(AceType.ALLOW, allowMask(perm(PosixAclTag.USER_OBJ), isDir, true), 'OWNER@');
  for (const u of of(PosixAclTag.USER)) {
    deny = ~(u.perm & mask) & (groups | group | other) & 7;
    if (deny) ace(AceType.DENY, denyMask(deny, isDir), `user ${u.id ?? 0}`);
    ace(AceType.ALLOW, allowMask(u.perm & mask, isDir, false), `user ${u.id ?? 0}`);
  }
  // Groups: every ALLOW first, then the DENYs (a user may be in several groups).
  ace(AceType.ALLOW, allowMask(group, isDir, false), 'GROUP@');
  for (const g of of(PosixAclTag.GROUP)) ace(AceType.ALLOW, allowMask(g.perm & mask, isDir, false), `group ${g.id ?? 0}`, AceFlag.IDENTIFIER_GROUP);
  deny = ~group & other & 7;
  if (deny) ace(AceType.DENY, denyMask(deny, isDir), 'GROUP@');
  for (const g of of(PosixAclTag.GROUP)) {
    deny = ~(g.perm & mask) & other & 7;
    if (deny) ace(AceType.DENY, denyMask(deny, isDir), `group ${g.id ?? 0}`, AceFlag.IDENTIFIER_GROUP);
  }
  ace(AceType.ALLOW, allowMask(other, isDir, false), 'EVERYONE@');
  return out;
}

/** The ACE's principal; undefined for one with no certain local id (an unknown name, another domain's). */
function whoOf(a: Nfs4Ace): Who | undefined {
  const text = a.who.toString('utf8');
  if (text === 'OWNER@' || text === 'GROUP@' || text === 'EVERYONE@') return text;
  const isGroup = (a.flag & AceFlag.IDENTIFIER_GROUP) !== 0;
  const id = certainId(a.who, isGroup);
  if (id === undefined) return undefined;
  return isGroup ? `group ${id}` : `user ${id}`;
}

function permOf(mask: number): number {
  return (mask & Ace.READ_DATA ? R : 0) | (mask & Ace.WRITE_DATA ? W : 0) | (mask & Ace.EXECUTE ? X : 0);
}

/** The ACEs that change anything, their masks cut to what POSIX ACLs can express. */
function effective(aces: readonly Ace4[]): Ace4[] {
  return aces
    .filter((a) => a.type === AceType.ALLOW || a.type === AceType.DENY)
    .map((a) => ({ ...a, flag: a.flag & ~AceFlag.INHERITED, mask: a.mask & SIGNIFICANT }))
    .filter((a) => a.mask !== 0);
}

function same(a: readonly Ace4[], b: readonly Ace4[]): boolean {
  return a.length === b.length && a.every((x, i) => x.type === b[i]!.type && x.flag === b[i]!.flag && x.mask === b[i]!.mask && x.who === b[i]!.who);
}

/** The POSIX ACL the ALLOW entries describe; the mask covers every named entry and the owning group. */
function candidate(aces: readonly Ace4[]): PosixAclEntry[] {
  const entries: PosixAclEntry[] = [];
  const allowed = (who: Who): number => permOf(aces.find((a) => a.type === AceType.ALLOW && a.who === who)?.mask ?? 0);
  entries.push({ tag: PosixAclTag.USER_OBJ, perm: allowed('OWNER@') });
  entries.push({ tag: PosixAclTag.GROUP_OBJ, perm: allowed('GROUP@') });
  entries.push({ tag: PosixAclTag.OTHER, perm: allowed('EVERYONE@') });
  const named = new Set(aces.map((a) => a.who).filter((w) => w.startsWith('user ') || w.startsWith('group ')));
  let mask = allowed('GROUP@');
  for (const who of named) {
    const perm = allowed(who as Who);
    mask |= perm;
    const [kind, id] = who.split(' ');
    entries.push({ tag: kind === 'user' ? PosixAclTag.USER : PosixAclTag.GROUP, perm, id: Number(id) });
  }
  if (named.size > 0) entries.push({ tag: PosixAclTag.MASK, perm: mask });
  return entries;
}

export type PosixAcls = { xattrs: { name: string; value: Buffer }[] } | { inexact: string };

/**
 * The POSIX ACLs (access, and default for a directory) that grant exactly what `aces` grants,
 * or why there are none.
 */
export function nfs4ToPosixAcls(aces: readonly Nfs4Ace[], isDir: boolean): PosixAcls {
  const parsed: Ace4[] = [];
  for (const a of aces) {
    const who = whoOf(a);
    if (who === undefined) {
      return {
        inexact: `it names ${a.flag & AceFlag.IDENTIFIER_GROUP ? 'group' : 'user'} '${a.who.toString('utf8')}', which has no certain id here (unknown, or of another NFSv4 domain)`,
      };
    }
    parsed.push({ type: a.type, flag: a.flag, mask: a.mask, who });
  }
  const all = effective(parsed);
  const access = all.filter((a) => (a.flag & (INHERIT | AceFlag.INHERIT_ONLY)) === 0);
  const inherited = all.filter((a) => (a.flag & (INHERIT | AceFlag.INHERIT_ONLY)) !== 0);
  if (inherited.some((a) => (a.flag & DEFAULT_FLAGS) !== DEFAULT_FLAGS))
    return { inexact: 'an entry is inherited by files or directories only, or applies here and is inherited' };
  if (inherited.length > 0 && !isDir) return { inexact: 'a file has inheritable entries' };
  const xattrs: { name: string; value: Buffer }[] = [];
  for (const [part, name, isDefault] of [
    [access, ACL_ACCESS_XATTR, false],
    [inherited, ACL_DEFAULT_XATTR, true],
  ] as const) {
    if (part.length === 0 && isDefault) continue;
    const entries = candidate(part);
    if (!same(part, effective(posixToNfs4(entries, isDir, isDefault)))) {
      return {
        inexact: `its ${isDefault ? 'inheritable' : 'own'} entries are not in the form a POSIX ACL takes (order, DENY entries, or permissions beyond read, write and execute)`,
      };
    }
    xattrs.push({ name, value: encodePosixAcl(entries) });
  }
  return { xattrs };
}
