// The fore channel's slot table (RFC 8881 §2.10.6.1) of one session: each request in flight
// holds a slot, and the slot's sequence id tells the server a new request from a retry of the
// last one.

export interface Slot {
  readonly id: number;
  /** The sequence id the next request on this slot carries. */
  seq: number;
}

export class SlotTable {
  private readonly free: Slot[] = [];
  /** Requests waiting for a slot; told `undefined` when the table is dropped (the session went). */
  private readonly waiting: ((slot: Slot | undefined) => void)[] = [];
  /** Slots the server refused to go on with (misordered): never used again. */
  private readonly retired = new Set<number>();
  private limit: number;
  private dropped = false;

  constructor(
    /** The session whose slots these are: its requests carry this id. */
    readonly sessionId: Buffer,
    readonly size: number,
  ) {
    this.limit = size;
    for (let id = size - 1; id >= 0; id--) this.free.push({ id, seq: 1 });
  }

  /** The highest slot id in use or about to be: SEQUENCE's sa_highest_slotid. */
  get highest(): number {
    return this.size - 1;
  }

  /** Slots that can still be used, within the server's target. */
  get usable(): number {
    let n = 0;
    for (let id = 0; id < this.limit; id++) if (!this.retired.has(id)) n++;
    return n;
  }

  /** A free slot, once there is one; undefined once the table is dropped. */
  acquire(): Promise<Slot | undefined> {
    if (this.dropped) return Promise.resolve(undefined);
    const slot = this.takeFree();
    if (slot !== undefined) return Promise.resolve(slot);
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  /** The server's target_highest_slotid: slots above it wait until it rises again. */
  setTarget(highest: number): void {
    this.limit = Math.max(1, Math.min(this.size, highest + 1));
    this.wake();
  }

  release(slot: Slot): void {
    this.free.push(slot);
    this.wake();
  }

  retire(slot: Slot): void {
    this.retired.add(slot.id);
    // With none left under the target, the target no longer holds: the rest may serve.
    if (this.usable === 0) this.limit = this.size;
    this.wake();
  }

  /** The session is gone: whoever waits is told to start again on the next table. */
  drop(): void {
    this.dropped = true;
    for (const wake of this.waiting.splice(0)) wake(undefined);
  }

  private takeFree(): Slot | undefined {
    // Lowest ids first, so that a lowered target leaves the high ones idle.
    let best = -1;
    for (let i = 0; i < this.free.length; i++) {
      if (this.free[i]!.id < this.limit && (best < 0 || this.free[i]!.id < this.free[best]!.id)) best = i;
    }
    return best < 0 ? undefined : this.free.splice(best, 1)[0];
  }

  private wake(): void {
    while (this.waiting.length > 0) {
      const slot = this.takeFree();
      if (slot === undefined) return;
      this.waiting.shift()!(slot);
    }
  }
}
