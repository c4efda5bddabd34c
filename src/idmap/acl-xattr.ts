import { IdmapErrnoError } from './errno-error';
import type { IdMap } from './id-map';

/**
 * POSIX ACL xattr values (include/uapi/linux/posix_acl_xattr.h): a u32 version header, then
 * 8-byte entries {u16 tag, u16 perm, u32 id}, all little-endian. Only ACL_USER and ACL_GROUP
 * entries carry ids.
 */
export const ACL_ACCESS_XATTR = 'system.posix_acl_access';
export const ACL_DEFAULT_XATTR = 'system.posix_acl_default';

const ACL_XATTR_VERSION = 2;
const HEADER_SIZE = 4;
const ENTRY_SIZE = 8;
const ID_OFFSET = 4;
const ACL_USER = 0x02;
const ACL_GROUP = 0x08;

type TranslateId = (id: number, tag: 'user' | 'group') => number;

/** A POSIX ACL entry: its tag (ACL_USER_OBJ 0x01 … ACL_OTHER 0x20), permissions (rwx: 4 2 1), id where the tag has one. */
export interface PosixAclEntry {
  tag: number;
  perm: number;
  id?: number;
}

export const PosixAclTag = { USER_OBJ: 0x01, USER: ACL_USER, GROUP_OBJ: 0x04, GROUP: 0x08, MASK: 0x10, OTHER: 0x20 } as const;

/** The xattr value of an ACL, its entries in the order the kernel requires (by tag, then id). */
export function encodePosixAcl(entries: readonly PosixAclEntry[]): Buffer {
  const sorted = [...entries].sort((a, b) => a.tag - b.tag || (a.id ?? 0) - (b.id ?? 0));
  const value = Buffer.alloc(HEADER_SIZE + ENTRY_SIZE * sorted.length);
  value.writeUInt32LE(ACL_XATTR_VERSION, 0);
  sorted.forEach((e, i) => {
    const at = HEADER_SIZE + i * ENTRY_SIZE;
    value.writeUInt16LE(e.tag, at);
    value.writeUInt16LE(e.perm, at + 2);
    value.writeUInt32LE(e.id ?? 0xffffffff, at + ID_OFFSET);
  });
  return value;
}

/** The entries of an ACL xattr value. Throws EINVAL on a malformed value. */
export function decodePosixAcl(value: Buffer): PosixAclEntry[] {
  checkAcl(value);
  const entries: PosixAclEntry[] = [];
  for (let at = HEADER_SIZE; at < value.length; at += ENTRY_SIZE) {
    const tag = value.readUInt16LE(at);
    const perm = value.readUInt16LE(at + 2);
    entries.push(tag === ACL_USER || tag === ACL_GROUP ? { tag, perm, id: value.readUInt32LE(at + ID_OFFSET) } : { tag, perm });
  }
  return entries;
}

function checkAcl(value: Buffer): void {
  if (value.length < HEADER_SIZE || (value.length - HEADER_SIZE) % ENTRY_SIZE !== 0) {
    throw new IdmapErrnoError('EINVAL', `ACL xattr of ${value.length} bytes is not a header plus whole entries`);
  }
  const version = value.readUInt32LE(0);
  if (version !== ACL_XATTR_VERSION) {
    throw new IdmapErrnoError('EINVAL', `ACL xattr version ${version}, expected ${ACL_XATTR_VERSION}`);
  }
}

/**
 * Translates the ids of a layer's ACL value to the view; unmapped ids become the overflow id.
 * Returns `value` itself when no id changes. Throws EINVAL on a malformed value.
 */
export function aclToView(value: Buffer, uids: IdMap, gids: IdMap): Buffer {
  return translateAcl(value, uids, gids, (id, tag) => {
    const map = tag === 'user' ? uids : gids;
    return map.findView(id) ?? map.overflowId;
  });
}

/**
 * Translates the ids of an ACL value written through the view to the layer. Returns `value`
 * itself when no id changes. Throws EOVERFLOW when an id has no mapping, EINVAL when malformed.
 */
export function aclToLayer(value: Buffer, uids: IdMap, gids: IdMap): Buffer {
  return translateAcl(value, uids, gids, (id, tag) => {
    const layerId = (tag === 'user' ? uids : gids).toLayer(id);
    if (layerId === undefined) {
      throw new IdmapErrnoError('EOVERFLOW', `ACL names ${tag} ${id}, which has no mapping to the layers`);
    }
    return layerId;
  });
}

function translateAcl(value: Buffer, uids: IdMap, gids: IdMap, translate: TranslateId): Buffer {
  checkAcl(value);
  if (uids.isIdentity && gids.isIdentity) return value;

  // Copied on the first changed id, so an ACL whose ids all stay put is returned as is.
  let translated: Buffer | undefined;
  for (let entry = HEADER_SIZE; entry < value.length; entry += ENTRY_SIZE) {
    const tag = value.readUInt16LE(entry);
    if (tag !== ACL_USER && tag !== ACL_GROUP) continue;
    const id = value.readUInt32LE(entry + ID_OFFSET);
    const newId = translate(id, tag === ACL_USER ? 'user' : 'group');
    if (newId === id) continue;
    translated ??= Buffer.from(value);
    translated.writeUInt32LE(newId, entry + ID_OFFSET);
  }
  return translated ?? value;
}
