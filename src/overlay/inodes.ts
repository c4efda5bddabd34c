/**
 * st_ino for merged objects. All layers on one filesystem: the layer's own inode number, so it
 * is stable across lookups and remounts. Layers on several filesystems: the number is moved
 * into a per-filesystem range (filesystem index × 2^48), stable as long as the layers are
 * given in the same order; numbers too large for that get a mount-unique fallback.
 */
const RANGE = 2 ** 48;
const MAX_FILESYSTEMS = 32;

export class InodeNumbers {
  private readonly fsIndex = new Map<number, number>();
  private fallback = 2 ** 53 - 1;

  /** Registers a layer filesystem; the first one registered keeps its numbers unchanged. */
  register(dev: number): void {
    if (!this.fsIndex.has(dev)) this.fsIndex.set(dev, this.fsIndex.size);
  }

  map(dev: number, ino: number): number {
    let index = this.fsIndex.get(dev);
    if (index === undefined) {
      this.register(dev);
      index = this.fsIndex.get(dev)!;
    }
    if (index === 0) return ino;
    if (ino < RANGE && index < MAX_FILESYSTEMS) return index * RANGE + ino;
    return this.fallback--;
  }
}
