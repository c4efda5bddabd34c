/**
 * Writing crafted layers to disk and snapshotting them, through layers.py (Python has mknod and
 * xattr calls; one process does a whole scenario).
 */
import { existsSync, writeFileSync } from 'fs';
import { resolve } from 'path';
import { run } from '../../helpers/proc';
import type { LayerPlan } from './crafted-layers';

const SCRIPT = resolve(__dirname, '..', '..', '..', '..', 'test', 'security', 'fuzz', 'layers.py');

/** pyenv's shim costs a second a start; the system interpreter a few milliseconds. */
export const PYTHON = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';

export interface SnapshotEntry {
  type: 'd' | 'f' | 'l' | 'c' | 'b' | 'p' | 's' | '?';
  ino: number;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  /** Nanoseconds, in decimal. */
  mtime: string;
  ctime: string;
  sha?: string;
  target?: string;
  rdev?: [number, number];
  /** name → hex value */
  xattrs: Record<string, string>;
}

/** Relative path ('.' for the root) → what is there. */
export type Snapshot = Record<string, SnapshotEntry>;

async function layersPy(args: string[]): Promise<string> {
  const r = await run(PYTHON, [SCRIPT, ...args], { timeoutMs: 60000 });
  if (r.code !== 0) throw new Error(`layers.py ${args[0]} exited ${r.code ?? r.signal}: ${r.stderr.trim()}`);
  return r.stdout;
}

/** Writes the layers; returns the xattrs the filesystem would not take. */
export async function writeLayers(plans: LayerPlan[], planFile: string): Promise<string[]> {
  const json = {
    layers: plans.map((p) => ({
      dir: p.dir,
      entries: p.entries,
      xattrs: p.xattrs.map((x) => ({ path: x.path, name: x.name, value: x.value.toString('hex') })),
    })),
  };
  writeFileSync(planFile, JSON.stringify(json));
  const out = JSON.parse(await layersPy(['apply', planFile])) as { skipped: Array<{ path: string; name: string; error: string }> };
  return out.skipped.map((s) => `${s.path} ${s.name}: ${s.error}`);
}

/** dir → its snapshot. */
export async function snapshotLayers(dirs: string[]): Promise<Record<string, Snapshot>> {
  return JSON.parse(await layersPy(['snapshot', ...dirs])) as Record<string, Snapshot>;
}
