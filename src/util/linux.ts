/**
 * Linux ABI numbers and types every layer shares, each defined once. What the native addon
 * exports (from the C headers) is taken from it; the rest, which no header the addon includes
 * gives it, is written here.
 */
import { C } from '../native';

function fromC(name: string): number {
  const v = C[name];
  if (v === undefined) throw new Error(`the native addon does not export ${name}`);
  return v;
}

/** A point in time as the kernel gives and takes it; for utimensat, nsec may be UTIME_NOW or UTIME_OMIT. */
export interface Timespec {
  sec: number;
  nsec: number;
}

/** What statfs(2) tells of a filesystem, as a layer reports it and a FUSE STATFS reply carries it. */
export interface StatfsFigures {
  blocks: number;
  bfree: number;
  bavail: number;
  files: number;
  ffree: number;
  bsize: number;
  namelen: number;
  frsize: number;
}

/** fcntl lock types (the same on every Linux architecture). */
export const F_RDLCK = 0;
export const F_WRLCK = 1;
export const F_UNLCK = 2;

export const S_IFMT = fromC('S_IFMT');
export const S_IFDIR = fromC('S_IFDIR');
export const S_IFREG = fromC('S_IFREG');
export const S_IFLNK = fromC('S_IFLNK');
export const S_IFCHR = fromC('S_IFCHR');
export const S_ISUID = 0o4000;
export const S_ISGID = 0o2000;
export const S_IXGRP = 0o010;

export const O_ACCMODE = 3;
export const O_PATH = fromC('O_PATH');
export const O_DIRECTORY = fromC('O_DIRECTORY');
export const O_NOFOLLOW = fromC('O_NOFOLLOW');
export const O_CLOEXEC = fromC('O_CLOEXEC');
export const O_CREAT = fromC('O_CREAT');
export const O_TMPFILE = fromC('O_TMPFILE');

export const AT_SYMLINK_NOFOLLOW = fromC('AT_SYMLINK_NOFOLLOW');
export const AT_REMOVEDIR = fromC('AT_REMOVEDIR');
export const UTIME_NOW = fromC('UTIME_NOW');
export const UTIME_OMIT = fromC('UTIME_OMIT');

export const RENAME_NOREPLACE = fromC('RENAME_NOREPLACE');
export const RENAME_EXCHANGE = fromC('RENAME_EXCHANGE');
export const RENAME_WHITEOUT = fromC('RENAME_WHITEOUT');

/** d_type of a directory entry (dirent.h). */
export const DT_UNKNOWN = 0;
export const DT_FIFO = 1;
export const DT_CHR = 2;
export const DT_DIR = 4;
export const DT_BLK = 6;
export const DT_REG = 8;
export const DT_LNK = 10;
export const DT_SOCK = 12;

/** Longest file name, in bytes. */
export const NAME_MAX = 255;
export const PAGE_SIZE = 4096;
export const MiB = 1024 * 1024;
