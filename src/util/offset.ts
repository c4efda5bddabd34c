/**
 * 64-bit file offsets, one rule for every layer: an offset that only addresses bytes moved through
 * a Buffer (read, write, readdir positions, notify store/retrieve) is a Number, exact below 2^53
 * as Node's own fs takes it; an offset that can name any point of a file up to 2^63 - 1 (lseek,
 * fallocate, copy_file_range, lock ranges) is a bigint, never above OFFSET_MAX.
 */

/** Largest file offset (loff_t); a lock range ending here covers "to EOF and beyond". */
export const OFFSET_MAX = 0x7fffffffffffffffn;
