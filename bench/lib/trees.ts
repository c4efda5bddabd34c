/** Scratch directories and the file trees the workloads run on. */
import { closeSync, mkdirSync, mkdtempSync, openSync, rmSync, writeSync } from 'fs';
import { join } from 'path';
import type { Cleanup } from './cleanup';
import { mountpoints } from './mounts';

export const MiB = 1024 * 1024;
export const GiB = 1024 * MiB;

/**
 * Removes a tree, but never through a mount: if anything is still mounted at or below it,
 * removing would reach into that filesystem (a bind of a lower, say), so it refuses.
 */
export async function removeTree(dir: string): Promise<void> {
  const inside = (await mountpoints()).filter((m) => m === dir || m.startsWith(`${dir}/`));
  if (inside.length) throw new Error(`not removing ${dir}: still mounted there: ${inside.join(', ')}`);
  rmSync(dir, { recursive: true, force: true });
}

/** A new directory `parent/prefixXXXXXX`, removed at cleanup (after what was set up inside it). */
export function scratchDir(cleanup: Cleanup, parent: string, prefix: string): string {
  const dir = mkdtempSync(join(parent, prefix));
  cleanup.add(`scratch dir ${dir}`, () => removeTree(dir));
  return dir;
}

/** A subdirectory, made if missing; returns its path. */
export function subdir(parent: string, ...names: string[]): string {
  const dir = join(parent, ...names);
  mkdirSync(dir, { recursive: true });
  return dir;
}

/** Bytes that are neither zero nor compressible-looking runs, so no layer can shortcut them. */
function pattern(size: number): Buffer {
  const buf = Buffer.alloc(size);
  let x = 0x9e3779b9;
  for (let i = 0; i < size; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    buf.writeUInt32LE(x >>> 0, i);
  }
  return buf;
}

/** A file of `bytes` bytes of pattern data. */
export function makeFile(path: string, bytes: number): void {
  const chunk = pattern(MiB);
  const fd = openSync(path, 'wx');
  try {
    for (let done = 0; done < bytes; done += chunk.length) writeSync(fd, chunk, 0, Math.min(chunk.length, bytes - done));
  } finally {
    closeSync(fd);
  }
}

/**
 * `files` small files (sizes spread over 0…8 KiB) in `dirs` directories of `dir`, named
 * d<i>/f<j>; returns the total bytes.
 */
export function makeSmallFiles(dir: string, dirs: number, files: number): number {
  const data = pattern(8192);
  let total = 0;
  for (let i = 0; i < files; i++) {
    const parent = subdir(dir, `d${i % dirs}`);
    const size = (i * 2731) % 8193;
    const fd = openSync(join(parent, `f${i}`), 'wx');
    writeSync(fd, data, 0, size);
    closeSync(fd);
    total += size;
  }
  return total;
}
