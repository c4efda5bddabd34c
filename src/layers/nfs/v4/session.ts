/**
 * An NFSv4.1 client's state on the server (RFC 8881 §2.4, §2.10): a client id from EXCHANGE_ID,
 * a session from CREATE_SESSION, and SEQUENCE ahead of every COMPOUND. The session renews the
 * lease while idle, and recovers what the server lost: a session the server no longer knows is
 * created again; a client id it no longer knows (a restart, or a lease that expired during an
 * outage) is established again, and the owner of the session is told, to reopen and reclaim.
 */
import { randomBytes } from 'crypto';
import createDebug from 'debug';
import { RpcClient } from '../rpc';
import { XdrReader, XdrWriter } from '../xdr';
import { Compound, CompoundReply } from './compound';
import { Nfs4Error, protocolViolation } from './errors';
import { COMPOUND_PROCEDURE, NFS4_OPAQUE_LIMIT, NFS4_SESSIONID_SIZE, NFS4_VERIFIER_SIZE, Nfs4Status, Op, SeqStatus } from './protocol';
import { SlotTable, type Slot } from './slots';
import { MiB } from '../../../util/linux';

const log = createDebug('ovshift:nfs4');

/** Slots asked for: requests in flight at once. */
const FORE_SLOTS = 64;
/** Our requests carry no data (nothing is written to a lower): small ones suffice. */
const MAX_REQUEST = 64 * 1024;
/** Room for one READ of the read-ahead's largest chunk, plus the compound around it. */
export const MAX_RESPONSE = 4 * MiB + 64 * 1024;
const MAX_OPERATIONS = 16;
const CALLBACK_PROGRAM = 0x40000000;
const AUTH_NONE = 0;
const DELAY_INITIAL_MS = 100;
const DELAY_MAX_MS = 5000;

/** Statuses that mean: the same compound, a little later. */
const TRY_LATER = new Set([Nfs4Status.DELAY, Nfs4Status.GRACE]);
/** Statuses that mean: the session is gone; a new one, then the same compound. */
const SESSION_GONE = new Set([Nfs4Status.BADSESSION, Nfs4Status.DEADSESSION, Nfs4Status.CONN_NOT_BOUND_TO_SESSION]);
/** Statuses that mean: the client id is gone (server restart, lease expired). */
const CLIENT_GONE = new Set([Nfs4Status.STALE_CLIENTID, Nfs4Status.EXPIRED]);

export interface ChannelAttrs {
  headerPadSize: number;
  maxRequestSize: number;
  maxResponseSize: number;
  maxResponseSizeCached: number;
  maxOperations: number;
  maxRequests: number;
}

export interface SessionHooks {
  /**
   * The server forgot this client (a restart, or the lease ran out): everything it held is gone.
   * Called once the new client id and session exist, before RECLAIM_COMPLETE, to reclaim what
   * can be. Calls it makes must pass `{ recovering: true }`.
   */
  clientLost(): Promise<void>;
  /** SEQUENCE flags saying the server revoked some or all of this client's state. */
  stateRevoked(flags: number): void;
}

export interface RunOptions {
  /** Part of a recovery: not held back while one runs. */
  recovering?: boolean;
}

function writeChannelAttrs(w: XdrWriter, a: ChannelAttrs): void {
  w.uint32(a.headerPadSize).uint32(a.maxRequestSize).uint32(a.maxResponseSize).uint32(a.maxResponseSizeCached).uint32(a.maxOperations).uint32(a.maxRequests);
  w.uint32(0); // ca_rdma_ird: none
}

