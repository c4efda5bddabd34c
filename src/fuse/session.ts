/**
 * One FUSE connection: reads requests from the device on the event loop, hands them to the
 * handler, writes replies whenever the handler settles, negotiates INIT, routes INTERRUPT to
 * the pending request, and sends notifications from a thread of their own.
 */
import createDebug from 'debug';
import { native, type DevReader } from '../native';
import { InitFlag, type InitFlagName, KERNEL_MINOR_VERSION, KERNEL_VERSION, MIN_MINOR_VERSION, Op, EXPIRE_ONLY } from './abi';
import { callerDying } from './caller';
import { errnoOf } from './errors';
import { errnoNumber } from '../util/errno';
import { formatError, formatReply, formatRequest, opName } from './format';
import type { ConnectionInfo, FuseHandler, RequestControl } from './handler';
import { NO_REPLY, opcodeEntry, type HandlerOpcode } from './opcodes';
import {
  LentReply,
  ReplySize,
  encodeInit,
  message,
  notifyDelete,
  notifyInvalEntry,
  notifyInvalInode,
  notifyPollWakeup,
  notifyIncEpoch,
  notifyPrune,
  notifyRetrieve,
  notifyStore,
  type Reply,
} from './replies';
import type { InitRequest, Request } from './requests';
import { MalformedMessage, UnknownOpcode, decodeHeader, decodeRequest, type DecodeContext } from './requests';
import { MiB, PAGE_SIZE } from '../util/linux';

const log = createDebug('ovshift:fuse');
const logNotify = createDebug('ovshift:fuse:notify');

const ENOSYS = errnoNumber('ENOSYS');
const EINVAL = errnoNumber('EINVAL');
const EAGAIN = errnoNumber('EAGAIN');
const EPROTO = errnoNumber('EPROTO');
const ENODEV = errnoNumber('ENODEV');
const ENOENT = errnoNumber('ENOENT');

/** Long enough for a caller's next syscall to arrive, short enough to cost little when none does. */
const DEFAULT_SPIN_MICROS = 50;

/** Flags every connection asks for; the handler adds its own through `wantFlags`. */
const SESSION_FLAGS: readonly InitFlagName[] = [
  'ASYNC_READ',
  'BIG_WRITES',
  'MAX_PAGES',
  'PARALLEL_DIROPS',
  'SETXATTR_EXT',
  'INIT_EXT',
  'ASYNC_DIO',
  'ABORT_ERROR',
  'HAS_EXPIRE_ONLY',
];

export interface SessionOptions {
  /** Largest WRITE the kernel may send; also sizes READ and the device read buffer. */
  maxWrite?: number;
  maxBackground?: number;
  congestionThreshold?: number;
  /**
   * After answering a batch, keep reading the (non-blocking) device this long (microseconds)
   * for the next request before sleeping: a process doing one call after another sends it
   * within a few microseconds, and the sleep and wakeup cost more than the wait. Never after a
   * request the handler did not answer at once: its caller waits for that answer. 0 turns it off.
   */
  spinMicros?: number;
  /** Where replies go; the FUSE device by default. Returns bytes written or -errno. */
  write?: (parts: Buffer[]) => number;
}

/** How often the caller of an interrupted request is checked for dying. */
const CALLER_CHECK_MS = 100;

/** Fires its callbacks once: an interruption (RequestControl's `interrupted`/`onInterrupt`). */
class Interruption {
  interrupted = false;
  private callbacks?: Array<() => void>;

  onInterrupt(cb: () => void): void {
    if (this.interrupted) cb();
    else (this.callbacks ??= []).push(cb);
  }

  fire(): void {
    if (this.interrupted) return;
    this.interrupted = true;
    for (const cb of this.callbacks ?? []) cb();
    this.callbacks = undefined;
  }
}

