import type { IdRange } from './ranges';

export interface IdMapSettings {
  /** What an unmapped layer id appears as (the kernel's overflowuid / overflowgid). */
  readonly overflowId: number;
  /** fuse-overlayfs's squash_to_*: every owner shown in attributes becomes this id. */
  readonly squashTo?: number;
}

/**
 * Translates one kind of id (uids or gids) between the layers and the view.
 *
 * Invariant: `ranges` do not overlap on either side (parseIdRanges guarantees it), so each
 * direction has at most one answer. With no ranges the map is the identity.
 */
export class IdMap {
  readonly overflowId: number;
  /** No ranges configured: ids inside xattrs pass unchanged. Squash still applies to toView. */
  readonly isIdentity: boolean;
  private readonly ranges: readonly IdRange[];
  private readonly squashTo: number | undefined;

  constructor(ranges: readonly IdRange[], settings: IdMapSettings) {
    this.ranges = ranges.map(({ layer, view, count }) => ({ layer, view, count }));
    this.isIdentity = ranges.length === 0;
    this.overflowId = settings.overflowId;
    this.squashTo = settings.squashTo;
  }

  /** The owner id shown in attributes for a layer owner id: squashed, mapped, or overflow. */
  toView(layerId: number): number {
    if (this.squashTo !== undefined) return this.squashTo;
    if (this.isIdentity) return layerId;
    return this.findView(layerId) ?? this.overflowId;
  }

  /**
   * The view id for a layer id by the ranges alone (no squash, no overflow), for ids that are
   * data rather than ownership: ACL entries and capability root ids.
   */
  findView(layerId: number): number | undefined {
    if (this.isIdentity) return layerId;
    for (const range of this.ranges) {
      const offset = layerId - range.layer;
      if (offset >= 0 && offset < range.count) return range.view + offset;
    }
    return undefined;
  }

  /**
   * The layer id a new object of a caller with this view id is stored with: mapped, or the
   * overflow id when the caller has no mapping. fuse-overlayfs stores it so, and podman relies
   * on it: it creates files in a container's root as its own unmapped id (/etc/mtab).
   */
  creatorToLayer(viewId: number): number {
    return this.toLayer(viewId) ?? this.overflowId;
  }

  /** The layer id for a view id, or undefined when unmapped (the caller answers EOVERFLOW). */
  toLayer(viewId: number): number | undefined {
    if (this.isIdentity) return viewId;
    for (const range of this.ranges) {
      const offset = viewId - range.view;
      if (offset >= 0 && offset < range.count) return range.layer + offset;
    }
    return undefined;
  }
}
