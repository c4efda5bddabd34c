import { F_RDLCK, F_UNLCK, F_WRLCK, LockRequest, OFFSET_MAX } from '../../src/locks';

export const R = F_RDLCK;
export const W = F_WRLCK;
export const U = F_UNLCK;
export const MAX = OFFSET_MAX;

/** A POSIX-family request; fh and pid default to values derived from the owner. */
export function posix(owner: bigint, type: number, start = 0n, end = OFFSET_MAX, extra: { fh?: number; pid?: number } = {}): LockRequest {
  return { family: 'posix', owner, type, start, end, ...handleAndPid(owner, extra) };
}

export function flock(owner: bigint, type: number, extra: { fh?: number; pid?: number } = {}): LockRequest {
  return { family: 'flock', owner, type, start: 0n, end: OFFSET_MAX, ...handleAndPid(owner, extra) };
}

function handleAndPid(owner: bigint, extra: { fh?: number; pid?: number }): { fh: number; pid: number } {
  return { fh: extra.fh ?? Number(owner), pid: extra.pid ?? 1000 + Number(owner) };
}

/** Follows a promise's outcome: 'pending', 'granted', or the rejection's code. */
export interface Outcome {
  readonly state: string;
  readonly error: unknown;
}

export function track(done: Promise<void>): Outcome {
  const outcome = { state: 'pending', error: undefined as unknown };
  done.then(
    () => {
      outcome.state = 'granted';
    },
    (error: unknown) => {
      outcome.error = error;
      outcome.state = (error as { code?: string }).code ?? 'error';
    },
  );
  return outcome;
}

/** Lets promise callbacks and already-due I/O callbacks run. */
export function tick(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

export { sleep } from '../helpers/proc';

/** [type, start, end] of each lock, for compact comparisons. */
export function shapes(locks: readonly { type: number; start: bigint; end: bigint }[]): [number, bigint, bigint][] {
  return locks.map((lock) => [lock.type, lock.start, lock.end]);
}

/** A deferred promise the test resolves by hand. */
export interface Deferred<T> {
  readonly promise: Promise<T>;
  resolve(value: T): void;
  reject(error: Error): void;
}

export function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (error: Error) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}
