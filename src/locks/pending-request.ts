import type { InodeLocks } from './inode-locks';
import type { QueuedRequest } from './waiter-queue';
import type { ValidRequest } from './types';

/**
 * scheduled: submitted, waiting for its inode's earlier operations;
 * waiting: queued behind conflicting locks (or refused by the arbiter, see `deferred`);
 * confirming: granted locally, the external arbiter is being asked;
 * settled: its promise is resolved or rejected.
 */
export type RequestPhase = 'scheduled' | 'waiting' | 'confirming' | 'settled';

/** One set() call, from submission until its promise settles. */
export class PendingRequest implements QueuedRequest {
  phase: RequestPhase = 'scheduled';
  yields = false;
  deferred = false;
  retryTimer: NodeJS.Timeout | undefined;
  /** FUSE_INTERRUPT arrived while the arbiter was being asked. */
  interrupted = false;
  /** The arbiter refused it at least once while it waited (and may hold a queued request for it). */
  refusedExternally = false;
  readonly done: Promise<void>;
  private resolve!: () => void;
  private reject!: (error: Error) => void;

  constructor(
    readonly inode: InodeLocks,
    readonly request: ValidRequest,
    readonly wait: boolean,
    public retryDelayMs: number,
    private readonly onSettled: (request: PendingRequest) => void,
  ) {
    this.done = new Promise<void>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
  }

  settle(error?: Error): void {
    if (this.phase === 'settled') return;
    this.phase = 'settled';
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    this.onSettled(this);
    if (error === undefined) this.resolve();
    else this.reject(error);
  }
}
