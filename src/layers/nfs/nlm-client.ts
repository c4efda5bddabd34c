// The NLM v4 side of an nfs:// mount: one connection to the server's lock manager, opened at
// the first lock, and lock owners that the server tells apart from every other client's.
//
// A server that restarts forgets its locks (nfs-ganesha without a grace period, or with its
// grace period over before we are back). When the connection ends, every lock still held is
// taken again as soon as the server answers; one another client took meanwhile is lost, and a
// line on stderr names its file: POSIX has no way to tell the process that held it.

import { randomBytes } from 'crypto';
import createDebug from 'debug';
import { lengthOf, rangeOf, withoutRange, withRange, type HeldRange } from './held-ranges';
import { listenForGrants, type GrantListener, type GrantSubscription } from './nlm-callbacks';
import { Nlm4, NLM_PROGRAM, NLM_VERSION, Nlm4Stat, type LockArgs, type NlmGranted, type NlmHolder, type NlmLock } from './nlm4';
import { getTcpPorts } from './portmap';
import { ServerMonitor } from './server-monitor';
import { RpcClient } from './rpc';
import type { RpcCredential } from './rpc-message';

const log = createDebug('ovshift:nlm');

export interface NlmClientOptions {
  host: string;
  /** The lock manager's port; asked of the portmapper when absent. */
  port?: number;
  credential: RpcCredential;
  timeoutMs: number;
  retrans: number;
  soft: boolean;
  privilegedPort: boolean;
  /** How this client names itself to the server (nlm4_lock caller_name): its host name. */
  callerName: string;
  /** Names the export in messages. */
  label: string;
}

/** An NLM answer other than GRANTED, as an errno a lock call would give. */
export class NlmError extends Error {
  constructor(
    readonly code: string,
    readonly stat: Nlm4Stat,
    what: string,
  ) {
    super(`NLM ${what}: ${Nlm4Stat[stat] ?? stat}`);
    this.name = 'NlmError';
  }
}

/** How long a grant that crossed a CANCEL is still recognised (and refused). */
const WITHDRAWN_KEPT_MS = 60_000;

const ERRNO_OF: Partial<Record<Nlm4Stat, string>> = {
  [Nlm4Stat.DENIED]: 'EAGAIN',
  // The server restarted and takes back only reclaimed locks for a while: try again later.
  [Nlm4Stat.DENIED_GRACE_PERIOD]: 'EAGAIN',
  [Nlm4Stat.BLOCKED]: 'EAGAIN',
  [Nlm4Stat.DENIED_NOLOCKS]: 'ENOLCK',
  [Nlm4Stat.DEADLCK]: 'EDEADLK',
  [Nlm4Stat.ROFS]: 'EROFS',
  [Nlm4Stat.STALE_FH]: 'ESTALE',
  [Nlm4Stat.FBIG]: 'EOVERFLOW',
};

/** One range of one file, locked by one owner of this client. */
export interface NlmTarget {
  fh: Buffer;
  /** The file's path in the export, for messages. */
  path: string;
  owner: Buffer;
  svid: number;
  offset: bigint;
  /** 0: to the end of the file and beyond. */
  length: bigint;
}

/** Owner handles of this process: a random prefix (no two daemons share one) and a counter. */
const OWNER_PREFIX = randomBytes(8);
let lastOwner = 0;

/** A new lock owner of this client: its handle and its svid (both stable for its life). */
export function newNlmOwner(): { owner: Buffer; svid: number } {
  lastOwner = (lastOwner + 1) % 0x7fffffff || 1;
  const owner = Buffer.alloc(12);
  OWNER_PREFIX.copy(owner);
  owner.writeUInt32BE(lastOwner, 8);
  return { owner, svid: lastOwner };
}

/** A LOCK the server queued (BLOCKED): it calls back once the lock is ours to take. */
interface Blocked {
  target: NlmTarget;
  exclusive: boolean;
  onGrant: () => void;
}

function blockedKey(owner: Buffer, fh: Buffer, offset: bigint, length: bigint): string {
  return `${owner.toString('hex')}:${fh.toString('hex')}:${offset}:${length}`;
}

/** What one owner holds on one file. */
interface Holding {
  fh: Buffer;
  path: string;
  owner: Buffer;
  svid: number;
  ranges: HeldRange[];
}

