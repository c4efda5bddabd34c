// ONC RPC client over one TCP connection: many calls in flight matched by xid, per-call
// timeouts with retransmission, and transparent reconnection that re-sends whatever is pending.

import * as net from 'net';
import { randomInt } from 'crypto';
import createDebug from 'debug';
import { RecordDecoder, encodeRecord } from './record';
import { CallTarget, RpcCredential, RpcError, decodeReply, encodeCall, replyXid } from './rpc-message';
import { XdrReader, XdrWriter } from './xdr';

const log = createDebug('ovshift:rpc');

const RECONNECT_INITIAL_MS = 100;
const RECONNECT_MAX_MS = 5000;
// The kernel's default range for reserved source ports (sunrpc.min_resvport/max_resvport).
const RESVPORT_MIN = 665;
const RESVPORT_MAX = 1023;
const RESVPORT_ATTEMPTS = 64;
// A READ reply carries at most rtmax bytes (ganesha's MaxRead defaults to 64 MiB) plus headers.
const DEFAULT_MAX_RECORD = 64 * 1024 * 1024 + 64 * 1024;
const DEFAULT_READ_BUFFER = 256 * 1024;
const DIRECT_READ_MIN = 64 * 1024;

export interface RpcClientOptions {
  host: string;
  port: number;
  target: CallTarget;
  credential: RpcCredential;
  /** Time to wait for a reply before retransmitting, in milliseconds. */
  timeoutMs: number;
  /** Retransmissions after the first send before a soft call fails or a hard call reconnects. */
  retrans: number;
  /** Soft: a call fails with EIO after timeoutMs × (retrans + 1). Hard: calls are retried forever. */
  soft: boolean;
  /** Default for calls: a failed or lost connection fails the call instead of waiting to reconnect. */
  failFast?: boolean;
  /** Bind to a source port below 1024 (servers may insist on it; needs root). */
  privilegedPort: boolean;
  /** Names the service in logs and errors, e.g. "nfs", "mount". */
  label: string;
  maxRecordLength?: number;
  /** Size of the buffer small replies are read into; default 256 KiB. */
  readBufferSize?: number;
  /** Allocates the buffer a reply is received in (default: a fresh one each time). */
  allocateRecord?: (length: number) => Buffer;
  /** Told when an established connection ends other than by close() (the server may have restarted). */
  onConnectionLost?: () => void;
}

export interface CallOptions {
  failFast?: boolean;
}

export class RpcTimeoutError extends RpcError {
  constructor(label: string, address: string, procedure: number, waitedMs: number) {
    super(`${label} server ${address} not responding: procedure ${procedure} timed out after ${waitedMs} ms`, 'EIO');
  }
}

export class RpcConnectionError extends RpcError {
  constructor(label: string, address: string, cause: Error & { code?: string }) {
    super(`cannot reach ${label} server at ${address}: ${cause.message}`, cause.code ?? 'EIO');
  }
}

export class RpcClosedError extends RpcError {
  constructor(label: string) {
    super(`${label} RPC client closed`, 'ECANCELED');
  }
}

interface PendingCall {
  readonly xid: number;
  readonly procedure: number;
  readonly record: Buffer;
  readonly failFast: boolean;
  readonly resolve: (reader: XdrReader) => void;
  readonly reject: (error: Error) => void;
  timer: NodeJS.Timeout | undefined;
  timeouts: number;
}

export class RpcClient {
  private readonly pending = new Map<number, PendingCall>();
  private nextXid = randomInt(0, 0x100000000);
  private socket: net.Socket | undefined;
  private connected = false;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private backoffMs = RECONNECT_INITIAL_MS;
  private privilegedPort: boolean;
  private closed = false;
  private readonly address: string;

  constructor(private readonly options: RpcClientOptions) {
    this.privilegedPort = options.privilegedPort;
    this.address = `${options.host.includes(':') ? `[${options.host}]` : options.host}:${options.port}`;
  }

