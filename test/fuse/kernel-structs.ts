/**
 * The kernel's struct layouts written out field by field from include/uapi/linux/fuse.h (7.45),
 * independently of src/fuse, so that codec tests compare our bytes against the ABI itself.
 */

export type Field = [name: string, bytes: 1 | 2 | 4 | 8 | -4 | -8];
/** A struct: fields in declaration order; negative sizes are signed. */
export type Struct = Field[];

export const fuse_in_header: Struct = [
  ['len', 4],
  ['opcode', 4],
  ['unique', 8],
  ['nodeid', 8],
  ['uid', 4],
  ['gid', 4],
  ['pid', 4],
  ['total_extlen', 2],
  ['padding', 2],
];
export const fuse_out_header: Struct = [
  ['len', 4],
  ['error', -4],
  ['unique', 8],
];
export const fuse_attr: Struct = [
  ['ino', 8],
  ['size', 8],
  ['blocks', 8],
  ['atime', -8],
  ['mtime', -8],
  ['ctime', -8],
  ['atimensec', 4],
  ['mtimensec', 4],
  ['ctimensec', 4],
  ['mode', 4],
  ['nlink', 4],
  ['uid', 4],
  ['gid', 4],
  ['rdev', 4],
  ['blksize', 4],
  ['flags', 4],
];
export const fuse_entry_out: Struct = [
  ['nodeid', 8],
  ['generation', 8],
  ['entry_valid', 8],
  ['attr_valid', 8],
  ['entry_valid_nsec', 4],
  ['attr_valid_nsec', 4],
  ...prefix('attr.', fuse_attr),
];
export const fuse_attr_out: Struct = [['attr_valid', 8], ['attr_valid_nsec', 4], ['dummy', 4], ...prefix('attr.', fuse_attr)];
export const fuse_forget_in: Struct = [['nlookup', 8]];
export const fuse_forget_one: Struct = [
  ['nodeid', 8],
  ['nlookup', 8],
];
export const fuse_batch_forget_in: Struct = [
  ['count', 4],
  ['dummy', 4],
];
export const fuse_getattr_in: Struct = [
  ['getattr_flags', 4],
  ['dummy', 4],
  ['fh', 8],
];
export const fuse_mknod_in: Struct = [
  ['mode', 4],
  ['rdev', 4],
  ['umask', 4],
  ['padding', 4],
];
export const fuse_mkdir_in: Struct = [
  ['mode', 4],
  ['umask', 4],
];
export const fuse_rename_in: Struct = [['newdir', 8]];
export const fuse_rename2_in: Struct = [
  ['newdir', 8],
  ['flags', 4],
  ['padding', 4],
];
export const fuse_link_in: Struct = [['oldnodeid', 8]];
export const fuse_setattr_in: Struct = [
  ['valid', 4],
  ['padding', 4],
  ['fh', 8],
  ['size', 8],
  ['lock_owner', 8],
  ['atime', -8],
  ['mtime', -8],
  ['ctime', -8],
  ['atimensec', 4],
  ['mtimensec', 4],
  ['ctimensec', 4],
  ['mode', 4],
  ['unused4', 4],
  ['uid', 4],
  ['gid', 4],
  ['unused5', 4],
];
export const fuse_open_in: Struct = [
  ['flags', 4],
  ['open_flags', 4],
];
export const fuse_create_in: Struct = [
  ['flags', 4],
  ['mode', 4],
  ['umask', 4],
  ['open_flags', 4],
];
export const fuse_open_out: Struct = [
  ['fh', 8],
  ['open_flags', 4],
  ['backing_id', -4],
];
export const fuse_release_in: Struct = [
  ['fh', 8],
  ['flags', 4],
  ['release_flags', 4],
  ['lock_owner', 8],
];
export const fuse_flush_in: Struct = [
  ['fh', 8],
  ['unused', 4],
  ['padding', 4],
  ['lock_owner', 8],
];
export const fuse_read_in: Struct = [
  ['fh', 8],
  ['offset', 8],
  ['size', 4],
  ['read_flags', 4],
  ['lock_owner', 8],
  ['flags', 4],
  ['padding', 4],
];
export const fuse_write_in: Struct = [
  ['fh', 8],
  ['offset', 8],
  ['size', 4],
  ['write_flags', 4],
  ['lock_owner', 8],
  ['flags', 4],
  ['padding', 4],
];
export const fuse_write_out: Struct = [
  ['size', 4],
  ['padding', 4],
];
export const fuse_kstatfs: Struct = [
  ['blocks', 8],
  ['bfree', 8],
  ['bavail', 8],
  ['files', 8],
  ['ffree', 8],
  ['bsize', 4],
  ['namelen', 4],
  ['frsize', 4],
  ['padding', 4],
  ['spare0', 4],
  ['spare1', 4],
  ['spare2', 4],
  ['spare3', 4],
  ['spare4', 4],
  ['spare5', 4],
];
export const fuse_fsync_in: Struct = [
  ['fh', 8],
  ['fsync_flags', 4],
  ['padding', 4],
];
export const fuse_setxattr_in: Struct = [
  ['size', 4],
  ['flags', 4],
  ['setxattr_flags', 4],
  ['padding', 4],
];
export const fuse_setxattr_in_compat: Struct = [
  ['size', 4],
  ['flags', 4],
];
export const fuse_getxattr_in: Struct = [
  ['size', 4],
  ['padding', 4],
];
export const fuse_getxattr_out: Struct = [
  ['size', 4],
  ['padding', 4],
];
export const fuse_file_lock: Struct = [
  ['start', 8],
  ['end', 8],
  ['type', 4],
  ['pid', 4],
];
export const fuse_lk_in: Struct = [['fh', 8], ['owner', 8], ...prefix('lk.', fuse_file_lock), ['lk_flags', 4], ['padding', 4]];
export const fuse_access_in: Struct = [
  ['mask', 4],
  ['padding', 4],
];
export const fuse_init_in: Struct = [
  ['major', 4],
  ['minor', 4],
  ['max_readahead', 4],
  ['flags', 4],
  ['flags2', 4],
  ...Array.from({ length: 11 }, (_, i): Field => [`unused${i}`, 4]),
];
export const fuse_init_out: Struct = [
  ['major', 4],
  ['minor', 4],
  ['max_readahead', 4],
  ['flags', 4],
  ['max_background', 2],
  ['congestion_threshold', 2],
  ['max_write', 4],
  ['time_gran', 4],
  ['max_pages', 2],
  ['map_alignment', 2],
  ['flags2', 4],
  ['max_stack_depth', 4],
  ['request_timeout', 2],
  ...Array.from({ length: 11 }, (_, i): Field => [`unused${i}`, 2]),
];
export const fuse_interrupt_in: Struct = [['unique', 8]];
export const fuse_bmap_in: Struct = [
  ['block', 8],
  ['blocksize', 4],
  ['padding', 4],
];
export const fuse_ioctl_in: Struct = [
  ['fh', 8],
  ['flags', 4],
  ['cmd', 4],
  ['arg', 8],
  ['in_size', 4],
  ['out_size', 4],
];
export const fuse_ioctl_out: Struct = [
  ['result', -4],
  ['flags', 4],
  ['in_iovs', 4],
  ['out_iovs', 4],
];
export const fuse_poll_in: Struct = [
  ['fh', 8],
  ['kh', 8],
  ['flags', 4],
  ['events', 4],
];
export const fuse_poll_out: Struct = [
  ['revents', 4],
  ['padding', 4],
];
export const fuse_fallocate_in: Struct = [
  ['fh', 8],
  ['offset', 8],
  ['length', 8],
  ['mode', 4],
  ['padding', 4],
];
export const fuse_lseek_in: Struct = [
  ['fh', 8],
  ['offset', 8],
  ['whence', 4],
  ['padding', 4],
];
export const fuse_lseek_out: Struct = [['offset', 8]];
export const fuse_copy_file_range_in: Struct = [
  ['fh_in', 8],
  ['off_in', 8],
  ['nodeid_out', 8],
  ['fh_out', 8],
  ['off_out', 8],
  ['len', 8],
  ['flags', 8],
];
export const fuse_copy_file_range_out: Struct = [['bytes_copied', 8]];
export const fuse_syncfs_in: Struct = [['padding', 8]];
export const fuse_statx_in: Struct = [
  ['getattr_flags', 4],
  ['reserved', 4],
  ['fh', 8],
  ['sx_flags', 4],
  ['sx_mask', 4],
];
export const fuse_sx_time: Struct = [
  ['tv_sec', -8],
  ['tv_nsec', 4],
  ['__reserved', -4],
];
export const fuse_statx: Struct = [
  ['mask', 4],
  ['blksize', 4],
  ['attributes', 8],
  ['nlink', 4],
  ['uid', 4],
  ['gid', 4],
  ['mode', 2],
  ['__spare0', 2],
  ['ino', 8],
  ['size', 8],
  ['blocks', 8],
  ['attributes_mask', 8],
  ...prefix('atime.', fuse_sx_time),
  ...prefix('btime.', fuse_sx_time),
  ...prefix('ctime.', fuse_sx_time),
  ...prefix('mtime.', fuse_sx_time),
  ['rdev_major', 4],
  ['rdev_minor', 4],
  ['dev_major', 4],
  ['dev_minor', 4],
  ...Array.from({ length: 14 }, (_, i): Field => [`__spare2_${i}`, 8]),
];
export const fuse_statx_out: Struct = [['attr_valid', 8], ['attr_valid_nsec', 4], ['flags', 4], ['spare0', 8], ['spare1', 8], ...prefix('stat.', fuse_statx)];
export const fuse_notify_retrieve_in: Struct = [
  ['dummy1', 8],
  ['offset', 8],
  ['size', 4],
  ['dummy2', 4],
  ['dummy3', 8],
  ['dummy4', 8],
];
export const fuse_dirent: Struct = [
  ['ino', 8],
  ['off', 8],
  ['namelen', 4],
  ['type', 4],
];
export const fuse_notify_inval_inode_out: Struct = [
  ['ino', 8],
  ['off', -8],
  ['len', -8],
];
export const fuse_notify_inval_entry_out: Struct = [
  ['parent', 8],
  ['namelen', 4],
  ['flags', 4],
];
export const fuse_notify_delete_out: Struct = [
  ['parent', 8],
  ['child', 8],
  ['namelen', 4],
  ['padding', 4],
];
export const fuse_notify_store_out: Struct = [
  ['nodeid', 8],
  ['offset', 8],
  ['size', 4],
  ['padding', 4],
];
export const fuse_notify_retrieve_out: Struct = [
  ['notify_unique', 8],
  ['nodeid', 8],
  ['offset', 8],
  ['size', 4],
  ['padding', 4],
];
export const fuse_notify_poll_wakeup_out: Struct = [['kh', 8]];
export const fuse_notify_prune_out: Struct = [
  ['count', 4],
  ['padding', 4],
  ['spare', 8],
];
export const fuse_ext_header: Struct = [
  ['size', 4],
  ['type', 4],
];

