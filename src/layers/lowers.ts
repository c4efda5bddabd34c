/**
 * Opening the lower layers a mount names, each by its backend (directories, nfs:// exports
 * mounted with their own userspace NFS client…), and closing them again when the mount ends.
 */
import type { LowerLocation } from './lower-location';
import type { ReadableLayer } from './types';

export interface OpenLowers {
  readonly layers: ReadableLayer[];
  /** Closes every layer: directories let go, NFS exports unmounted (best effort, bounded). */
  close(): Promise<void>;
}

/** Opens every lower, all at once; on a failure, whatever was opened is closed again. */
export async function openLowers(locations: readonly LowerLocation[]): Promise<OpenLowers> {
  const label = (i: number): string =>
    locations.length > 1 ? `lower layer ${i + 1} (${locations[i]!.description})` : `lower layer (${locations[i]!.description})`;
  // Each open() starts before the next one is asked for: remote lowers connect in parallel.
  const settled = await Promise.allSettled(locations.map((where, i) => where.open(label(i))));
  const opened = settled.flatMap((s): ReadableLayer[] => (s.status === 'fulfilled' ? [s.value] : []));
  const close = async (): Promise<void> => {
    await Promise.all(opened.map(async (l) => l.close()));
  };
  const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
  if (failed) {
    await close();
    throw failed.reason;
  }
  return { layers: opened, close };
}
