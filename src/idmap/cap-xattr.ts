import { IdmapErrnoError } from './errno-error';
import type { IdMap } from './id-map';

/**
 * File capability values (include/uapi/linux/capability.h), little-endian: a u32 magic whose top
 * byte is the revision, then capability words. Revision 3 (vfs_ns_cap_data) ends with the u32
 * uid that is root in the namespace the capabilities are for; revisions 1 and 2 carry no id.
 */
export const CAP_XATTR = 'security.capability';

const REVISION_SHIFT = 24;
const SIZE_BY_REVISION: ReadonlyMap<number, number> = new Map([
  [1, 12],
  [2, 20],
  [3, 24],
]);
const ROOTID_REVISION = 3;
const ROOTID_OFFSET = 20;

/**
 * Translates a layer's capability value to the view: a v3 rootid is mapped; other revisions
 * are returned as they are. Returns null when the rootid has no mapping (the caller drops the
 * xattr), `value` itself when nothing changes. Throws EINVAL on a malformed value.
 */
export function capToView(value: Buffer, uids: IdMap): Buffer | null {
  return translateRootId(value, uids, (rootId) => uids.findView(rootId));
}

/** As capToView, from a value written through the view to the layer. */
export function capToLayer(value: Buffer, uids: IdMap): Buffer | null {
  return translateRootId(value, uids, (rootId) => uids.toLayer(rootId));
}

function translateRootId(value: Buffer, uids: IdMap, translate: (rootId: number) => number | undefined): Buffer | null {
  if (value.length < 4) {
    throw new IdmapErrnoError('EINVAL', `capability xattr of ${value.length} bytes has no header`);
  }
  const revision = value.readUInt32LE(0) >>> REVISION_SHIFT;
  const expectedSize = SIZE_BY_REVISION.get(revision);
  if (expectedSize === undefined) {
    throw new IdmapErrnoError('EINVAL', `capability xattr has unknown revision ${revision}`);
  }
  if (value.length !== expectedSize) {
    throw new IdmapErrnoError('EINVAL', `capability xattr revision ${revision} has ${value.length} bytes, expected ${expectedSize}`);
  }
  if (revision !== ROOTID_REVISION || uids.isIdentity) return value;

  const rootId = value.readUInt32LE(ROOTID_OFFSET);
  const newRootId = translate(rootId);
  if (newRootId === undefined) return null;
  if (newRootId === rootId) return value;
  const translated = Buffer.from(value);
  translated.writeUInt32LE(newRootId, ROOTID_OFFSET);
  return translated;
}