function prefix(p: string, s: Struct): Struct {
  return s.map(([n, b]) => [p + n, b]);
}

export function sizeOf(s: Struct): number {
  return s.reduce((n, [, b]) => n + Math.abs(b), 0);
}

export type Values = Record<string, number | bigint>;

export function pack(s: Struct, v: Values): Buffer {
  const buf = Buffer.alloc(sizeOf(s));
  let at = 0;
  for (const [name, bytes] of s) {
    const x = v[name] ?? 0;
    switch (bytes) {
      case 1:
        buf.writeUInt8(Number(x), at);
        break;
      case 2:
        buf.writeUInt16LE(Number(x), at);
        break;
      case 4:
        buf.writeUInt32LE(Number(x) >>> 0, at);
        break;
      case -4:
        buf.writeInt32LE(Number(x), at);
        break;
      case 8:
        buf.writeBigUInt64LE(BigInt.asUintN(64, BigInt(x)), at);
        break;
      case -8:
        buf.writeBigInt64LE(BigInt(x), at);
        break;
    }
    at += Math.abs(bytes);
  }
  return buf;
}

/** Reads a struct; 64-bit fields come back as bigint, the rest as number. */
export function unpack(s: Struct, buf: Buffer, offset = 0): Record<string, number | bigint> {
  const out: Record<string, number | bigint> = {};
  let at = offset;
  for (const [name, bytes] of s) {
    switch (bytes) {
      case 1:
        out[name] = buf.readUInt8(at);
        break;
      case 2:
        out[name] = buf.readUInt16LE(at);
        break;
      case 4:
        out[name] = buf.readUInt32LE(at);
        break;
      case -4:
        out[name] = buf.readInt32LE(at);
        break;
      case 8:
        out[name] = buf.readBigUInt64LE(at);
        break;
      case -8:
        out[name] = buf.readBigInt64LE(at);
        break;
    }
    at += Math.abs(bytes);
  }
  return out;
}

/** A whole request as the kernel would write it: header, struct, then trailing bytes. */
export function kernelRequest(opcode: number, hdr: Values, body: Buffer[], extensions: Buffer = Buffer.alloc(0)): Buffer {
  const payload = Buffer.concat(body);
  const len = sizeOf(fuse_in_header) + payload.length + extensions.length;
  const head = pack(fuse_in_header, { ...hdr, len, opcode, total_extlen: extensions.length / 8 });
  return Buffer.concat([head, payload, extensions]);
}

export function cstr(s: string): Buffer {
  return Buffer.concat([Buffer.from(s), Buffer.alloc(1)]);
}
