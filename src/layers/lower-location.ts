/**
 * Where a lower layer named on the command line is, whatever its backend (src/layers/backends.ts):
 * what the command line, the layout checks and the opening of the layers need of it.
 */
import { backendOf, type LowerBackend } from './backends';
import type { ReadableLayer } from './types';

/** A lower layer once parsed and checked, ready to be opened. */
export interface LowerLocation {
  /** The backend's name: "directory", "nfs". */
  readonly kind: string;
  /** For messages: a directory's path, an export's URL without its options. */
  readonly description: string;
  /** The local directory the lower is, for the layout's containment checks; undefined for a remote lower. */
  readonly directory: string | undefined;
  /** Opens the layer; `label` names it in messages and logs. */
  open(label: string): Promise<ReadableLayer>;
  /** Where locks on its files are also taken (its backend's sharedLocks). */
  readonly sharedLocks: string;
}

/** The location of a lower its backend parsed (and checked) as `spec`. */
export function locate<S>(backend: LowerBackend<S>, spec: S): LowerLocation {
  return {
    kind: backend.name,
    description: backend.describe(spec),
    directory: backend.localDirectory?.(spec),
    open: (label) => backend.open(spec, label),
    sharedLocks: backend.sharedLocks,
  };
}

/**
 * How many characters at the start of `text` (a lower as written in `lowerdir`) stay whole,
 * colons included: for nfs://, "nfs://HOST[:PORT]"; 0 when every unescaped colon splits.
 */
export function wholeStartLength(text: string): number {
  return backendOf(text).wholeStart?.(text) ?? 0;
}

/** Whether a lower given on the command line names a directory rather than a URL some backend claims. */
export function isDirectoryLower(text: string): boolean {
  return backendOf(text).scheme === 'directory';
}