export class NlmClient {
  private connecting: Promise<Nlm4> | undefined;
  private cookies = 0;
  private closed = false;
  /** By owner handle and file handle. */
  private readonly held = new Map<string, Holding>();
  private retaking: Promise<void> | undefined;
  private readonly blocked = new Map<string, Blocked>();
  /**
   * Requests withdrawn after the server queued them: a late grant of one (crossing the CANCEL)
   * is refused. Forgotten after a while, as a cancelled request is never granted after.
   */
  private readonly withdrawn = new Set<string>();
  /** Granted by a callback (we answered that we take them), waiting for their waiter to ask again. */
  private readonly grantedByCallback = new Map<string, NlmTarget>();
  private grants: Promise<GrantSubscription | undefined> | undefined;
  private readonly onGranted: GrantListener = (granted) => this.granted(granted);
  private readonly monitor: ServerMonitor;

  constructor(private readonly options: NlmClientOptions) {
    this.monitor = new ServerMonitor(options.host, options.privilegedPort);
  }

  /** Whether this host's rpc.statd monitors the server for these locks, for status lines. */
  get monitoring(): string {
    return this.monitor.describe();
  }

  /** LOCK, monitored when this host's statd watches the server, else NM_LOCK. */
  private async lockCall(nlm: Nlm4, args: Omit<LockArgs, 'state'>): Promise<Nlm4Stat> {
    const state = await this.monitor.decide();
    if (state === undefined) return nlm.lock({ ...args, state: 0 }, false);
    const stat = await nlm.lock({ ...args, state }, true);
    if (stat !== Nlm4Stat.DENIED_NOLOCKS) return stat;
    this.monitor.refused();
    return nlm.lock({ ...args, state: 0 }, false);
  }

  get callerName(): string {
    return this.options.callerName;
  }

  private connection(): Promise<Nlm4> {
    if (this.closed) return Promise.reject(new NlmError('EIO', Nlm4Stat.FAILED, 'client closed'));
    this.connecting ??= this.connect().catch((err: unknown) => {
      // Asked again at the next lock: the server may have been starting.
      this.connecting = undefined;
      throw err;
    });
    return this.connecting;
  }

  private async connect(): Promise<Nlm4> {
    const o = this.options;
    const port = o.port ?? (await getTcpPorts(o.host, [{ program: NLM_PROGRAM, version: NLM_VERSION, name: 'NLM' }], o))[0]!;
    log('lock manager of %s at port %d', o.host, port);
    const rpc = new RpcClient({
      host: o.host,
      port,
      target: { program: NLM_PROGRAM, version: NLM_VERSION },
      credential: o.credential,
      timeoutMs: o.timeoutMs,
      retrans: o.retrans,
      soft: o.soft,
      privilegedPort: o.privilegedPort,
      label: 'nlm',
      readBufferSize: 4096,
      onConnectionLost: () => this.retakeAll(),
    });
    return new Nlm4(rpc);
  }

  private holding(t: NlmTarget): Holding {
    const key = `${t.owner.toString('hex')}:${t.fh.toString('hex')}`;
    let h = this.held.get(key);
    if (h === undefined) {
      h = { fh: t.fh, path: t.path, owner: t.owner, svid: t.svid, ranges: [] };
      this.held.set(key, h);
    }
    return h;
  }

  private forget(h: Holding): void {
    if (h.ranges.length === 0) this.held.delete(`${h.owner.toString('hex')}:${h.fh.toString('hex')}`);
  }

  /** After a lost connection: every lock held is taken again once the server answers. */
  private retakeAll(): void {
    // What the server queued went with the connection (a restarted server forgot it).
    this.askAgain();
    if (this.held.size === 0 || this.retaking !== undefined) return;
    this.retaking = this.retake().finally(() => {
      this.retaking = undefined;
    });
  }

  /** The waiters the server queued ask again now rather than at their next recheck. */
  private askAgain(): void {
    const queued = [...this.blocked.values()];
    this.blocked.clear();
    for (const waiter of queued) waiter.onGrant();
  }