class PendingRequest implements RequestControl {
  // Both made when first asked for: every request passes through here, few are interrupted.
  private interruption?: Interruption;
  /** Fired once the caller of the interrupted request is found dying. */
  private abandonment?: Interruption;
  private watch?: NodeJS.Timeout;

  constructor(
    readonly opcode: number,
    private readonly pid: number,
  ) {}

  get abandoned(): Interruption {
    return (this.abandonment ??= new Interruption());
  }

  get interrupted(): boolean {
    return this.interruption?.interrupted ?? false;
  }

  onInterrupt(cb: () => void): void {
    (this.interruption ??= new Interruption()).onInterrupt(cb);
  }

  interrupt(): void {
    if (this.interrupted) return;
    (this.interruption ??= new Interruption()).fire();
    // The kernel sends one INTERRUPT per request: a caller that handles this signal and is
    // killed later must still be noticed while the request runs.
    const check = (): void => {
      if (!callerDying(this.pid)) return;
      this.settle();
      this.abandoned.fire();
    };
    check();
    if (!this.abandoned.interrupted) {
      this.watch = setInterval(check, CALLER_CHECK_MS);
      this.watch.unref();
    }
  }

  /** The request is answered: nothing more to watch. */
  settle(): void {
    if (this.watch === undefined) return;
    clearInterval(this.watch);
    this.watch = undefined;
  }
}

export class FuseSession {
  private readonly pending = new Map<number, PendingRequest>();
  /** pending.size, where the device reader sees it: it spins only after a request answered at once. */
  private readonly unanswered = new Int32Array(new ArrayBuffer(4));
  private readonly decodeCtx: DecodeContext = { minor: 0, setxattrExt: false };
  private readonly maxWrite: number;
  private readonly opts: Required<Omit<SessionOptions, 'write'>>;
  private readonly output: (parts: Buffer[]) => number;
  private reader?: DevReader;
  private isClosed = false;
  private retrieveUnique = 0;
  private resolveReady!: (info: ConnectionInfo) => void;
  private rejectReady!: (err: Error) => void;
  private resolveClosed!: (errno: number) => void;
  info?: ConnectionInfo;
  /** Settles once INIT has been answered (or refused). */
  readonly ready: Promise<ConnectionInfo>;
  /** Settles with the errno that ended the connection (ENODEV: unmounted). */
  readonly closed: Promise<number>;

  constructor(
    readonly fd: number,
    private readonly fs: FuseHandler,
    opts: SessionOptions = {},
  ) {
    this.opts = {
      maxWrite: opts.maxWrite ?? MiB,
      maxBackground: opts.maxBackground ?? 64,
      congestionThreshold: opts.congestionThreshold ?? 48,
      spinMicros: opts.spinMicros ?? DEFAULT_SPIN_MICROS,
    };
    this.output = opts.write ?? ((parts) => native.devWrite(this.fd, parts));
    this.maxWrite = Math.max(PAGE_SIZE, Math.min(this.opts.maxWrite, 256 * PAGE_SIZE));
    this.ready = new Promise((resolve, reject) => {
      this.resolveReady = resolve;
      this.rejectReady = reject;
    });
    this.ready.catch(() => undefined);
    this.closed = new Promise((resolve) => (this.resolveClosed = resolve));
  }

  /** Requests read but not yet answered. */
  get pendingCount(): number {
    return this.pending.size;
  }

  start(): void {
    if (this.reader) return;
    // Room for the largest WRITE plus its headers; the kernel refuses smaller buffers.
    const bufSize = this.maxWrite + PAGE_SIZE * 2;
    this.reader = native.devReader(this.fd, bufSize, 64, (requests, errno) => {
      if (requests === null) this.onDeviceClosed(errno);
      else for (const buf of requests) this.handleMessage(buf);
    });
    this.reader.setSpin(this.opts.spinMicros, this.unanswered);
  }

  /** Stops reading; the mount itself is the caller's to remove. */
  stop(): void {
    this.onDeviceClosed(ENODEV);
  }

