// NfsClient: a mounted NFSv3 export reached in userspace, as a layer backend uses it.

import * as os from 'os';
import createDebug from 'debug';
import { AttrCache } from './attr-cache';
import { MAX_LISTED } from './lower-client';
import { Mount3Error, Nfs3Status, NfsError } from './errors';
import { MOUNT_PROGRAM, MOUNT_VERSION, Mount3Client } from './mount3';
import {
  AccessResult,
  DirEntry,
  DirEntryPlus,
  FileType,
  FsInfo,
  FsStat,
  LookupResult,
  NFS_PROGRAM,
  NFS_VERSION,
  Nfs3,
  NfsAttr,
  PathConf,
  ReadResult,
} from './nfs3';
import { NlmClient } from './nlm-client';
import { getTcpPorts } from './portmap';
import { ReadAhead, OPEN_FILE_READ_AHEAD, shapeFor } from './read-ahead';
import { replyBuffers } from './reply-buffers';
import { RpcClient } from './rpc';
import { RpcCredential } from './rpc-message';
import { NfsUrl, describeNfsUrl, joinPath, parseNfsUrl } from './url';
import { MiB } from '../../util/linux';

const log = createDebug('ovshift:nfs');

const AUTH_NONE = 0;
const AUTH_SYS = 1;
const DOT = Buffer.from('.');
const DOTDOT = Buffer.from('..');
const SLASH = 0x2f;
const ZERO_VERF = Buffer.alloc(8);
// UMNT is a courtesy: never let an unreachable server hold up close().
const UMNT_TIMEOUT_MS = 2000;
const MAX_READDIR_REPLY = 128 * 1024;
/** A whole-file stream's (copy-up's) READs, at most, and how many are in flight. */
const STREAM_CHUNK = MiB;
const STREAM_DEPTH = 4;

export interface ReadStreamOptions {
  /** Where to start; default 0. */
  offset?: number;
  /** How many bytes to read at most; default: the file's size from GETATTR. */
  size?: number;
  /** Bytes per READ; default min(rtpref, 1 MiB), never above rtmax. */
  chunkSize?: number;
  /** READs kept in flight; default 4. */
  depth?: number;
}

/** connect() failed: the message names the URL; `code` is that of the underlying cause. */
export class NfsMountError extends Error {
  readonly code: string;

  constructor(where: string, cause: Error & { code?: string }) {
    super(`cannot mount ${where}: ${cause.message}`, { cause });
    this.name = 'NfsMountError';
    this.code = cause.code ?? 'EIO';
  }
}

/** Where and as whom to talk to the MOUNT service. */
interface MountEndpoint {
  port: number;
  credential: RpcCredential;
  privilegedPort: boolean;
}

interface MountedExport {
  exportPath: Buffer;
  fh: Buffer;
  /** Components of the URL path below the export, to be looked up. */
  below: Buffer[];
}

function isSpecialName(name: Buffer): boolean {
  return name.equals(DOT) || name.equals(DOTDOT);
}

function splitPath(path: string | Buffer): Buffer[] {
  const bytes = typeof path === 'string' ? Buffer.from(path, 'utf8') : path;
  const parts: Buffer[] = [];
  let start = 0;
  for (let i = 0; i <= bytes.length; i++) {
    if (i === bytes.length || bytes[i] === SLASH) {
      if (i > start) parts.push(bytes.subarray(start, i));
      start = i + 1;
    }
  }
  return parts;
}

export class NfsClient {
  private readonly attrCache: AttrCache | undefined;
  private readdirplusSupported = true;
  private closed = false;
  private nlmClient: NlmClient | undefined;

  private constructor(
    readonly url: NfsUrl,
    /** The path the server's MNT accepted; the URL's remaining components were looked up below it. */
    readonly exportPath: Buffer,
    /** Handle of the directory the URL names. */
    readonly root: Buffer,
    /** FSINFO of the export, taken at connect time. */
    readonly info: FsInfo,
    private readonly nfs: Nfs3,
    private readonly rpc: RpcClient,
    private readonly mountEndpoint: MountEndpoint,
  ) {
    this.attrCache = url.actimeo > 0 ? new AttrCache(url.actimeo) : undefined;
  }