function readChannelAttrs(r: XdrReader): ChannelAttrs {
  const a = {
    headerPadSize: r.uint32(),
    maxRequestSize: r.uint32(),
    maxResponseSize: r.uint32(),
    maxResponseSizeCached: r.uint32(),
    maxOperations: r.uint32(),
    maxRequests: r.uint32(),
  };
  r.array((x) => x.uint32(), 1);
  return a;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export class Nfs4Session {
  private clientId = 0n;
  private exchangeSeq = 0;
  private slots = new SlotTable(Buffer.alloc(NFS4_SESSIONID_SIZE), 1);
  /** Negotiated fore channel. */
  fore: ChannelAttrs | undefined;
  private recovering: Promise<void> | undefined;
  private renewTimer: NodeJS.Timeout | undefined;
  private renewing = false;
  private lastRenewed = 0;
  private leaseMs = 0;
  private closed = false;
  /** Revocation flags already reported, so that each is reported once. */
  private reportedFlags = 0;
  /** Client ids established: 1 until the server forgets this client. */
  generation = 0;

  constructor(
    private readonly rpc: RpcClient,
    readonly minorVersion: number,
    /** co_ownerid: names this client to the server, the same across its reconnects. */
    private readonly ownerId: Buffer,
    private readonly hooks: SessionHooks,
    /** How long a soft mount lets the server say "later" before failing the call. */
    private readonly giveUpAfterMs: number | undefined,
  ) {}

  static newOwnerId(label: string): Buffer {
    return Buffer.from(`ovshift ${label} ${randomBytes(8).toString('hex')}`.slice(0, NFS4_OPAQUE_LIMIT));
  }

  private readonly verifier = randomBytes(NFS4_VERIFIER_SIZE);

  get client(): bigint {
    return this.clientId;
  }

  /** EXCHANGE_ID, CREATE_SESSION, RECLAIM_COMPLETE: a client with nothing to reclaim. */
  async establish(failFast: boolean): Promise<void> {
    await this.exchangeId(failFast);
    await this.createSession(failFast);
    await this.reclaimComplete();
  }

  /** Starts renewing the lease while no other call does. */
  startRenewing(leaseSeconds: number): void {
    this.leaseMs = leaseSeconds * 1000;
    this.lastRenewed = performance.now();
    const every = Math.max(1000, this.leaseMs / 3);
    this.renewTimer = setInterval(() => {
      if (performance.now() - this.lastRenewed < every || this.recovering !== undefined || this.renewing) return;
      this.renewing = true;
      this.run(new Compound(), () => undefined)
        .catch((err: Error) => log('lease renewal failed: %s', err.message))
        .finally(() => (this.renewing = false));
    }, every);
    this.renewTimer.unref();
  }

  private sole(op: Op, args: (w: XdrWriter) => void, failFast = false): Promise<CompoundReply> {
    const c = new Compound().add(op, args);
    return this.rpc.call(COMPOUND_PROCEDURE, (w) => c.encode(w, this.minorVersion), { failFast }).then((r) => new CompoundReply(r));
  }

  private async exchangeId(failFast = false): Promise<void> {
    const reply = await this.sole(
      Op.EXCHANGE_ID,
      (w) => {
        w.opaqueFixed(this.verifier, NFS4_VERIFIER_SIZE).opaque(this.ownerId, NFS4_OPAQUE_LIMIT);
        w.uint32(0); // flags: no pNFS, no migration
        w.uint32(0); // SP4_NONE
        w.uint32(1).string('ovshift').string('ovshift').int64(0n).uint32(0); // client_impl_id
      },
      failFast,
    );
    const r = reply.ok(Op.EXCHANGE_ID);
    this.clientId = r.uint64();
    this.exchangeSeq = r.uint32();
    const flags = r.uint32();
    const protect = r.uint32();
    if (protect !== 0) throw protocolViolation(`state protection ${protect} where none was asked`);
    this.generation++;
    log('client id %s (flags %s, generation %d)', this.clientId.toString(16), flags.toString(16), this.generation);
  }

  private async createSession(failFast = false): Promise<void> {
    const reply = await this.sole(
      Op.CREATE_SESSION,
      (w) => {
        w.uint64(this.clientId).uint32(this.exchangeSeq).uint32(0);
        writeChannelAttrs(w, {
          headerPadSize: 0,
          maxRequestSize: MAX_REQUEST,
          maxResponseSize: MAX_RESPONSE,
          maxResponseSizeCached: 4096,
          maxOperations: MAX_OPERATIONS,
          maxRequests: FORE_SLOTS,
        });
        writeChannelAttrs(w, { headerPadSize: 0, maxRequestSize: 4096, maxResponseSize: 4096, maxResponseSizeCached: 0, maxOperations: 2, maxRequests: 1 });
        w.uint32(CALLBACK_PROGRAM);
        w.uint32(1).uint32(AUTH_NONE);
      },
      failFast,
    );
    const r = reply.ok(Op.CREATE_SESSION);
    const sessionId = Buffer.from(r.opaqueFixed(NFS4_SESSIONID_SIZE));
    r.uint32(); // csr_sequence
    r.uint32(); // csr_flags
    this.fore = readChannelAttrs(r);
    readChannelAttrs(r);
    this.exchangeSeq = (this.exchangeSeq + 1) >>> 0;
    const old = this.slots;
    this.slots = new SlotTable(sessionId, Math.max(1, Math.min(FORE_SLOTS, this.fore.maxRequests)));
    old.drop();
    this.reportedFlags = 0;
    log('session %s: %d slots, max response %d', sessionId.toString('hex'), this.slots.size, this.fore.maxResponseSize);
  }

  private async reclaimComplete(recovering = false): Promise<void> {
    try {
      await this.run(
        new Compound().add(Op.RECLAIM_COMPLETE, (w) => w.bool(false)),
        (reply) => reply.ok(Op.RECLAIM_COMPLETE),
        { recovering },
      );
    } catch (err) {
      if (!(err instanceof Nfs4Error && err.status === Nfs4Status.COMPLETE_ALREADY)) throw err;
    }
  }

  /**
   * A new session; a new client id first when the server forgot this one. Runs once at a time;
   * a call made by the recovery itself that meets a lost session fails instead of waiting for
   * the recovery it is part of (which then fails, and the next call starts another).
   */
  private recover(why: string, options: RunOptions): Promise<void> {
    if (options.recovering) return Promise.reject(new Nfs4Error(Nfs4Status.IO, undefined, `(the server lost this client again while it recovered: ${why})`));
    this.recovering ??= (async () => {
      log('recovering: %s', why);
      try {
        await this.createSession();
      } catch (err) {
        if (!(err instanceof Nfs4Error && CLIENT_GONE.has(err.status))) throw err;
        log('the server forgot client %s (%s): establishing it again', this.clientId.toString(16), err.nfsStatus);
        await this.exchangeId();
        await this.createSession();
        await this.hooks.clientLost();
        await this.reclaimComplete(true);
      }
    })().finally(() => {
      this.recovering = undefined;
    });
    return this.recovering;
  }

  /**
   * Sends SEQUENCE + `compound` and gives the reply, positioned after SEQUENCE, to `read`.
   * Retries where the protocol says to: later (DELAY, GRACE), on a new session, on a new slot.
   */
  async run<T>(compound: Compound, read: (reply: CompoundReply) => T, options: RunOptions = {}): Promise<T> {
    const started = performance.now();
    let delayMs = DELAY_INITIAL_MS;
    // Every retry waits, longer each time, and a soft mount gives up: a server that answers
    // "again" forever never keeps the daemon busy or a call pending for ever.
    const later = async (status: Nfs4Status): Promise<void> => {
      if (this.giveUpAfterMs !== undefined && performance.now() - started > this.giveUpAfterMs) throw new Nfs4Error(status, compound.ops[0]);
      await sleep(delayMs);
      delayMs = Math.min(delayMs * 2, DELAY_MAX_MS);
    };
    for (;;) {
      if (this.closed) throw new Nfs4Error(Nfs4Status.IO, compound.ops[0], '(client closed)');
      if (!options.recovering && this.recovering !== undefined) await this.recovering;
      const slots = this.slots;
      const slot = await slots.acquire();
      // The session went while this waited: on to the next one.
      if (slot === undefined) continue;
      let reply: CompoundReply;
      try {
        reply = new CompoundReply(
          await this.rpc.call(COMPOUND_PROCEDURE, (w) => compound.encode(w, this.minorVersion, (x) => this.writeSequence(x, slot, slots))),
        );
      } catch (err) {
        // Whether the server saw it is unknown. The next request on the slot goes as a new
        // one: if the server never had this one, it calls that misordered and the slot is
        // retired; a request taken for a retry could be answered with another's reply.
        slot.seq = (slot.seq + 1) >>> 0;
        slots.release(slot);
        throw err;
      }
      let status: Nfs4Status;
      try {
        const seq = reply.result(Op.SEQUENCE);
        status = seq.status;
        if (status === Nfs4Status.OK) this.readSequence(seq.r, slot, slots);
      } catch (err) {
        // A reply that makes no sense leaves the slot's state unknown: it is not used again.
        slots.retire(slot);
        throw err;
      }
      if (status !== Nfs4Status.OK) {
        await this.sequenceFailed(status, slot, slots, later, options);
        continue;
      }
      try {
        return read(reply);
      } catch (err) {
        if (!(err instanceof Nfs4Error)) throw err;
        if (TRY_LATER.has(err.status)) await later(err.status);
        else if (err.status === Nfs4Status.STALE_CLIENTID) {
          await this.recover(err.nfsStatus, options);
          await later(err.status);
        } else throw err;
      }
    }
  }

  private writeSequence(w: XdrWriter, slot: Slot, slots: SlotTable): void {
    w.uint32(Op.SEQUENCE).opaqueFixed(slots.sessionId, NFS4_SESSIONID_SIZE).uint32(slot.seq).uint32(slot.id).uint32(slots.highest).bool(false);
  }

  private readSequence(r: XdrReader, slot: Slot, slots: SlotTable): void {
    r.opaqueFixed(NFS4_SESSIONID_SIZE);
    r.uint32(); // sequence id
    r.uint32(); // slot id
    r.uint32(); // highest slot id
    const target = r.uint32();
    const flags = r.uint32();
    slot.seq = (slot.seq + 1) >>> 0;
    slots.setTarget(target);
    slots.release(slot);
    this.lastRenewed = performance.now();
    const revoked =
      flags & (SeqStatus.EXPIRED_ALL_STATE_REVOKED | SeqStatus.EXPIRED_SOME_STATE_REVOKED | SeqStatus.ADMIN_STATE_REVOKED | SeqStatus.RECALLABLE_STATE_REVOKED);
    if ((revoked & ~this.reportedFlags) !== 0) {
      this.reportedFlags |= revoked;
      this.hooks.stateRevoked(revoked);
    }
  }

  private async sequenceFailed(status: Nfs4Status, slot: Slot, slots: SlotTable, later: (s: Nfs4Status) => Promise<void>, options: RunOptions): Promise<void> {
    log('SEQUENCE on slot %d (seq %d): %s', slot.id, slot.seq, Nfs4Status[status] ?? status);
    if (SESSION_GONE.has(status)) {
      if (slots === this.slots) await this.recover(`session: ${Nfs4Status[status]}`, options);
      await later(status);
      return;
    }
    if (status === Nfs4Status.DELAY) {
      slots.release(slot); // a retry in progress on the server: same sequence id, later
      await later(status);
      return;
    }
    if (status === Nfs4Status.SEQ_FALSE_RETRY || status === Nfs4Status.RETRY_UNCACHED_REP) {
      // A request sent on this slot earlier was seen after all: the next one is new.
      slot.seq = (slot.seq + 1) >>> 0;
      slots.release(slot);
      await later(status);
      return;
    }
    if (status === Nfs4Status.SEQ_MISORDERED || status === Nfs4Status.BADSLOT || status === Nfs4Status.BAD_HIGH_SLOT) {
      slots.retire(slot);
      if (slots.usable === 0 && slots === this.slots) await this.recover('no slot left in step with the server', options);
      await later(status);
      return;
    }
    slots.release(slot);
    throw new Nfs4Error(status, Op.SEQUENCE);
  }

  /** DESTROY_SESSION, DESTROY_CLIENTID: best effort, bounded by the RPC client's own timeout. */
  async destroy(): Promise<void> {
    clearInterval(this.renewTimer);
    if (this.closed) return;
    this.closed = true;
    try {
      (await this.sole(Op.DESTROY_SESSION, (w) => w.opaqueFixed(this.slots.sessionId, NFS4_SESSIONID_SIZE), true)).ok(Op.DESTROY_SESSION);
      (await this.sole(Op.DESTROY_CLIENTID, (w) => w.uint64(this.clientId), true)).ok(Op.DESTROY_CLIENTID);
    } catch (err) {
      log('ending the session failed: %s', (err as Error).message);
    }
  }
}