  /** Calls a procedure; resolves with a reader positioned at its results. */
  call(procedure: number, encodeArgs: (writer: XdrWriter) => void = () => {}, callOptions: CallOptions = {}): Promise<XdrReader> {
    if (this.closed) return Promise.reject(new RpcClosedError(this.options.label));
    const xid = this.allocateXid();
    const record = encodeRecord(encodeCall(xid, this.options.target, procedure, this.options.credential, encodeArgs));
    return new Promise<XdrReader>((resolve, reject) => {
      const call: PendingCall = {
        xid,
        procedure,
        record,
        failFast: callOptions.failFast ?? this.options.failFast ?? false,
        resolve,
        reject,
        timer: undefined,
        timeouts: 0,
      };
      this.pending.set(xid, call);
      this.armTimer(call);
      if (this.connected) this.send(call);
      else this.ensureConnecting();
    });
  }

  get inFlight(): number {
    return this.pending.size;
  }

  /**
   * Runs `sends` with the connection corked: the calls it makes leave in one write, which
   * wakes the server once.
   */
  together<T>(sends: () => T): T {
    const socket = this.connected ? this.socket : undefined;
    socket?.cork();
    try {
      return sends();
    } finally {
      socket?.uncork();
    }
  }

  /** The local address of the connection, while connected: where the server sees this client. */
  get localAddress(): string | undefined {
    return this.connected ? this.socket?.localAddress : undefined;
  }