  private async retake(): Promise<void> {
    const nlm = await this.connection();
    // Waits for the server (hard) or fails (soft: the locks are then reported lost).
    await nlm.null().catch(() => undefined);
    for (const h of [...this.held.values()]) {
      for (const r of [...h.ranges]) {
        const t: NlmTarget = { fh: h.fh, path: h.path, owner: h.owner, svid: h.svid, offset: r.start, length: lengthOf(r) };
        const stat = await this.reclaim(nlm, t, r.exclusive);
        if (stat === Nlm4Stat.GRANTED) continue;
        h.ranges = withoutRange(h.ranges, r.start, r.end);
        process.stderr.write(
          `ovshift: ${this.options.label}: lost a lock on "${h.path}" (bytes ${r.start}-${r.end === 0xffffffffffffffffn ? 'end' : r.end}) when the server's lock manager restarted: ${Nlm4Stat[stat] ?? stat} when taken again\n`,
        );
      }
      this.forget(h);
    }
    log('locks taken again after the connection to %s was lost', this.options.host);
  }

  /**
   * Takes a held lock again after a restart: reclaimed, which a server in its grace period keeps
   * for its holders alone; a server with no grace period refuses reclaims (nfs-ganesha answers
   * DENIED_GRACE_PERIOD), then it is asked for as any lock.
   */
  private async reclaim(nlm: Nlm4, t: NlmTarget, exclusive: boolean): Promise<Nlm4Stat> {
    try {
      const args = { block: false, exclusive, lock: this.lockOf(t) };
      const stat = await this.lockCall(nlm, { ...args, cookie: this.cookie(), reclaim: true });
      if (stat !== Nlm4Stat.DENIED_GRACE_PERIOD) return stat;
      return await this.lockCall(nlm, { ...args, cookie: this.cookie(), reclaim: false });
    } catch {
      return Nlm4Stat.FAILED;
    }
  }

  private cookie(): Buffer {
    const c = Buffer.alloc(4);
    c.writeUInt32BE((this.cookies = (this.cookies + 1) >>> 0));
    return c;
  }

  private lockOf(t: NlmTarget): NlmLock {
    return { callerName: this.options.callerName, fh: t.fh, owner: t.owner, svid: t.svid, offset: t.offset, length: t.length };
  }

  /** Whether the server's GRANTED callbacks reach this process (asked at each wait). */
  private async receivesGrants(nlm: Nlm4): Promise<boolean> {
    // Served where the server reaches this client: the local address of a connection to it.
    if (nlm.rpc.localAddress === undefined) await nlm.null();
    const address = nlm.rpc.localAddress;
    if (address === undefined) return false;
    this.grants ??= listenForGrants(address, this.onGranted, () => this.askAgain()).catch((err: unknown) => {
      log('no NLM callbacks: %s', (err as Error).message);
      return undefined;
    });
    return (await (await this.grants)?.receiving()) ?? false;
  }

  /**
   * Takes the lock now or fails with EAGAIN (held by another owner, here or on another host).
   * With `onGrant` (a waiter) and callbacks reaching this process, the server also queues the
   * request and calls back when it is free: `onGrant` then says to ask again (it is granted).
   */
  async lock(t: NlmTarget, exclusive: boolean, onGrant?: () => void): Promise<void | 'queued'> {
    const key = blockedKey(t.owner, t.fh, t.offset, t.length);
    // A callback said the server granted it: the LOCK below confirms (the server answers GRANTED
    // for a lock the owner holds), so a forged callback gains nothing.
    this.grantedByCallback.delete(key);
    const nlm = await this.connection();
    const block = onGrant !== undefined && (await this.receivesGrants(nlm));
    const stat = await this.lockCall(nlm, { cookie: this.cookie(), block, exclusive, lock: this.lockOf(t), reclaim: false });
    if (stat === Nlm4Stat.BLOCKED && onGrant !== undefined) {
      this.blocked.set(key, { target: t, exclusive, onGrant });
      this.withdrawn.delete(key);
      return 'queued';
    }
    this.blocked.delete(key);
    check(stat, 'LOCK');
    this.taken(t, exclusive);
  }

  private taken(t: NlmTarget, exclusive: boolean): void {
    const h = this.holding(t);
    const { start, end } = rangeOf(t.offset, t.length);
    h.ranges = withRange(h.ranges, start, end, exclusive);
  }

