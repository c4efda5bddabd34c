import debug from 'debug';
import { toError } from './errors';
import { ExternalAnswer, ExternalLocks, LockRequest } from './types';

const log = debug('ovshift:locks');

/** Asks the arbiter; a synchronous throw becomes a rejection like any other arbiter failure. */
export function askExternal(external: ExternalLocks, ino: number, request: LockRequest, wait = false): Promise<ExternalAnswer> {
  return new Promise((resolve) => resolve(external.apply(ino, request, wait)));
}

/**
 * Tells the arbiter about released locks, one after the other. Every release is attempted even
 * if an earlier one failed; the first failure is then thrown.
 */
export async function releaseExternally(external: ExternalLocks, ino: number, released: readonly LockRequest[]): Promise<void> {
  let firstError: Error | undefined;
  for (const request of released) {
    try {
      if (!(await askExternal(external, ino, request))) log('ino %d: arbiter answered false to a release', ino);
    } catch (error) {
      firstError ??= toError(error);
    }
  }
  if (firstError !== undefined) throw firstError;
}
