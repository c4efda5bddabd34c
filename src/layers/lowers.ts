/**
 * Opening the lower layers a mount names: directories, and nfs:// exports (each mounted with
 * its own userspace NFS client, unmounted again when the mount ends).
 */
import { DirLayer } from './dir-layer';
import { describeLower, type LowerLocation } from './lower-location';
import { NfsLayer } from './nfs-layer';
import type { ReadableLayer } from './types';

export interface OpenLowers {
  readonly layers: ReadableLayer[];
  /** Closes the directories and unmounts the NFS exports (best effort, bounded). */
  close(): Promise<void>;
}

/** Opens every lower, NFS exports in parallel; on a failure, whatever was opened is closed again. */
export async function openLowers(locations: readonly LowerLocation[]): Promise<OpenLowers> {
  const label = (i: number): string =>
    locations.length > 1 ? `lower layer ${i + 1} (${describeLower(locations[i]!)})` : `lower layer (${describeLower(locations[i]!)})`;
  const opening = locations.map(async (where, i): Promise<ReadableLayer> =>
    where.kind === 'dir' ? new DirLayer(where.path, label(i)) : NfsLayer.connect(where.url, label(i)));
  const settled = await Promise.allSettled(opening);
  const nfs = settled.flatMap((s) => (s.status === 'fulfilled' && s.value instanceof NfsLayer ? [s.value] : []));
  const close = async (): Promise<void> => {
    for (const s of settled) if (s.status === 'fulfilled' && s.value instanceof DirLayer) s.value.close();
    await Promise.all(nfs.map((l) => l.close()));
  };
  const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
  if (failed) {
    await close();
    throw failed.reason;
  }
  return { layers: settled.map((s) => (s as PromiseFulfilledResult<ReadableLayer>).value), close };
}