  private onDeviceClosed(errno: number): void {
    if (this.isClosed) return;
    this.isClosed = true;
    this.reader?.stop();
    log('connection closed: %s', errno === ENODEV ? 'unmounted' : `errno ${errno}`);
    this.rejectReady(new Error('FUSE connection closed before INIT'));
    this.pending.clear();
    this.unanswered[0] = 0;
    this.resolveClosed(errno);
  }

  /** Serves one raw request as read from the device. Never throws. */
  handleMessage(buf: Buffer): void {
    let req: Request;
    try {
      req = decodeRequest(buf, this.decodeCtx);
    } catch (err) {
      this.answerUndecodable(buf, err);
      return;
    }
    if (log.enabled) log(formatRequest(req));
    try {
      this.dispatch(req);
    } catch (err) {
      // Only handler code outside a Promise can get here (forget, notifyReply, init).
      log('handler threw on %s: %O', opName(req.opcode), err);
      if (req.op === Op.INIT) {
        this.send(req.unique, message(req.unique, -errnoOf(err).errno, 0));
        this.rejectReady(err as Error);
      }
    }
  }

  private dispatch(req: Request): void {
    const entry = opcodeEntry(req);
    switch (entry.kind) {
      case 'notice':
        entry.notify(this.fs, req);
        return;
      case 'handler':
        this.serve(req, entry);
        return;
      case 'session':
        if (req.op === Op.INIT) this.init(req);
        else if (req.op === Op.INTERRUPT) this.interrupt(req.unique, req.target);
    }
  }

  private answerUndecodable(buf: Buffer, err: unknown): void {
    let unique: number;
    let opcode: number;
    try {
      ({ unique, opcode } = decodeHeader(buf));
    } catch {
      log('dropping %d-byte message without a readable header', buf.length);
      return;
    }
    if (NO_REPLY.has(opcode)) {
      log('dropping malformed %s: %s', opName(opcode), (err as Error).message);
      return;
    }
    const errno = err instanceof UnknownOpcode ? ENOSYS : EINVAL;
    if (!(err instanceof UnknownOpcode) && !(err instanceof MalformedMessage)) log('decoder failure: %O', err);
    if (log.enabled) log(formatError(unique, opcode, errno) + ` (${(err as Error).message})`);
    this.send(unique, message(unique, -errno, 0));
  }

  private interrupt(interruptUnique: number, target: number): void {
    const p = this.pending.get(target);
    if (p) {
      p.interrupt();
      return;
    }
    // Not (yet) known here: EAGAIN makes the kernel send the interrupt again later.
    this.send(interruptUnique, message(interruptUnique, -EAGAIN, 0));
  }

