import { LockSpan, locksConflict } from './conflict';
import { LockTable } from './lock-table';
import { F_RDLCK, F_WRLCK, ValidRequest } from './types';

export interface QueuedRequest {
  readonly request: ValidRequest;
  /** Whether it waits behind earlier conflicting waiters too, not only behind held locks. */
  yields: boolean;
  /** Refused by the external arbiter and waiting for its retry. */
  readonly deferred: boolean;
}

function conflictsWithAny(spans: readonly LockSpan[], span: LockSpan): boolean {
  return spans.some((other) => locksConflict(other, span));
}

/** The blocked requests of one family on one inode, in arrival (FIFO) order. */
export class WaiterQueue<W extends QueuedRequest> {
  private readonly order = new Set<W>();
  private readonly countByOwner = new Map<bigint, number>();
  private readonly byFh = new Map<number, Set<W>>();
  private nonYielding = 0;
  /** Covers every queued range; it only grows until the queue empties (cheap, conservative). */
  private hull: { start: bigint; end: bigint } | undefined;

  get size(): number {
    return this.order.size;
  }

  has(waiter: W): boolean {
    return this.order.has(waiter);
  }

  add(waiter: W): void {
    const { owner, fh, start, end } = waiter.request;
    this.order.add(waiter);
    this.countByOwner.set(owner, (this.countByOwner.get(owner) ?? 0) + 1);
    let sameFh = this.byFh.get(fh);
    if (sameFh === undefined) this.byFh.set(fh, (sameFh = new Set()));
    sameFh.add(waiter);
    if (!waiter.yields) this.nonYielding += 1;
    this.hull = this.hull && { start: min(this.hull.start, start), end: max(this.hull.end, end) };
    this.hull ??= { start, end };
  }

  remove(waiter: W): void {
    if (!this.order.delete(waiter)) return;
    const { owner, fh } = waiter.request;
    const count = (this.countByOwner.get(owner) ?? 1) - 1;
    if (count === 0) this.countByOwner.delete(owner);
    else this.countByOwner.set(owner, count);
    const sameFh = this.byFh.get(fh);
    sameFh?.delete(waiter);
    if (sameFh?.size === 0) this.byFh.delete(fh);
    if (!waiter.yields) this.nonYielding -= 1;
    if (this.order.size === 0) this.hull = undefined;
  }

  /** From now on the waiter waits only for held locks (it never yields again). */
  stopYielding(waiter: W): void {
    if (!waiter.yields || !this.order.has(waiter)) return;
    waiter.yields = false;
    this.nonYielding += 1;
  }

  withFh(fh: number): W[] {
    return [...(this.byFh.get(fh) ?? [])];
  }

  /** Whether a newcomer would conflict with someone already waiting. */
  conflictsWithWaiting(span: LockSpan): boolean {
    for (const waiter of this.order) {
      if (locksConflict(waiter.request, span)) return true;
    }
    return false;
  }

  /**
   * Yields, in FIFO order, each waiter that conflicts neither with held locks nor (if it
   * yields) with an earlier waiter that is still waiting. The caller grants each one (which
   * updates `table` and removes it from the queue) before asking for the next, or stops.
   */
  *grantable(table: LockTable): Generator<W> {
    const stillWaiting: LockSpan[] = [];
    const stillWaitingWriters: LockSpan[] = [];
    for (const waiter of this.order) {
      const { request } = waiter;
      const blocked =
        waiter.deferred ||
        table.findConflict(request) !== undefined ||
        (waiter.yields && conflictsWithAny(request.type === F_RDLCK ? stillWaitingWriters : stillWaiting, request));
      if (!blocked) {
        yield waiter;
        continue;
      }
      stillWaiting.push(request);
      if (request.type === F_WRLCK) stillWaitingWriters.push(request);
      if (this.blocksAllLaterWaiters(waiter)) return;
    }
  }

  /**
   * A still-waiting writer whose range covers every queued range blocks each later waiter that
   * yields, unless it is of the same owner; if no waiter ignores fairness, the rest of the scan
   * cannot grant anything. This keeps draining a long queue of writers linear, not quadratic.
   */
  private blocksAllLaterWaiters(waiter: W): boolean {
    const { request } = waiter;
    return (
      request.type === F_WRLCK &&
      this.hull !== undefined &&
      request.start <= this.hull.start &&
      request.end >= this.hull.end &&
      this.nonYielding === (waiter.yields ? 0 : 1) &&
      this.countByOwner.get(request.owner) === 1
    );
  }
}

function min(a: bigint, b: bigint): bigint {
  return a < b ? a : b;
}

function max(a: bigint, b: bigint): bigint {
  return a > b ? a : b;
}
