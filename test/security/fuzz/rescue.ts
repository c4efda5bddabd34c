/** Bounding what a hung mount could otherwise block forever. */

/**
 * Resolves as `work` does. If `work` has not settled after `ms`, runs `rescue` once, which must
 * make it settle: aborting the FUSE connection fails every request still waiting in it, where
 * SIGKILL alone may leave a process blocked in the kernel.
 */
export async function rescueAfter<T>(work: Promise<T>, ms: number, rescue: () => Promise<void>): Promise<T> {
  const timer = setTimeout(() => void rescue(), ms);
  try {
    return await work;
  } finally {
    clearTimeout(timer);
  }
}
