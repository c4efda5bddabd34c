/**
 * The kinds of lower layer a mount can name, and what each one does from the command line to
 * unmount: which lowers it claims (its URL scheme, or every other lower for the directory
 * backend), how its lowers are split out of `lowerdir`, parsed, checked before mounting,
 * described in messages, opened and closed. A new backend is declared in its own file and
 * takes one line in LOWER_BACKENDS below; nothing else names backends.
 */
import { DirLayer } from './dir-layer';
import { NfsLayer } from './nfs-layer';
import { describeNfsUrl, parseNfsUrl, type NfsUrl } from './nfs/url';
import type { ReadableLayer } from './types';

/** What the layout checks (src/cli/layout.ts) offer a backend for checking one of its lowers. */
export interface LowerCheck {
  /** How refusals name the layer: "lower layer", "lower layer 2". */
  readonly what: string;
  /**
   * The real path of a directory the mount must read and search; refuses the layout, naming
   * the problem (missing, not a directory, unreadable) as for the upper and work directories.
   */
  directory(path: string): Promise<string>;
}

/** A kind of lower layer; `Spec` is what a lower of that kind is, once parsed. */
export interface LowerBackend<Spec> {
  /** For logs and tests: "directory", "nfs". */
  readonly name: string;
  /**
   * The URL scheme of the lowers it takes ("nfs://", lower case; matched ignoring case), or
   * 'directory' for the default backend: every lower no scheme claims.
   */
  readonly scheme: `${Lowercase<string>}://` | 'directory';
  /**
   * How many characters at the start of a lower (one that starts with the scheme) `lowerdir`
   * keeps whole, colons included; 0 or absent: every unescaped colon splits.
   */
  wholeStart?(text: string): number;
  /** The lower as written (escapes removed); throws an Error whose message names the problem. */
  parse(text: string): Spec;
  /**
   * Checks on the system before anything is mounted, refusing through `check`; may resolve
   * the spec (a directory's real path). Absent: parsing is all that is checked.
   */
  check?(spec: Spec, check: LowerCheck): Promise<Spec>;
  /**
   * The local directory the lower is, which must neither hold nor be inside the mountpoint,
   * the upper or the work directory; absent for lowers that are not local directories.
   */
  localDirectory?(spec: Spec): string;
  /** For messages: a directory's path, an export's URL without its options. */
  describe(spec: Spec): string;
  /** Opens the layer (mounts an export); `label` names it in messages and logs. */
  open(spec: Spec, label: string): Promise<ReadableLayer>;
  /** Where locks taken through the mount on its files are also taken, for `ovshift ctl MNT status`. */
  readonly sharedLocks: string;
}

/** "nfs://HOST[:PORT]": the part of an nfs:// lower in which ':' does not separate layers. */
const NFS_AUTHORITY = /^nfs:\/\/(\[[^\]]*\]|[^/:?#[\]]*)(:\d+)?/i;

/** A directory: on a local filesystem or a kernel mount of any kind. */
export const directoryBackend: LowerBackend<string> = {
  name: 'directory',
  scheme: 'directory',
  parse: (text) => text,
  check: (path, c) => c.directory(path),
  localDirectory: (path) => path,
  describe: (path) => path,
  open: async (path, label) => new DirLayer(path, label),
  sharedLocks: 'OFD locks and flocks on the lower files',
};

/** An NFSv3 export reached in userspace; only parsed before mounting, the server is reached when it is opened. */
export const nfsBackend: LowerBackend<NfsUrl> = {
  name: 'nfs',
  scheme: 'nfs://',
  wholeStart: (text) => NFS_AUTHORITY.exec(text)?.[0].length ?? 0,
  parse: parseNfsUrl,
  describe: describeNfsUrl,
  open: (url, label) => NfsLayer.connect(url, label),
  sharedLocks: "the server's lock manager, NLM 4",
};

/** Every backend, one line each: those with a URL scheme, and the directory backend. */
// Each backend has its own Spec (its methods take it bivariantly); a backend is only handed specs it parsed itself.
export const LOWER_BACKENDS: readonly LowerBackend<unknown>[] = [nfsBackend, directoryBackend];

function defaultBackend(): LowerBackend<unknown> {
  const found = LOWER_BACKENDS.filter((b) => b.scheme === 'directory');
  if (found.length !== 1) throw new Error(`lower backends: ${found.length} claim the lowers without a scheme`);
  return found[0]!;
}

const DEFAULT_BACKEND = defaultBackend();

/** The backend a lower as written belongs to: the one whose scheme it starts with, else the directory backend. */
export function backendOf(text: string): LowerBackend<unknown> {
  const start = text.slice(0, text.indexOf('://') + 3).toLowerCase();
  return (start.length > 3 && LOWER_BACKENDS.find((b) => b.scheme === start)) || DEFAULT_BACKEND;
}