  private init(req: InitRequest): void {
    const unique = req.unique;
    if (req.major > KERNEL_VERSION) {
      // Tell the kernel our major; it sends a new INIT.
      this.send(
        unique,
        message(unique, 0, ReplySize.init, (w) =>
          encodeInit(w, {
            major: KERNEL_VERSION,
            minor: KERNEL_MINOR_VERSION,
            maxReadahead: 0,
            flags: 0n,
            maxBackground: 0,
            congestionThreshold: 0,
            maxWrite: 0,
            timeGran: 0,
            maxPages: 0,
            mapAlignment: 0,
            maxStackDepth: 0,
            requestTimeout: 0,
          }),
        ),
      );
      return;
    }
    if (req.major < KERNEL_VERSION || req.minor < MIN_MINOR_VERSION) {
      const why = `kernel speaks FUSE ${req.major}.${req.minor}; ovshift needs ${KERNEL_VERSION}.${MIN_MINOR_VERSION} or newer`;
      this.send(unique, message(unique, -EPROTO, 0));
      this.rejectReady(new Error(why));
      return;
    }
    const minor = Math.min(req.minor, KERNEL_MINOR_VERSION);
    this.fs.prepare?.(minor);
    let want = 0n;
    for (const name of [...SESSION_FLAGS, ...this.handlerFlags()]) want |= InitFlag[name];
    const flags = req.flags & want;
    const maxPages = Math.ceil(this.maxWrite / PAGE_SIZE);
    const passthrough = (flags & InitFlag.PASSTHROUGH) !== 0n;
    this.info = {
      major: KERNEL_VERSION,
      minor,
      offered: req.flags,
      flags,
      maxWrite: this.maxWrite,
      maxReadahead: req.maxReadahead,
      maxPages,
      backing: passthrough
        ? {
            open: (fd) => native.backingOpen(this.fd, fd),
            close: (id) => native.backingClose(this.fd, id),
          }
        : undefined,
    };
    this.decodeCtx.minor = minor;
    this.decodeCtx.setxattrExt = (flags & InitFlag.SETXATTR_EXT) !== 0n;
    this.fs.init?.(this.info);
    const reply = message(unique, 0, ReplySize.init, (w) =>
      encodeInit(w, {
        major: KERNEL_VERSION,
        minor,
        maxReadahead: req.maxReadahead,
        flags,
        maxBackground: this.opts.maxBackground,
        congestionThreshold: this.opts.congestionThreshold,
        maxWrite: this.maxWrite,
        timeGran: 1,
        maxPages,
        mapAlignment: 0,
        // Passthrough needs a stack depth; 1 keeps this mount usable below kernel overlayfs.
        maxStackDepth: passthrough ? 1 : 0,
        // Never FUSE_REQUEST_TIMEOUT: a lock waiter may rightly stay unanswered for hours.
        requestTimeout: 0,
      }),
    );
    if (log.enabled) log(formatReply(unique, Op.INIT, { ...this.info, backing: undefined, flags: describeFlags(flags) }));
    if (this.send(unique, reply) >= 0) this.resolveReady(this.info);
    else this.rejectReady(new Error('could not answer INIT'));
  }

  private handlerFlags(): InitFlagName[] {
    const names: InitFlagName[] = [...(this.fs.wantFlags ?? [])];
    if (this.fs.getlk || this.fs.setlk) names.push('POSIX_LOCKS');
    if (this.fs.setlk) names.push('FLOCK_LOCKS');
    if (this.fs.readdirplus) names.push('DO_READDIRPLUS', 'READDIRPLUS_AUTO');
    return names;
  }

  /** Runs the handler for one request and answers with whatever it settles to. */
  private serve<R extends Request>(req: R, entry: HandlerOpcode<R>): void {
    const unique = req.unique;
    const ctl = new PendingRequest(req.opcode, req.pid);
    this.pending.set(unique, ctl);
    this.unanswered[0] = this.pending.size;
    let work: Promise<unknown> | undefined;
    try {
      work = entry.call(this.fs, req, ctl);
    } catch (err) {
      this.fail(unique, req.opcode, err);
      return;
    }
    if (work === undefined) {
      this.fail(unique, req.opcode, ENOSYS);
      return;
    }
    // One reaction per request: encoding and writing run in the same turn as the result.
    work.then(
      (result) => this.answer(req, entry, result),
      (err) => this.fail(unique, req.opcode, err),
    );
  }

  private answer<R extends Request>(req: R, entry: HandlerOpcode<R>, result: unknown): void {
    if (log.enabled) log(formatReply(req.unique, req.opcode, entry.logged(result)));
    let reply: Reply;
    try {
      reply = entry.encode(req.unique, result, req);
    } catch (err) {
      this.fail(req.unique, req.opcode, err);
      return;
    }
    this.writeReply(req.unique, reply);
  }

  private fail(unique: number, opcode: number, err: unknown): void {
    let errno: number;
    if (typeof err === 'number') errno = err;
    else {
      const r = errnoOf(err);
      errno = r.errno;
      if (!r.known) log('handler for %s failed unexpectedly: %O', opName(opcode), err);
    }
    if (log.enabled) log(formatError(unique, opcode, errno));
    this.writeReply(unique, message(unique, -errno, 0));
  }

