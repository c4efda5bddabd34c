/**
 * Whether following "waits for" edges from the owners in `from` reaches `target`. Each owner's
 * edges lead to the owners holding locks its waiting requests conflict with, on any inode, so
 * a cycle through several inodes is found as well.
 */
export function waitsTransitivelyFor(from: Iterable<bigint>, target: bigint, blockersOf: (owner: bigint) => Iterable<bigint>): boolean {
  const seen = new Set<bigint>();
  const stack = [...from];
  for (let owner = stack.pop(); owner !== undefined; owner = stack.pop()) {
    if (owner === target) return true;
    if (seen.has(owner)) continue;
    seen.add(owner);
    for (const blocker of blockersOf(owner)) {
      if (!seen.has(blocker)) stack.push(blocker);
    }
  }
  return false;
}
