/** What the overlay filesystem itself is told at mount (the CLI parses it from the user). */
import type { OverlayXattrs } from './format';

export interface OverlayOptions {
  /** Kernel cache timeout, in seconds, for entries and attributes that depend on the upper alone. */
  upperTimeout: number;
  /** Where the overlay's own xattrs live: trusted.overlay.* as root, user.overlay.* otherwise. */
  xattrs: OverlayXattrs;
  /** Renaming directories that have lower parts records a redirect; off answers EXDEV. */
  redirectDir: boolean;
  /** No upper layer: a read-only merged view. */
  readOnly: boolean;
}