  /** Resolves ports, mounts the export, looks up any subdirectory and checks the NFS service answers. */
  static async connect(input: string | NfsUrl): Promise<NfsClient> {
    const url = typeof input === 'string' ? parseNfsUrl(input) : input;
    const where = describeNfsUrl(url);
    const timeoutMs = url.timeo * 100;
    const privilegedPort = url.resvport && process.getuid?.() === 0;
    const credential: RpcCredential = { flavor: 'sys', uid: url.uid, gid: url.gid, gids: [], machineName: os.hostname() };
    try {
      const [nfsPort, mountPort] = await NfsClient.resolvePorts(url, timeoutMs, privilegedPort);
      const mountEndpoint: MountEndpoint = { port: mountPort, credential, privilegedPort };
      const mounted = await NfsClient.mountLongestPrefix(url, timeoutMs, mountEndpoint);
      const rpc = new RpcClient({
        host: url.host,
        port: nfsPort,
        target: { program: NFS_PROGRAM, version: NFS_VERSION },
        credential,
        timeoutMs,
        retrans: url.retrans,
        soft: url.soft,
        privilegedPort,
        label: 'nfs',
        allocateRecord: (length) => replyBuffers.take(length),
      });
      const nfs = new Nfs3(rpc);
      try {
        await nfs.null({ failFast: true });
        let root = mounted.fh;
        for (const name of mounted.below) root = (await nfs.lookup(root, name)).fh;
        const attr = await nfs.getattr(root);
        if (attr.type !== FileType.DIR) throw new NfsError(Nfs3Status.NOTDIR, 'lookup', `'${joinPath(url.path).toString()}'`);
        const info = await nfs.fsinfo(root);
        log('mounted %s (export %s, rtmax %d, rtpref %d)', where, mounted.exportPath.toString(), info.rtmax, info.rtpref);
        return new NfsClient(url, mounted.exportPath, root, info, nfs, rpc, mountEndpoint);
      } catch (error) {
        rpc.close();
        await NfsClient.unmount(url, mounted.exportPath, mountEndpoint);
        throw error;
      }
    } catch (error) {
      throw new NfsMountError(where, error as Error);
    }
  }

  private static async resolvePorts(url: NfsUrl, timeoutMs: number, privilegedPort: boolean): Promise<[number, number]> {
    if (url.port !== undefined && url.mountPort !== undefined) return [url.port, url.mountPort];
    const queries = [];
    if (url.port === undefined) queries.push({ program: NFS_PROGRAM, version: NFS_VERSION, name: 'NFS' });
    if (url.mountPort === undefined) queries.push({ program: MOUNT_PROGRAM, version: MOUNT_VERSION, name: 'MOUNT' });
    const found = await getTcpPorts(url.host, queries, { timeoutMs, retrans: url.retrans, privilegedPort });
    const nfsPort = url.port ?? found.shift();
    const mountPort = url.mountPort ?? found.shift();
    if (nfsPort === undefined || mountPort === undefined) throw new Error('portmapper answered fewer ports than asked');
    log('portmapper on %s: nfs port %d, mount port %d', url.host, nfsPort, mountPort);
    return [nfsPort, mountPort];
  }

  /** MNTs the longest prefix of the URL path the server accepts; the rest is a subdirectory to look up. */
  private static async mountLongestPrefix(url: NfsUrl, timeoutMs: number, endpoint: MountEndpoint): Promise<MountedExport> {
    const mount = new Mount3Client({ host: url.host, timeoutMs, retrans: url.retrans, ...endpoint });
    try {
      let refusal: Mount3Error | undefined;
      for (let n = url.path.length; n >= 0; n--) {
        const exportPath = joinPath(url.path.slice(0, n));
        try {
          const { fh, authFlavors } = await mount.mnt(exportPath);
          if (authFlavors.length > 0 && !authFlavors.includes(AUTH_SYS) && !authFlavors.includes(AUTH_NONE)) {
            await mount.umnt(exportPath);
            throw new Error(`export ${exportPath.toString()} needs security flavors [${authFlavors.join(', ')}]; only AUTH_SYS and AUTH_NONE are supported`);
          }
          return { exportPath, fh, below: url.path.slice(n) };
        } catch (error) {
          if (!(error instanceof Mount3Error)) throw error;
          log('MNT %s refused: %s', exportPath.toString(), error.mountStatus);
          refusal ??= error;
        }
      }
      throw refusal ?? new Error('no export path to try');
    } finally {
      mount.close();
    }
  }

