// Per-file-handle attribute cache (the `actimeo=` option). Absent when actimeo is 0.

import { LRUCache } from 'lru-cache';
import type { NfsAttr } from './nfs3';

const MAX_ENTRIES = 100_000;

export class AttrCache {
  private readonly entries: LRUCache<string, NfsAttr>;

  constructor(ttlSeconds: number) {
    this.entries = new LRUCache<string, NfsAttr>({ max: MAX_ENTRIES, ttl: ttlSeconds * 1000 });
  }

  get(fh: Buffer): NfsAttr | undefined {
    return this.entries.get(fh.toString('base64'));
  }

  set(fh: Buffer, attr: NfsAttr): void {
    this.entries.set(fh.toString('base64'), attr);
  }

  forget(fh: Buffer): void {
    this.entries.delete(fh.toString('base64'));
  }

  clear(): void {
    this.entries.clear();
  }
}