  /**
   * The waiter of `owner` on `fh` gave up: the server forgets what it queued for it, and a lock
   * its callback granted that the waiter never took is unlocked.
   */
  async withdraw(fh: Buffer, owner: Buffer): Promise<void> {
    const prefix = `${owner.toString('hex')}:${fh.toString('hex')}:`;
    for (const [key, target] of [...this.grantedByCallback]) {
      if (!key.startsWith(prefix)) continue;
      this.grantedByCallback.delete(key);
      await this.unlock(target).catch((err: unknown) => log('UNLOCK of an untaken grant: %s', (err as Error).message));
    }
    for (const [key, b] of [...this.blocked]) {
      if (!key.startsWith(prefix)) continue;
      this.blocked.delete(key);
      this.withdrawn.add(key);
      setTimeout(() => this.withdrawn.delete(key), WITHDRAWN_KEPT_MS).unref();
      const nlm = await this.connection();
      await nlm.cancel(this.cookie(), true, b.exclusive, this.lockOf(b.target)).catch((err: unknown) => log('CANCEL: %s', (err as Error).message));
    }
  }

  /**
   * A GRANTED callback: taken for the waiter that asked, refused for a withdrawn request;
   * false when it is for neither (another client's, to be passed on).
   */
  private granted(g: NlmGranted): boolean {
    if (g.lock.callerName !== this.options.callerName) return false;
    const key = blockedKey(g.lock.owner, g.lock.fh, g.lock.offset, g.lock.length);
    const waiter = this.blocked.get(key);
    if (waiter === undefined) {
      if (!this.withdrawn.delete(key)) return false;
      log('refusing a grant for a withdrawn request');
      void this.connection()
        .then((nlm) => nlm.grantedRes(g.cookie, Nlm4Stat.DENIED))
        .catch(() => undefined);
      return true;
    }
    this.blocked.delete(key);
    void this.take(g, key, waiter);
    return true;
  }

  /** Tells the server we take the lock it granted, then the waiter to ask again. */
  private async take(g: NlmGranted, key: string, waiter: Blocked): Promise<void> {
    try {
      const nlm = await this.connection();
      await nlm.grantedRes(g.cookie, Nlm4Stat.GRANTED);
    } catch (err) {
      // Whatever the server made of it, the waiter's next LOCK finds out.
      log('GRANTED_RES: %s', (err as Error).message);
      waiter.onGrant();
      return;
    }
    this.grantedByCallback.set(key, waiter.target);
    log("lock granted by the server's callback");
    waiter.onGrant();
  }

  async unlock(t: NlmTarget): Promise<void> {
    const nlm = await this.connection();
    const stat = await nlm.unlock(this.cookie(), this.lockOf(t));
    // Unlocking what is not held is no error (the server says GRANTED, or DENIED_GRACE_PERIOD
    // right after a restart, when nothing is held anyway).
    if (stat !== Nlm4Stat.GRANTED && stat !== Nlm4Stat.DENIED_GRACE_PERIOD) check(stat, 'UNLOCK');
    const h = this.holding(t);
    const { start, end } = rangeOf(t.offset, t.length);
    h.ranges = withoutRange(h.ranges, start, end);
    this.forget(h);
  }

  /** A lock of another owner that conflicts with this one, or null. */
  async test(t: NlmTarget, exclusive: boolean): Promise<NlmHolder | null> {
    const nlm = await this.connection();
    const { stat, holder } = await nlm.test(this.cookie(), exclusive, this.lockOf(t));
    if (stat === Nlm4Stat.GRANTED) return null;
    if (holder) return holder;
    check(stat, 'TEST');
    return null;
  }

  /** Closes the connection, and unregisters the callbacks when no other client of the process needs them. */
  async close(): Promise<void> {
    this.closed = true;
    const grants = this.grants;
    this.grants = undefined;
    await grants?.then((g) => g?.stop()).catch(() => undefined);
    const connecting = this.connecting;
    this.connecting = undefined;
    void connecting?.then(
      (nlm) => nlm.rpc.close(),
      () => undefined,
    );
  }
}

function check(stat: Nlm4Stat, what: string): void {
  if (stat === Nlm4Stat.GRANTED) return;
  throw new NlmError(ERRNO_OF[stat] ?? 'ENOLCK', stat, what);
}
