interface OwnerState<W> {
  inodesHeld: number;
  readonly waiters: Set<W>;
}

/** Per family: on how many inodes each owner holds locks, and which of its requests wait. */
export class OwnerRegistry<W> {
  private readonly owners = new Map<bigint, OwnerState<W>>();

  holdsAny(owner: bigint): boolean {
    return (this.owners.get(owner)?.inodesHeld ?? 0) > 0;
  }

  /** Returns true when these are the owner's first locks anywhere in the family. */
  startedHoldingOnInode(owner: bigint): boolean {
    const state = this.stateOf(owner);
    state.inodesHeld += 1;
    return state.inodesHeld === 1;
  }

  stoppedHoldingOnInode(owner: bigint): void {
    const state = this.stateOf(owner);
    state.inodesHeld -= 1;
    this.forgetIfIdle(owner, state);
  }

  addWaiter(owner: bigint, waiter: W): void {
    this.stateOf(owner).waiters.add(waiter);
  }

  removeWaiter(owner: bigint, waiter: W): void {
    const state = this.stateOf(owner);
    state.waiters.delete(waiter);
    this.forgetIfIdle(owner, state);
  }

  waitersOf(owner: bigint): readonly W[] {
    return [...(this.owners.get(owner)?.waiters ?? [])];
  }

  clear(): void {
    this.owners.clear();
  }

  private stateOf(owner: bigint): OwnerState<W> {
    let state = this.owners.get(owner);
    if (state === undefined) this.owners.set(owner, (state = { inodesHeld: 0, waiters: new Set() }));
    return state;
  }

  private forgetIfIdle(owner: bigint, state: OwnerState<W>): void {
    if (state.inodesHeld === 0 && state.waiters.size === 0) this.owners.delete(owner);
  }
}
