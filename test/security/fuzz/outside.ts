/**
 * Objects outside the layers that share their filesystem (so the mount would show their own
 * inode numbers if it ever served them): the canary, the work dir, the mountpoint, the scratch
 * root, and the host's /, /etc, /tmp with what /etc holds.
 */
import { lstatSync, readdirSync } from 'fs';
import { join } from 'path';

export function outsideInodes(layerDev: number, scratchRoot: string, layerDirs: string[]): Map<number, string> {
  const out = new Map<number, string>();
  const add = (p: string): void => {
    try {
      const st = lstatSync(p);
      if (st.dev === layerDev) out.set(st.ino, p);
    } catch {
      // Gone, or unreadable: nothing the mount could show either.
    }
  };
  const addTree = (p: string): void => {
    add(p);
    let names: string[] = [];
    try {
      if (lstatSync(p).isDirectory()) names = readdirSync(p);
    } catch {
      return;
    }
    for (const n of names) addTree(join(p, n));
  };
  for (const p of ['/', '/tmp', '/etc']) add(p);
  for (const n of readdirSync('/etc')) add(join('/etc', n));
  add(scratchRoot);
  for (const n of readdirSync(scratchRoot)) {
    const p = join(scratchRoot, n);
    if (!layerDirs.includes(p)) addTree(p);
  }
  return out;
}
