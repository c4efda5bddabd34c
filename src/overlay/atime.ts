/**
 * Reads of upper files move their atimes as the mount asks (AtimeMode). FUSE leaves atimes to
 * the filesystem: the kernel never sets one on a FUSE inode, it asks for it again after a read.
 *
 * Where the upper layer could apply the mount's rule itself (a private copy of its mount with
 * that rule: UpperDir.atimeRule), every read follows it, the kernel's passthrough reads too.
 * Otherwise the daemon does what it can: O_NOATIME for noatime, setting the atime after each
 * read it serves for strictatime; and since passthrough reads would then follow the upper
 * mount's own rule instead, files are not passed through unless that rule is relatime anyway.
 * Under strictatime, the kernel is never let keep an upper file's pages across opens: a read
 * it served from them would move no atime.
 */
import { constants as K } from 'fs';
import type { DescriptorFile } from '../layers/types';
import { errorCode } from '../util/errno';
import { UTIME_NOW, UTIME_OMIT } from '../util/linux';
import type { AtimeMode } from './options';

export class AtimePolicy {
  constructor(
    readonly mode: AtimeMode,
    /** The upper applies `mode` itself. */
    private readonly byUpper: boolean,
  ) {}

  /**
   * Opens an upper file for its data: with O_NOATIME where the daemon keeps noatime itself.
   * O_NOATIME is refused (EPERM) on a file the daemon neither owns nor may act as owner of (in
   * a user namespace that does not map the owner); that file is opened as it is.
   */
  async open<F>(flags: number, open: (flags: number) => Promise<F>): Promise<F> {
    if (this.byUpper || this.mode !== 'noatime') return open(flags);
    try {
      return await open(flags | K.O_NOATIME);
    } catch (err) {
      if (errorCode(err) !== 'EPERM') throw err;
      return open(flags);
    }
  }

  /** After a read the daemon served from an upper file. */
  async accessed(file: DescriptorFile): Promise<void> {
    if (!this.byUpper && this.mode === 'strictatime') await file.utimens({ sec: 0, nsec: UTIME_NOW }, { sec: 0, nsec: UTIME_OMIT });
  }

  /** Whether the kernel may read upper files itself (passthrough) and keep the atimes right. */
  get passthroughKeepsAtimes(): boolean {
    return this.byUpper || this.mode === 'relatime';
  }

  /** Whether the kernel may keep an upper file's pages across opens (reads without the daemon). */
  get pagesMayBeKept(): boolean {
    return this.mode !== 'strictatime';
  }
}