  /** Fails every pending call, stops reconnecting and closes the connection. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    this.failAll(() => new RpcClosedError(this.options.label));
    this.socket?.destroy();
    this.socket = undefined;
    this.connected = false;
  }

  private allocateXid(): number {
    do {
      this.nextXid = (this.nextXid + 1) >>> 0;
    } while (this.pending.has(this.nextXid));
    return this.nextXid;
  }

  private armTimer(call: PendingCall): void {
    clearTimeout(call.timer);
    call.timer = setTimeout(() => this.onTimeout(call), this.options.timeoutMs);
  }

  private onTimeout(call: PendingCall): void {
    if (this.pending.get(call.xid) !== call) return;
    call.timeouts++;
    const { retrans, soft, timeoutMs, label } = this.options;
    if (soft || call.failFast) {
      if (call.timeouts > retrans) {
        this.settle(call);
        call.reject(new RpcTimeoutError(label, this.address, call.procedure, call.timeouts * timeoutMs));
        return;
      }
    } else if (call.timeouts % (retrans + 1) === 0) {
      // A major timeout on a hard mount: the connection may be half-open, so start a new one
      // (which re-sends every pending call) rather than retransmitting into it again.
      log('%s %s not responding, still trying (xid %s)', label, this.address, call.xid.toString(16));
      this.armTimer(call);
      this.dropConnection();
      return;
    }
    log('%s retransmit xid %s (timeout %d)', label, call.xid.toString(16), call.timeouts);
    this.armTimer(call);
    if (this.connected) this.send(call);
  }

  private send(call: PendingCall): void {
    this.socket?.write(call.record);
  }

  private settle(call: PendingCall): void {
    clearTimeout(call.timer);
    this.pending.delete(call.xid);
  }

  private failAll(makeError: () => Error, only: (call: PendingCall) => boolean = () => true): void {
    for (const call of [...this.pending.values()]) {
      if (!only(call)) continue;
      this.settle(call);
      call.reject(makeError());
    }
  }

  private ensureConnecting(): void {
    if (this.socket !== undefined || this.reconnectTimer !== undefined || this.closed) return;
    this.openSocket(RESVPORT_ATTEMPTS);
  }

  private openSocket(resvportAttemptsLeft: number): void {
    const { host, port, label } = this.options;
    const localPort = this.privilegedPort ? randomInt(RESVPORT_MIN, RESVPORT_MAX + 1) : undefined;
    const decoder = new RecordDecoder(this.options.maxRecordLength ?? DEFAULT_MAX_RECORD, this.options.allocateRecord);
    // Small replies and record headers are read into one reused buffer and copied into their
    // records; the body of a large reply (READ data) is read by the kernel straight into its record.
    const readBuffer = Buffer.allocUnsafe(this.options.readBufferSize ?? DEFAULT_READ_BUFFER);
    let readingDirectly = false;
    const socket = net.connect({
      host,
      port,
      localPort,
      noDelay: true,
      onread: {
        buffer: () => {
          const target = decoder.directTarget(DIRECT_READ_MIN);
          readingDirectly = target !== undefined;
          return target ?? readBuffer;
        },
        callback: (bytes: number, buffer: Uint8Array) => {
          let records: Buffer[];
          try {
            records = readingDirectly ? decoder.filledDirectly(bytes) : decoder.push(Buffer.from(buffer.buffer, buffer.byteOffset, bytes));
          } catch (error) {
            socket.destroy(error as Error);
            return false;
          }
          for (const record of records) this.onRecord(record);
          return true;
        },
      },
    });
    this.socket = socket;
    let failure: (Error & { code?: string }) | undefined;

    socket.on('connect', () => {
      log('%s connected to %s from port %d', label, this.address, socket.localPort);
      this.connected = true;
      this.backoffMs = RECONNECT_INITIAL_MS;
      for (const call of this.pending.values()) this.send(call);
    });
    socket.on('error', (error: Error & { code?: string }) => {
      failure = error;
    });
    socket.on('close', () => {
      if (this.socket !== socket) return;
      const wasConnected = this.connected;
      this.socket = undefined;
      this.connected = false;
      if (this.closed) return;
      const bindFailed = !wasConnected && localPort !== undefined && failure !== undefined;
      if (bindFailed && (failure?.code === 'EADDRINUSE' || failure?.code === 'EADDRNOTAVAIL') && resvportAttemptsLeft > 1) {
        log('%s source port %d busy (%s), trying another', label, localPort, failure?.code);
        this.openSocket(resvportAttemptsLeft - 1);
        return;
      }
      if (bindFailed && failure?.code === 'EACCES') {
        log('%s may not bind a privileged port; using an ordinary one', label);
        this.privilegedPort = false;
        this.openSocket(RESVPORT_ATTEMPTS);
        return;
      }
      const cause = failure ?? Object.assign(new Error('connection closed by server'), { code: 'ECONNRESET' });
      log('%s connection to %s %s: %s', label, this.address, wasConnected ? 'lost' : 'failed', cause.message);
      this.failAll(
        () => new RpcConnectionError(label, this.address, cause),
        (call) => call.failFast,
      );
      if (this.pending.size > 0) this.scheduleReconnect();
      if (wasConnected) this.options.onConnectionLost?.();
    });
  }

  private scheduleReconnect(): void {
    const delay = this.backoffMs;
    this.backoffMs = Math.min(this.backoffMs * 2, RECONNECT_MAX_MS);
    log('%s reconnecting to %s in %d ms (%d calls pending)', this.options.label, this.address, delay, this.pending.size);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      if (this.pending.size > 0) this.ensureConnecting();
    }, delay);
  }

  private dropConnection(): void {
    this.socket?.destroy();
  }

  private onRecord(record: Buffer): void {
    const xid = replyXid(record);
    const call = xid === undefined ? undefined : this.pending.get(xid);
    if (call === undefined) {
      log('%s reply with no pending call (xid %s)', this.options.label, xid?.toString(16));
      return;
    }
    this.settle(call);
    let reader: XdrReader;
    try {
      reader = decodeReply(record, this.options.target, call.procedure);
    } catch (error) {
      call.reject(error as Error);
      return;
    }
    call.resolve(reader);
  }
}

/**
 * A client for a few calls to a small service (a portmapper, statd, a probe): no credentials,
 * soft, failing at once when the connection fails, small replies.
 */
export function smallServiceClient(o: Pick<RpcClientOptions, 'host' | 'port' | 'target' | 'label' | 'timeoutMs' | 'retrans' | 'privilegedPort'>): RpcClient {
  return new RpcClient({ ...o, credential: { flavor: 'none' }, soft: true, failFast: true, readBufferSize: 4096 });
}
