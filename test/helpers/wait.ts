/**
 * Waiting for a condition the test can only poll (a daemon's log, a counter, a /proc entry).
 * Where an event exists (a child's 'exit', a stream's 'data'), tests wait for the event instead.
 */

export interface WaitOptions {
  /** How long to poll before failing (default 5000 ms). */
  timeoutMs?: number;
  /** The pause between two checks (default 20 ms). */
  intervalMs?: number;
  /** What is awaited, for the timeout's message ("the daemon's log line"); a function is asked at the timeout. */
  what: string | (() => string);
}

/**
 * Resolves as soon as `predicate` holds (checked at once, then every `intervalMs`); rejects
 * naming `what` once `timeoutMs` has passed without it, after one last check.
 */
export async function waitUntil(predicate: () => boolean | Promise<boolean>, opts: WaitOptions): Promise<void> {
  const timeoutMs = opts.timeoutMs ?? 5000;
  const intervalMs = opts.intervalMs ?? 20;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await predicate()) return;
    if (Date.now() >= deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${typeof opts.what === 'function' ? opts.what() : opts.what}`);
    await new Promise((r) => setTimeout(r, Math.min(intervalMs, Math.max(0, deadline - Date.now()))));
  }
}