  private static async unmount(url: NfsUrl, exportPath: Buffer, endpoint: MountEndpoint): Promise<void> {
    const mount = new Mount3Client({ host: url.host, timeoutMs: UMNT_TIMEOUT_MS, retrans: 0, ...endpoint });
    try {
      await mount.umnt(exportPath);
    } catch (error) {
      log('UMNT %s failed: %s', exportPath.toString(), (error as Error).message);
    } finally {
      mount.close();
    }
  }

  private remember(fh: Buffer | undefined, attr: NfsAttr | undefined): void {
    if (this.attrCache !== undefined && fh !== undefined && attr !== undefined) this.attrCache.set(fh, attr);
  }

  /** Runs an operation on `fh`, dropping its cached attributes if the server calls it stale. */
  private async onHandle<T>(fh: Buffer, operation: () => Promise<T>): Promise<T> {
    try {
      return await operation();
    } catch (error) {
      if (this.attrCache !== undefined && error instanceof NfsError && error.code === 'ESTALE') this.attrCache.forget(fh);
      throw error;
    }
  }

  async getattr(fh: Buffer): Promise<NfsAttr> {
    const cached = this.attrCache?.get(fh);
    if (cached !== undefined) return cached;
    const attr = await this.onHandle(fh, () => this.nfs.getattr(fh));
    this.remember(fh, attr);
    return attr;
  }

  async lookup(dirFh: Buffer, name: Buffer | string): Promise<LookupResult> {
    const bytes = typeof name === 'string' ? Buffer.from(name, 'utf8') : name;
    if (bytes.length === 0 || bytes.includes(SLASH) || bytes.includes(0)) {
      throw new NfsError(Nfs3Status.INVAL, 'lookup', `'${bytes.toString()}' (not a single file name)`);
    }
    const result = await this.onHandle(dirFh, () => this.nfs.lookup(dirFh, bytes));
    this.remember(result.fh, result.attr);
    this.remember(dirFh, result.dirAttr);
    return result;
  }

  /** Looks a path up component by component from the root; ".." stops at the root. */
  async lookupPath(path: string | Buffer): Promise<LookupResult> {
    const stack: Buffer[] = [];
    let current: LookupResult | undefined;
    for (const name of splitPath(path)) {
      if (name.equals(DOT)) continue;
      if (name.equals(DOTDOT)) {
        stack.pop();
        current = undefined;
        continue;
      }
      current = await this.lookup(stack.at(-1) ?? this.root, name);
      stack.push(current.fh);
    }
    if (current !== undefined) return current;
    const fh = stack.at(-1) ?? this.root;
    return { fh, attr: await this.getattr(fh) };
  }

  async access(fh: Buffer, mask: number): Promise<AccessResult> {
    const result = await this.onHandle(fh, () => this.nfs.access(fh, mask));
    this.remember(fh, result.attr);
    return result;
  }

  async readlink(fh: Buffer): Promise<Buffer> {
    const { target, attr } = await this.onHandle(fh, () => this.nfs.readlink(fh));
    this.remember(fh, attr);
    return target;
  }

  /** One READ; `data` may be shorter than `count` (check `eof`). */
  async read(fh: Buffer, offset: bigint | number, count: number): Promise<ReadResult> {
    const result = await this.onHandle(fh, () => this.nfs.read(fh, BigInt(offset), count));
    this.remember(fh, result.attr);
    return result;
  }

  /** Positional reads of one file, read ahead when they follow each other (for an open file). */
  reader(fh: Buffer): ReadAhead {
    const shape = shapeFor(OPEN_FILE_READ_AHEAD, this.info.rtmax);
    return new ReadAhead(
      (at, count) => this.read(fh, at, count),
      shape.chunk,
      shape,
      (data) => replyBuffers.give(data),
    );
  }

  /**
   * Streams a file's bytes in order with several READs in flight, e.g. for copy-up.
   * Stops early at end of file.
   */
  async *readStream(fh: Buffer, options: ReadStreamOptions = {}): AsyncGenerator<Buffer, void, undefined> {
    const offset = options.offset ?? 0;
    const size = options.size ?? Number((await this.getattr(fh)).size) - offset;
    const chunk = Math.min(options.chunkSize ?? Math.min(this.info.rtpref, STREAM_CHUNK), this.info.rtmax);
    const shape = { chunk, depth: options.depth ?? STREAM_DEPTH, streak: 0, maxAgeMs: Infinity };
    yield* new ReadAhead((at, count) => this.read(fh, at, count), this.info.rtmax, shape).stream(offset, offset + size);
  }

