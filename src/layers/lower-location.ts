/** Where a lower layer named on the command line is: a directory or an nfs:// export. */
import { describeNfsUrl, type NfsUrl } from './nfs/url';

export type LowerLocation = { kind: 'dir'; path: string } | { kind: 'nfs'; url: NfsUrl };

const NFS_SCHEME = /^nfs:\/\//i;
/** "nfs://HOST[:PORT]": the part of an nfs:// lower in which ':' does not separate layers. */
const NFS_AUTHORITY = /^nfs:\/\/(\[[^\]]*\]|[^/:?#[\]]*)(:\d+)?/i;

/** Whether a lower given on the command line is an nfs:// URL rather than a directory. */
export function isNfsLower(text: string): boolean {
  return NFS_SCHEME.test(text);
}

/** Length of the "nfs://HOST[:PORT]" that starts `text`, 0 when it is not an nfs:// URL. */
export function nfsAuthorityLength(text: string): number {
  return NFS_AUTHORITY.exec(text)?.[0].length ?? 0;
}

/** The layer for messages: a directory's path, an export's URL without its options. */
export function describeLower(location: LowerLocation): string {
  return location.kind === 'dir' ? location.path : describeNfsUrl(location.url);
}