  /** Writes the reply to a pending request; a second answer to the same request is dropped. */
  private writeReply(unique: number, reply: Reply): number {
    this.pending.get(unique)?.settle();
    const known = this.pending.delete(unique);
    this.unanswered[0] = this.pending.size;
    if (!known) {
      if (!this.isClosed) log('#%d answered twice; ignoring the second answer', unique);
      if (reply instanceof LentReply) reply.release();
      return -EINVAL;
    }
    return this.send(unique, reply);
  }

  /** Writes a message; returns bytes written or -errno. */
  private send(unique: number, reply: Reply): number {
    if (reply instanceof LentReply) {
      try {
        return this.send(unique, reply.parts);
      } finally {
        reply.release();
      }
    }
    if (this.isClosed) return -ENODEV;
    const res = this.output(Array.isArray(reply) ? reply : [reply]);
    if (res < 0) {
      // ENOENT: the kernel gave up on the request (interrupted, or its caller died).
      if (res !== -ENOENT) log('#%d: writing the reply failed: errno %d', unique, -res);
      else log('#%d: reply no longer wanted by the kernel', unique);
    }
    return res;
  }

  // Notifications. Each goes out on the addon's notifier thread and settles with the write's
  // result; callers never await them while the kernel waits for a reply of theirs.

  private notify(what: string, msg: Buffer): Promise<number> {
    if (this.isClosed || !this.info) return Promise.resolve(-ENODEV);
    return new Promise((resolve) => {
      native.notifyWrite(this.fd, [msg], (res) => {
        if (logNotify.enabled) logNotify('%s → %s', what, res >= 0 ? 'sent' : `errno ${-res}`);
        resolve(res);
      });
    });
  }

  notifyInvalInode(nodeid: number, offset = 0, length = 0): Promise<number> {
    return this.notify(`inval_inode node=${nodeid} off=${offset} len=${length}`, notifyInvalInode(nodeid, offset, length));
  }

  notifyInvalEntry(parent: number, name: Buffer, expireOnly = false): Promise<number> {
    const flags = expireOnly && this.info && this.info.flags & InitFlag.HAS_EXPIRE_ONLY ? EXPIRE_ONLY : 0;
    return this.notify(`inval_entry parent=${parent} name=${JSON.stringify(name.toString())}`, notifyInvalEntry(parent, name, flags));
  }

  notifyDelete(parent: number, child: number, name: Buffer): Promise<number> {
    return this.notify(`delete parent=${parent} child=${child} name=${JSON.stringify(name.toString())}`, notifyDelete(parent, child, name));
  }

  notifyStore(nodeid: number, offset: number, data: Buffer): Promise<number> {
    return this.notify(`store node=${nodeid} off=${offset} len=${data.length}`, notifyStore(nodeid, offset, data));
  }

  /** Asks the kernel for cached data; it arrives through the handler's notifyReply with this unique. */
  notifyRetrieve(nodeid: number, offset: number, size: number): { unique: number; sent: Promise<number> } {
    const unique = ++this.retrieveUnique;
    return { unique, sent: this.notify(`retrieve node=${nodeid}`, notifyRetrieve(unique, nodeid, offset, size)) };
  }

  notifyPollWakeup(kh: bigint): Promise<number> {
    return this.notify(`poll kh=${kh}`, notifyPollWakeup(kh));
  }

  notifyIncEpoch(): Promise<number> {
    return this.notify('inc_epoch', notifyIncEpoch());
  }

  notifyPrune(nodeids: number[]): Promise<number> {
    return this.notify(`prune ${nodeids.length} nodes`, notifyPrune(nodeids));
  }
}

function describeFlags(flags: bigint): string {
  return (Object.keys(InitFlag) as InitFlagName[]).filter((n) => flags & InitFlag[n]).join('|');
}