  /** All entries of a directory except "." and "..", with attributes and handles where the server gives them. */
  async readdirplus(dirFh: Buffer): Promise<DirEntryPlus[]> {
    if (!this.readdirplusSupported) return this.readdir(dirFh);
    const maxcount = Math.min(this.info.rtmax, MAX_READDIR_REPLY);
    const dircount = Math.min(this.info.dtpref, maxcount);
    try {
      return await this.listDirectory(dirFh, 'readdirplus', (cookie, verf) => this.nfs.readdirplus(dirFh, cookie, verf, dircount, maxcount));
    } catch (error) {
      if (!(error instanceof NfsError) || error.status !== Nfs3Status.NOTSUPP) throw error;
      log('server does not support READDIRPLUS; using READDIR');
      this.readdirplusSupported = false;
      return this.readdir(dirFh);
    }
  }

  /** All entries of a directory except "." and "..": names and file ids only. */
  async readdir(dirFh: Buffer): Promise<DirEntry[]> {
    const count = Math.min(this.info.dtpref, MAX_READDIR_REPLY);
    return this.listDirectory(dirFh, 'readdir', (cookie, verf) => this.nfs.readdir(dirFh, cookie, verf, count));
  }

  private async listDirectory<E extends DirEntryPlus>(
    dirFh: Buffer,
    syscall: string,
    page: (cookie: bigint, verf: Buffer) => Promise<{ dirAttr?: NfsAttr; cookieverf: Buffer; entries: E[]; eof: boolean }>,
  ): Promise<E[]> {
    return this.onHandle(dirFh, async () => {
      const all: E[] = [];
      let cookie = 0n;
      let verf: Buffer = ZERO_VERF;
      for (;;) {
        const result = await page(cookie, verf);
        this.remember(dirFh, result.dirAttr);
        for (const entry of result.entries) {
          if (isSpecialName(entry.name)) continue;
          this.remember(entry.fh, entry.attr);
          all.push(entry);
        }
        if (result.eof) return all;
        if (all.length > MAX_LISTED) throw new NfsError(Nfs3Status.IO, syscall, `(more than ${MAX_LISTED} entries without an end)`);
        const last = result.entries.at(-1);
        if (last === undefined) throw new NfsError(Nfs3Status.IO, syscall, '(server returned no entries before end of directory)');
        cookie = last.cookie;
        verf = result.cookieverf;
      }
    });
  }

  async fsstat(fh: Buffer = this.root): Promise<FsStat> {
    return this.onHandle(fh, () => this.nfs.fsstat(fh));
  }

  async fsinfo(fh: Buffer = this.root): Promise<FsInfo> {
    return this.onHandle(fh, () => this.nfs.fsinfo(fh));
  }

  async pathconf(fh: Buffer = this.root): Promise<PathConf> {
    return this.onHandle(fh, () => this.nfs.pathconf(fh));
  }

  /** RPC calls sent and not yet answered. */
  get inFlight(): number {
    return this.rpc.inFlight;
  }

  /** Runs `sends` so that the calls it makes leave in one write (see RpcClient.together). */
  together<T>(sends: () => T): T {
    return this.rpc.together(sends);
  }

  /** Fails pending calls, closes the connection and tells the server (UMNT, best effort, bounded). */
  /** The server's lock manager, connected at the first lock. */
  get nlm(): NlmClient {
    this.nlmClient ??= new NlmClient({
      host: this.url.host,
      port: this.url.nlmPort,
      credential: this.mountEndpoint.credential,
      timeoutMs: this.url.timeo * 100,
      retrans: this.url.retrans,
      soft: this.url.soft,
      privilegedPort: this.mountEndpoint.privilegedPort,
      callerName: os.hostname(),
      label: describeNfsUrl(this.url),
    });
    return this.nlmClient;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.nlmClient?.close();
    this.rpc.close();
    this.attrCache?.clear();
    await NfsClient.unmount(this.url, this.exportPath, this.mountEndpoint);
  }
}
