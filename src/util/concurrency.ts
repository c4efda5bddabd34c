/**
 * Running many slow calls at once, a bounded number at a time, while consuming their results
 * strictly in order: a listing checks its entries concurrently yet answers as if it had checked
 * them one after another.
 */

/** What can cut a run short; a FUSE request's control is one. */
export interface Interruptible {
  readonly interrupted: boolean;
  onInterrupt(cb: () => void): void;
}

/** The run was interrupted; maps to EINTR wherever errors become errnos. */
export class Interrupted extends Error {
  readonly code = 'EINTR';

  constructor() {
    super('interrupted');
    this.name = 'Interrupted';
  }
}

export interface OrderedRun<T, R> {
  /** Calls pending at most. */
  limit: number;
  /** The call for one item: a promise, or a result at hand (no promise made for it). */
  run(item: T, index: number): R | Promise<R>;
  /**
   * Gets each result in item order, as soon as it and every one before it are in. Returning
   * false ends the run there (later results are dropped).
   */
  take(result: R, item: T, index: number): boolean | void;
  /**
   * Whether an item may start now. False holds it and everything after it until an earlier
   * result has been taken; with nothing left in flight, the run ends there.
   */
  admit?(item: T, index: number): boolean;
  /** Once interrupted, nothing more starts and the run rejects with Interrupted at once. */
  stop?: Interruptible;
}

const PENDING = 0;
const OK = 1;
const FAILED = 2;

/**
 * Runs `opts.run` over items[from…] with at most `opts.limit` calls pending and hands the
 * results to `opts.take` in order. A call that fails fails the run when its turn comes, as it
 * would have one call at a time; nothing after it starts once its failure is known.
 *
 * The calls are made by up to `limit` workers, each awaiting its call and then taking the next
 * item: per item that is one await, as a plain loop would make, and no closure or promise of
 * the run's own, so a run of fast calls costs about what a sequential loop does.
 */
export function forEachOrdered<T, R>(items: readonly T[], from: number, opts: OrderedRun<T, R>): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    // Per item from `from` on (kept dense: a READDIRPLUS starts anywhere in a long listing).
    const state: number[] = [];
    const values: Array<R | undefined> = [];
    const errors = new Map<number, unknown>();
    let head = from;
    let next = from;
    let end = items.length;
    let workers = 0;
    let over = false;
    const finish = (error?: unknown): void => {
      if (over) return;
      over = true;
      if (error === undefined) resolve();
      else reject(error);
    };
    /** Hands over, in order, whatever is ready at the head. */
    const drain = (): void => {
      while (!over && head < next && state[head - from] !== PENDING) {
        if (state[head - from] === FAILED) return finish(errors.get(head));
        const value = values[head - from] as R;
        values[head - from] = undefined;
        if (opts.take(value, items[head]!, head) === false) return finish();
        head++;
      }
    };
    /** The next item to start, or -1 when none may start now. */
    const claim = (): number => {
      if (over || next >= end) return -1;
      if (opts.stop?.interrupted) {
        finish(new Interrupted());
        return -1;
      }
      if (opts.admit && !opts.admit(items[next]!, next)) return -1;
      state.push(PENDING);
      values.push(undefined);
      return next++;
    };
    const work = async (first: number): Promise<void> => {
      try {
        for (let i = first; i >= 0; i = claim()) {
          try {
            const r = opts.run(items[i]!, i);
            values[i - from] = r instanceof Promise ? await r : r;
            state[i - from] = OK;
          } catch (error) {
            state[i - from] = FAILED;
            errors.set(i, error);
            end = Math.min(end, i + 1);
          }
          drain();
        }
      } catch (error) {
        finish(error);
      }
      workers--;
      pump();
    };
    /** Starts workers while items may start; ends the run once nothing is left to wait for. */
    const pump = (): void => {
      try {
        drain();
        while (!over && workers < opts.limit) {
          const i = claim();
          if (i < 0) break;
          workers++;
          void work(i);
        }
        if (workers === 0 && head === next) finish();
      } catch (error) {
        finish(error);
      }
    };
    opts.stop?.onInterrupt(() => finish(new Interrupted()));
    pump();
  });
}

/** The results of `run` over all items, in order, with at most `limit` calls in flight. */
export async function mapBounded<T, R>(
  items: readonly T[],
  limit: number,
  run: (item: T, index: number) => R | Promise<R>,
  stop?: Interruptible,
): Promise<R[]> {
  const out = new Array<R>(items.length);
  if (items.length === 0) return out;
  await forEachOrdered(items, 0, { limit, run, stop, take: (r, _item, i) => void (out[i] = r) });
  return out;
}
