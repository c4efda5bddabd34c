import debug from 'debug';
import { toError } from './errors';

const log = debug('ovshift:locks');

/** A unit of work: synchronous, or asynchronous until its promise settles. */
export type Step = void | Promise<void>;

/**
 * Runs operations one at a time, in submission order. Synchronous operations run at once
 * (an operation submitted from inside another one runs right after it, never nested), so
 * without asynchronous work everything completes before `run` returns.
 */
export class SerialQueue {
  // A Set is an insertion-ordered FIFO with O(1) removal of its head.
  private readonly pending = new Set<() => Step>();
  private active = false;
  private closed = false;

  constructor(private readonly onIdle: () => void) {}

  get idle(): boolean {
    return !this.active && this.pending.size === 0;
  }

  run(operation: () => Step): void {
    if (this.closed) return;
    // Wrapping makes each submission a distinct Set entry, even for the same function.
    this.pending.add(() => operation());
    if (!this.active) this.drain();
  }

  /** Drops queued operations; nothing runs afterwards. */
  close(): void {
    this.closed = true;
    this.pending.clear();
  }

  private drain(): void {
    this.active = true;
    for (const operation of this.pending) {
      this.pending.delete(operation);
      if (this.closed) break;
      let step: Step;
      try {
        step = operation();
      } catch (error) {
        // Operations settle their own requests; reaching here is a bug, but the queue must live on.
        log('serial operation threw: %O', error);
        continue;
      }
      if (step instanceof Promise) {
        step.then(
          () => this.drain(),
          (error: unknown) => {
            log('serial operation failed: %O', error);
            this.drain();
          },
        );
        return;
      }
    }
    this.active = false;
    if (!this.closed) this.onIdle();
  }
}

/** Runs `next` after `step` (at once if it was synchronous); a failed step goes to `onError`. */
export function afterStep(step: Step, next: () => Step, onError: (error: Error) => void): Step {
  if (!(step instanceof Promise)) return next();
  return step.then(next, (error: unknown) => onError(toError(error)));
}
