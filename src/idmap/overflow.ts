import { readFileSync } from 'fs';

/** What unmapped ids appear as, per kind. */
export interface OverflowIds {
  readonly uid: number;
  readonly gid: number;
}

/** The kernel's default overflowuid/overflowgid, used when /proc cannot tell us. */
export const DEFAULT_OVERFLOW_ID = 65534;

/** Reads one overflow id file (e.g. /proc/sys/kernel/overflowuid); DEFAULT_OVERFLOW_ID if unusable. */
export function readOverflowId(path: string): number {
  let text: string;
  try {
    text = readFileSync(path, 'utf8').trim();
  } catch {
    return DEFAULT_OVERFLOW_ID;
  }
  return /^[0-9]{1,10}$/.test(text) && Number(text) < 0xffffffff ? Number(text) : DEFAULT_OVERFLOW_ID;
}

let systemIds: OverflowIds | undefined;

/** The system's overflow ids, read from /proc on first use and remembered. */
export function systemOverflowIds(): OverflowIds {
  systemIds ??= {
    uid: readOverflowId('/proc/sys/kernel/overflowuid'),
    gid: readOverflowId('/proc/sys/kernel/overflowgid'),
  };
  return systemIds;
}
