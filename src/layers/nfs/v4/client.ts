/**
 * Nfs4Client: an NFSv4.1/4.2 export reached in userspace, as a layer backend uses it. One
 * connection to the server's NFS port (no portmapper, no MOUNT); one COMPOUND per call: a lookup
 * is PUTFH + LOOKUP + GETFH + GETATTR, the root is found by PUTROOTFH + LOOKUP… in one go. Files
 * are read under an OPEN (read access, no deny) held while any handle of the overlay has them
 * open, and CLOSEd after.
 */
import * as os from 'os';
import createDebug from 'debug';
import { Nfs4FileLocks } from './locks';
import { bitmapOf, hasBit, readAce, readFattr, type Fattr4, type Nfs4Ace } from './attrs';
import { ANONYMOUS_STATEID, CURRENT_STATEID, Compound, readStateid, writeStateid, type CompoundReply, type Stateid } from './compound';
import { Nfs4Error } from './errors';
import { NOBODY_ID, ownerToId } from './owners';
import {
  Attr,
  Delegation,
  NFS4_OPAQUE_LIMIT,
  NFS4_PORT,
  NFS4_PROGRAM,
  NFS4_VERSION,
  NFS4_VERIFIER_SIZE,
  Nfs4Status,
  Op,
  OpenClaim,
  SHARE_DENY_NONE,
  ShareAccess,
  WhyNoDelegation,
} from './protocol';
import { MAX_RESPONSE, Nfs4Session } from './session';
import { encodeNfs4Acl } from './acl-xattr';
import { FileType, S_IFMT_OF, type DirEntryPlus, type NfsAttr, type ReadResult } from '../nfs3';
import { ReadAhead, OPEN_FILE_READ_AHEAD, shapeFor } from '../read-ahead';
import { replyBuffers } from '../reply-buffers';
import { RpcClient } from '../rpc';
import type { RpcCredential } from '../rpc-message';
import type { XdrReader } from '../xdr';
import { describeNfsUrl, joinPath, type NfsUrl } from '../url';
import { MAX_LISTED, type NfsFound, type NfsFsStat, type NfsLowerClient, type NfsOpenFile } from '../lower-client';
import type { LayerLocks, LentParts } from '../../types';
import { MiB } from '../../../util/linux';

const log = createDebug('ovshift:nfs4');

/** What every GETATTR asks: a stat(2)'s worth, and the change attribute. */
const FILE_ATTRS: readonly Attr[] = [
  Attr.TYPE,
  Attr.CHANGE,
  Attr.SIZE,
  Attr.FSID,
  Attr.FILEID,
  Attr.MODE,
  Attr.NUMLINKS,
  Attr.OWNER,
  Attr.OWNER_GROUP,
  Attr.RAWDEV,
  Attr.SPACE_USED,
  Attr.TIME_ACCESS,
  Attr.TIME_METADATA,
  Attr.TIME_MODIFY,
];
/** A READDIR entry's: the same, its handle, and whether they could be had. */
const ENTRY_ATTRS: readonly Attr[] = [Attr.RDATTR_ERROR, Attr.FILEHANDLE, ...FILE_ATTRS];
const FS_ATTRS: readonly Attr[] = [Attr.FILES_AVAIL, Attr.FILES_TOTAL, Attr.MAXNAME, Attr.SPACE_AVAIL, Attr.SPACE_FREE, Attr.SPACE_TOTAL];
const SERVER_ATTRS: readonly Attr[] = [Attr.TYPE, Attr.LEASE_TIME, Attr.MAXREAD, Attr.ACLSUPPORT, Attr.SUPPORTED_ATTRS];

const MAX_READDIR_REPLY = 128 * 1024;
/**
 * The largest READ, whatever the server allows: the kernel's NFS client's largest too. Larger
 * ones are slower over NFSv4 here (nfs-ganesha 4.3: a 2 MiB READ took 2 to 8 ms, four times two
 * 1 MiB READs), and read-ahead keeps the same window in more READs.
 */
const MAX_READ = MiB;
/** Read with the OPEN: the kernel's first read of a file is 128 KiB at most. */
const FIRST_READ = 128 * 1024;
const ZERO_VERF = Buffer.alloc(NFS4_VERIFIER_SIZE);
const STREAM_CHUNK = MiB;
const STREAM_DEPTH = 4;
/** Lookups per COMPOUND when a path is walked from the root (each op counts against the server's maximum). */
const LOOKUPS_PER_COMPOUND = 8;
const DEFAULT_LEASE_SECONDS = 90;
const CLOSE_TIMEOUT_MS = 2000;
/** An open's stateid the server no longer honours: open the file again, then the same call. */
/** A reclaim the server will not take: open anew instead. */
const RECLAIM_REFUSED = new Set([Nfs4Status.NO_GRACE, Nfs4Status.RECLAIM_BAD, Nfs4Status.RECLAIM_CONFLICT]);
export const STATE_LOST = new Set([Nfs4Status.BAD_STATEID, Nfs4Status.STALE_STATEID, Nfs4Status.EXPIRED, Nfs4Status.ADMIN_REVOKED, Nfs4Status.DELEG_REVOKED]);

export const NFS4_ACL_XATTR = 'system.nfs4_acl';

/** The attributes of a GETATTR, as the rest of the client knows them (NFSv3's shape plus `change`). */
export function toNfsAttr(f: Fattr4): NfsAttr {
  const type = f.type ?? FileType.REG;
  const ifmt = S_IFMT_OF[type as FileType];
  if (ifmt === undefined) throw new Nfs4Error(Nfs4Status.BADTYPE, Op.GETATTR, `(object of type ${type})`);
  const size = f.size ?? 0n;
  const fsid = f.fsid === undefined ? 0n : ((f.fsid.major << 32n) ^ f.fsid.minor) & ((1n << 64n) - 1n);
  const zero = { sec: 0, nsec: 0 };
  return {
    type: type as FileType,
    mode: ifmt | ((f.mode ?? 0) & 0o7777),
    nlink: f.numlinks ?? 1,
    uid: f.owner === undefined ? NOBODY_ID : ownerToId(f.owner, false),
    gid: f.ownerGroup === undefined ? NOBODY_ID : ownerToId(f.ownerGroup, true),
    size,
    used: f.spaceUsed ?? size,
    rdev: f.rawdev ?? { major: 0, minor: 0 },
    fsid,
    fileid: f.fileid ?? 0n,
    atime: f.atime ?? zero,
    mtime: f.mtime ?? zero,
    ctime: f.ctime ?? f.mtime ?? zero,
    change: f.change,
  };
}

interface OpenState {
  /** Its key in the client's table: handle and access. */
  key: string;
  /** share_access: READ, or BOTH. */
  access: number;
  stateid: Stateid;
  /** The client id generation the OPEN was made in: an older one is gone from the server. */
  generation: number;
  refs: number;
  /** Set while an OPEN (or a reopen) is in flight. */
  pending?: Promise<void>;
}

/** The reply to an OPEN: its stateid, and a delegation to give back if the server granted one anyway. */
function readOpenResult(r: ReturnType<CompoundReply['ok']>): { stateid: Stateid; delegation?: Stateid } {
  const stateid = readStateid(r);
  r.bool(); // cinfo.atomic
  r.uint64(); // cinfo.before
  r.uint64(); // cinfo.after
  r.uint32(); // rflags
  r.array((x) => x.uint32(), 8); // attrset
  const kind = r.uint32();
  switch (kind) {
    case Delegation.NONE:
      return { stateid };
    case Delegation.READ: {
      const delegation = readStateid(r);
      r.bool(); // recall
      readAce(r); // permissions
      return { stateid, delegation };
    }
    case Delegation.WRITE: {
      const delegation = readStateid(r);
      r.bool(); // recall
      // space_limit: NFS_LIMIT_SIZE (a size) or NFS_LIMIT_BLOCKS (blocks, block size)
      if (r.uint32() === 1) r.uint64();
      else r.opaqueFixed(8);
      readAce(r); // permissions
      return { stateid, delegation };
    }
    case Delegation.NONE_EXT: {
      const why = r.uint32();
      if (why === WhyNoDelegation.CONTENTION || why === WhyNoDelegation.RESOURCE) r.bool();
      return { stateid };
    }
    default:
      throw new Nfs4Error(Nfs4Status.IO, Op.OPEN, `(unknown delegation type ${kind})`);
  }
}

export class Nfs4Client implements NfsLowerClient {
  readonly protocol: string;
  /** The largest READ: the server's maxread, within what the session's replies may carry. */
  private readonly maxRead: number;
  private readonly opens = new Map<string, OpenState>();
  /** CLOSEs in flight, by open key: a new OPEN of the same file waits for its CLOSE. */
  private readonly closing = new Map<string, Promise<void>>();
  private readonly openOwner: Buffer;
  private nextLockOwner = 1;
  private closed = false;
  /** Lock owners holding or having held locks on the server, to be reclaimed after a restart. */
  readonly lockHolders = new Set<Nfs4FileLocks>();
  /** Locks the server forgot and could not be had back (for status). */
  lostLocks = 0;

  private constructor(
    readonly url: NfsUrl,
    readonly root: Buffer,
    readonly session: Nfs4Session,
    private readonly rpc: RpcClient,
    maxRead: number,
    /** The server has the ACL attribute. */
    private readonly hasAcls: boolean,
  ) {
    this.protocol = `NFSv4.${session.minorVersion}`;
    this.maxRead = Math.max(4096, Math.min(maxRead, MAX_READ, (session.fore?.maxResponseSize ?? MAX_RESPONSE) - 4096));
    this.openOwner = Buffer.from(`open ${os.hostname()} ${process.pid}`);
  }

  get inFlight(): number {
    return this.rpc.inFlight;
  }

  get preferredRead(): number {
    return Math.min(this.maxRead, MiB);
  }

  /**
   * Connects to the server's NFS port, establishes a client id and session and finds the URL's
   * directory. Throws Nfs4Error MINOR_VERS_MISMATCH when the server does not speak `minor`.
   */
  static async connect(url: NfsUrl, minor: number): Promise<Nfs4Client> {
    const credential: RpcCredential = { flavor: 'sys', uid: url.uid, gid: url.gid, gids: [], machineName: os.hostname() };
    const timeoutMs = url.timeo * 100;
    const rpc = new RpcClient({
      host: url.host,
      port: url.port ?? NFS4_PORT,
      target: { program: NFS4_PROGRAM, version: NFS4_VERSION },
      credential,
      timeoutMs,
      retrans: url.retrans,
      soft: url.soft,
      privilegedPort: url.resvport && process.getuid?.() === 0,
      label: 'nfs4',
      // No reply may be larger than the session lets the server send.
      maxRecordLength: MAX_RESPONSE + 64 * 1024,
      allocateRecord: (length) => replyBuffers.take(length),
    });
    // Set once the client exists: the session reports to it.
    let client: Nfs4Client | undefined;
    const session = new Nfs4Session(
      rpc,
      minor,
      Nfs4Session.newOwnerId(`${os.hostname()} ${process.pid} ${describeNfsUrl(url)}`),
      {
        clientLost: async () => client?.clientLost(),
        stateRevoked: (flags) => client?.stateRevoked(flags),
      },
      url.soft ? timeoutMs * (url.retrans + 1) : undefined,
    );
    try {
      await rpc.call(0, undefined, { failFast: true });
      await session.establish(true);
      const root = await Nfs4Client.findRoot(session, url.path);
      const info = await session.run(new Compound().putfh(root).getattr(SERVER_ATTRS), (reply) => {
        reply.ok(Op.PUTFH);
        return reply.getattr();
      });
      if (info.type !== FileType.DIR) throw new Nfs4Error(Nfs4Status.NOTDIR, Op.LOOKUP, `'${joinPath(url.path).toString()}'`);
      session.startRenewing(info.leaseTime ?? DEFAULT_LEASE_SECONDS);
      const maxRead = Number(info.maxread ?? BigInt(MiB));
      client = new Nfs4Client(
        url,
        root,
        session,
        rpc,
        maxRead,
        info.supported !== undefined && hasBit(info.supported, Attr.ACL) && (info.aclSupport ?? 0) !== 0,
      );
      log('mounted %s over NFSv4.%d (lease %d s, maxread %d)', describeNfsUrl(url), minor, info.leaseTime, maxRead);
      return client;
    } catch (err) {
      await session.destroy();
      rpc.close();
      throw err;
    }
  }

  /** PUTROOTFH + LOOKUP of each component + GETFH, a few components per COMPOUND. */
  private static async findRoot(session: Nfs4Session, path: readonly Buffer[]): Promise<Buffer> {
    let fh: Buffer | undefined;
    let at = 0;
    do {
      const names = path.slice(at, at + LOOKUPS_PER_COMPOUND);
      const c = fh === undefined ? new Compound().putrootfh() : new Compound().putfh(fh);
      for (const name of names) c.lookup(name);
      c.getfh();
      fh = await session.run(c, (reply) => {
        reply.ok(c.ops[0]!);
        for (const name of names) reply.ok(Op.LOOKUP, `'${name.toString()}'`);
        return reply.getfh();
      });
      at += names.length;
    } while (at < path.length);
    return fh;
  }

  getattr(fh: Buffer): Promise<NfsAttr> {
    return this.session.run(new Compound().putfh(fh).getattr(FILE_ATTRS), (reply) => {
      reply.ok(Op.PUTFH);
      return toNfsAttr(reply.getattr());
    });
  }

  /** One COMPOUND: PUTFH + LOOKUP + GETFH + GETATTR. */
  lookup(dirFh: Buffer, name: Buffer): Promise<NfsFound> {
    if (name.length === 0 || name.includes(0x2f) || name.includes(0)) {
      return Promise.reject(new Nfs4Error(Nfs4Status.INVAL, Op.LOOKUP, `'${name.toString()}' (not a single file name)`));
    }
    const c = new Compound().putfh(dirFh).lookup(name).getfh().getattr(FILE_ATTRS);
    return this.session.run(c, (reply) => {
      reply.ok(Op.PUTFH);
      reply.ok(Op.LOOKUP, `'${name.toString()}'`);
      return { fh: reply.getfh(), attr: toNfsAttr(reply.getattr()) };
    });
  }

  readlink(fh: Buffer): Promise<Buffer> {
    return this.session.run(new Compound().putfh(fh).add(Op.READLINK), (reply) => {
      reply.ok(Op.PUTFH);
      return Buffer.from(reply.ok(Op.READLINK).opaque());
    });
  }

  async readdirplus(dirFh: Buffer): Promise<DirEntryPlus[]> {
    const all: DirEntryPlus[] = [];
    let cookie = 0n;
    let verf = ZERO_VERF;
    const words = ENTRY_ATTRS;
    for (;;) {
      const c = new Compound().putfh(dirFh).add(Op.READDIR, (w) => {
        w.uint64(cookie)
          .opaqueFixed(verf, NFS4_VERIFIER_SIZE)
          .uint32(MAX_READDIR_REPLY / 4)
          .uint32(MAX_READDIR_REPLY);
        w.array(bitmapOf(words), (x, word) => x.uint32(word));
      });
      const page = await this.session.run(c, (reply) => {
        reply.ok(Op.PUTFH);
        const r = reply.ok(Op.READDIR);
        const pageVerf = Buffer.from(r.opaqueFixed(NFS4_VERIFIER_SIZE));
        const entries: DirEntryPlus[] = [];
        let last = cookie;
        while (r.bool()) {
          last = r.uint64();
          const name = Buffer.from(r.opaque());
          const f = readFattr(r);
          const usable = (f.rdattrError ?? 0) === 0 && f.type !== undefined && S_IFMT_OF[f.type as FileType] !== undefined;
          entries.push({ name, cookie: last, fileid: f.fileid ?? 0n, fh: usable ? f.filehandle : undefined, attr: usable ? toNfsAttr(f) : undefined });
        }
        return { verf: pageVerf, entries, eof: r.bool(), last };
      });
      for (const e of page.entries) if (!isDotName(e.name)) all.push(e);
      if (page.eof) return all;
      if (all.length > MAX_LISTED) throw new Nfs4Error(Nfs4Status.IO, Op.READDIR, `(more than ${MAX_LISTED} entries without an end)`);
      if (page.entries.length === 0 || page.last === cookie)
        throw new Nfs4Error(Nfs4Status.IO, Op.READDIR, '(server listed nothing new before the end of the directory)');
      cookie = page.last;
      verf = page.verf;
    }
  }

  async fsstat(): Promise<NfsFsStat> {
    const f = await this.session.run(new Compound().putfh(this.root).getattr(FS_ATTRS), (reply) => {
      reply.ok(Op.PUTFH);
      return reply.getattr();
    });
    return {
      totalBytes: f.spaceTotal ?? 0n,
      freeBytes: f.spaceFree ?? 0n,
      availBytes: f.spaceAvail ?? 0n,
      totalFiles: f.filesTotal ?? 0n,
      availFiles: f.filesAvail ?? 0n,
      nameMax: f.maxname ?? 255,
    };
  }

  /** The object's NFSv4 ACL, when the server keeps ACLs and sends this one. */
  private async acl(fh: Buffer): Promise<Nfs4Ace[] | undefined> {
    if (!this.hasAcls) return undefined;
    const f = await this.session.run(new Compound().putfh(fh).getattr([Attr.ACL]), (reply) => {
      reply.ok(Op.PUTFH);
      return reply.getattr();
    });
    return f.acl;
  }

  /** `system.nfs4_acl`: the object's ACL in the kernel NFS client's format (XDR of nfsace4<>). */
  async getxattr(fh: Buffer, name: string): Promise<Buffer | null> {
    if (name !== NFS4_ACL_XATTR) return null;
    const acl = await this.acl(fh);
    return acl === undefined ? null : encodeNfs4Acl(acl);
  }

  /** `system.nfs4_acl` where the server sends the object's ACL. */
  async listxattr(fh: Buffer): Promise<string[]> {
    return (await this.acl(fh)) === undefined ? [] : [NFS4_ACL_XATTR];
  }

  sharedLocksNow(): string {
    const lost = this.lostLocks === 0 ? '' : `; ${this.lostLocks} lost (the server forgot or revoked them: see the log)`;
    return `the server, as NFSv4.${this.session.minorVersion} byte-range locks (LOCK/LOCKU/LOCKT)${lost}`;
  }

  // --- opens -------------------------------------------------------------------------------

  async open(fh: Buffer): Promise<NfsOpenFile> {
    return new Nfs4OpenFile(this, fh, await this.openState(fh, ShareAccess.READ));
  }

  /**
   * The open of `fh` with `access` (READ, or BOTH for write locks), shared by every user of this
   * client and counted: `release` it once done.
   */
  async openState(fh: Buffer, access: number): Promise<OpenState> {
    const key = `${fh.toString('hex')}:${access}`;
    await this.closing.get(key);
    let state = this.opens.get(key);
    if (state === undefined) {
      state = { key, access, stateid: ANONYMOUS_STATEID, generation: -1, refs: 0 };
      this.opens.set(key, state);
    }
    state.refs++;
    try {
      await this.ensureOpen(fh, state);
    } catch (err) {
      this.release(fh, state);
      throw err;
    }
    return state;
  }

  /** Opens (or opens again, after the server lost it) the file `state` is for. */
  async ensureOpen(fh: Buffer, state: OpenState, recovering = false): Promise<void> {
    if (recovering) {
      // Not by joining an OPEN in flight: that one waits for the recovery this is part of.
      if (state.generation !== this.session.generation) this.setStateid(state, await this.sendOpen(fh, state.access, true), this.session.generation);
      return;
    }
    while (state.generation !== this.session.generation) {
      if (state.pending === undefined) {
        state.pending = this.sendOpen(fh, state.access, false)
          .then((stateid) => this.setStateid(state, stateid, this.session.generation))
          .finally(() => (state.pending = undefined));
      }
      await state.pending;
    }
  }

  /**
   * Records what an OPEN answered. Several OPENs of one file by one owner are one state on the
   * server, each answer newer than the last: a late answer never replaces a newer one.
   */
  private setStateid(state: OpenState, stateid: Stateid, generation: number): void {
    if (state.generation === generation && state.stateid.other.equals(stateid.other) && seqidBefore(stateid.seqid, state.stateid.seqid)) return;
    state.stateid = stateid;
    state.generation = generation;
  }

  /** OPEN of the current handle; while recovering, a reclaim (CLAIM_PREVIOUS) first. */
  private async sendOpen(fh: Buffer, access: number, recovering: boolean): Promise<Stateid> {
    if (recovering) {
      try {
        return await this.sendOpenClaim(fh, access, OpenClaim.PREVIOUS, true);
      } catch (err) {
        if (!(err instanceof Nfs4Error && RECLAIM_REFUSED.has(err.status))) throw err;
        log('reclaiming the open of %s refused (%s): opening it anew', fh.toString('hex'), err.nfsStatus);
      }
    }
    return this.sendOpenClaim(fh, access, OpenClaim.FH, recovering);
  }

  /** OPEN of the current handle, no create. */
  private addOpen(c: Compound, access: number, claim: OpenClaim): Compound {
    return c.add(Op.OPEN, (w) => {
      w.uint32(0); // seqid: unused in 4.1
      w.uint32(access | ShareAccess.WANT_NO_DELEG).uint32(SHARE_DENY_NONE);
      // One open owner per access: the server merges one owner's opens of a file into one
      // state (an OPEN upgrades it, a CLOSE ends it all), and these are opened and closed apart.
      w.uint64(this.session.client).opaque(Buffer.concat([this.openOwner, Buffer.from(` ${access}`)]), NFS4_OPAQUE_LIMIT);
      w.uint32(0); // OPEN4_NOCREATE
      w.uint32(claim);
      if (claim === OpenClaim.PREVIOUS) w.uint32(Delegation.NONE);
    });
  }

  private async sendOpenClaim(fh: Buffer, access: number, claim: OpenClaim, recovering: boolean): Promise<Stateid> {
    const c = this.addOpen(new Compound().putfh(fh), access, claim);
    const { stateid, delegation } = await this.session.run(
      c,
      (reply) => {
        reply.ok(Op.PUTFH);
        return readOpenResult(reply.ok(Op.OPEN));
      },
      { recovering },
    );
    if (delegation !== undefined) void this.returnDelegation(fh, delegation);
    return stateid;
  }

  private async returnDelegation(fh: Buffer, delegation: Stateid): Promise<void> {
    const c = new Compound().putfh(fh).add(Op.DELEGRETURN, (w) => writeStateid(w, delegation));
    await this.session.run(c, (reply) => (reply.ok(Op.PUTFH), reply.ok(Op.DELEGRETURN))).catch((err: Error) => log('DELEGRETURN failed: %s', err.message));
  }

  /**
   * One user of the open is done; the last one's CLOSE goes out without being waited for (a
   * close(2) need not wait for the server), and the next OPEN of the file waits for it.
   */
  release(fh: Buffer, state: OpenState): void {
    if (--state.refs > 0) return;
    if (this.opens.get(state.key) === state) this.opens.delete(state.key);
    const closed = (async () => {
      await state.pending?.catch(() => undefined);
      if (state.generation !== this.session.generation || this.closed) return;
      await this.sendClose(fh, state.stateid);
    })().finally(() => {
      if (this.closing.get(state.key) === closed) this.closing.delete(state.key);
    });
    this.closing.set(state.key, closed);
  }

  /**
   * One COMPOUND: PUTFH + LOOKUP + GETFH + GETATTR + OPEN of what the name leads to now (read
   * access) + with `readSoon`, READ of its first bytes under that open (the current stateid),
   * which the first read is answered from, so a small file costs one round trip to open and
   * read. Null when that is not the object `expected` names; nothing stays open then.
   */
  async openEntry(dirFh: Buffer, name: Buffer, expected: Buffer, readSoon: boolean): Promise<{ found: NfsFound; file: NfsOpenFile } | null> {
    const key = `${expected.toString('hex')}:${ShareAccess.READ}`;
    await this.closing.get(key);
    const firstRead = Math.min(FIRST_READ, this.maxRead);
    const c = new Compound().putfh(dirFh).lookup(name).getfh().getattr(FILE_ATTRS);
    this.addOpen(c, ShareAccess.READ, OpenClaim.FH);
    if (readSoon) {
      c.add(Op.READ, (w) => {
        writeStateid(w, CURRENT_STATEID);
        w.uint64(0n).uint32(firstRead);
      });
    }
    const { fh, fattr, opened, first } = await this.session.run(c, (reply) => {
      reply.ok(Op.PUTFH);
      reply.ok(Op.LOOKUP, `'${name.toString()}'`);
      const found = { fh: reply.getfh(), fattr: reply.getattr(), opened: readOpenResult(reply.ok(Op.OPEN)) };
      // From here the file is open on the server: nothing below may throw past a CLOSE.
      if (!readSoon) return { ...found, first: undefined };
      let read: ReadResult | undefined;
      try {
        // A READ the server refused (a directory, say) just primes nothing.
        const { status, r } = reply.result(Op.READ);
        if (status === Nfs4Status.OK) read = readResult(r, firstRead);
      } catch (err) {
        log("open of '%s': its first READ is unusable: %s", name.toString(), (err as Error).message);
      }
      return { ...found, first: read };
    });
    // The generation the OPEN was made in: the recovery waited for before sending, if any.
    const generation = this.session.generation;
    let attr: NfsAttr;
    try {
      attr = toNfsAttr(fattr);
    } catch (err) {
      void this.sendClose(fh, opened.stateid);
      if (first) replyBuffers.give(first.data);
      throw err;
    }
    if (opened.delegation !== undefined) void this.returnDelegation(fh, opened.delegation);
    // The server keeps one open per owner and file: this OPEN joined any the mount has already.
    const stateKey = `${fh.toString('hex')}:${ShareAccess.READ}`;
    let state = this.opens.get(stateKey);
    if (state === undefined) {
      state = { key: stateKey, access: ShareAccess.READ, stateid: opened.stateid, generation, refs: 0 };
      this.opens.set(stateKey, state);
    } else if (generation === this.session.generation) {
      this.setStateid(state, opened.stateid, generation);
    }
    state.refs++;
    if (!fh.equals(expected)) {
      this.release(fh, state);
      if (first) replyBuffers.give(first.data);
      return null;
    }
    const file = new Nfs4OpenFile(this, fh, state);
    if (first) file.prime(firstRead, first);
    return { found: { fh, attr }, file };
  }

  private async sendClose(fh: Buffer, stateid: Stateid): Promise<void> {
    const c = new Compound().putfh(fh).add(Op.CLOSE, (w) => {
      w.uint32(0);
      writeStateid(w, stateid);
    });
    await this.session.run(c, (reply) => (reply.ok(Op.PUTFH), reply.ok(Op.CLOSE))).catch((err: Error) => log('CLOSE failed: %s', err.message));
  }

  /** Runs a call that uses an open's stateid; when the server lost that state, opens again and retries. */
  async withOpen<T>(fh: Buffer, state: OpenState, call: (stateid: Stateid) => Promise<T>, recovering = false): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      await this.ensureOpen(fh, state, recovering);
      const generation = state.generation;
      try {
        return await call(state.stateid);
      } catch (err) {
        if (attempt >= 2 || !(err instanceof Nfs4Error) || !STATE_LOST.has(err.status)) throw err;
        log('open of %s lost (%s): opening it again', fh.toString('hex'), err.nfsStatus);
        if (state.generation === generation) state.generation = -1;
      }
    }
  }

  read(fh: Buffer, stateid: Stateid, offset: number, count: number): Promise<ReadResult> {
    const c = new Compound().putfh(fh).add(Op.READ, (w) => {
      writeStateid(w, current(stateid));
      w.uint64(BigInt(offset)).uint32(Math.min(count, this.maxRead));
    });
    return this.session.run(c, (reply) => {
      reply.ok(Op.PUTFH);
      return readResult(reply.ok(Op.READ), count);
    });
  }

  reader(read: (offset: number, count: number) => Promise<ReadResult>): ReadAhead {
    const shape = shapeFor(OPEN_FILE_READ_AHEAD, this.maxRead);
    return new ReadAhead(read, shape.chunk, shape, (data) => replyBuffers.give(data));
  }

  async *stream(read: (offset: number, count: number) => Promise<ReadResult>, size: number): AsyncGenerator<Buffer, void, undefined> {
    const chunk = Math.min(STREAM_CHUNK, this.maxRead);
    yield* new ReadAhead(read, this.maxRead, { chunk, depth: STREAM_DEPTH, streak: 0, maxAgeMs: Infinity }).stream(0, size);
  }

  newLockOwner(): Buffer {
    return Buffer.from(`lock ${os.hostname()} ${process.pid} ${this.nextLockOwner++}`);
  }

  /**
   * The server forgot this client: every open and lock is gone. Locks are taken back (with the
   * opens they need) while the server's grace period allows reclaims; other opens are opened
   * again at their next use.
   */
  private async clientLost(): Promise<void> {
    log("%s: the server lost this client's state: %d open files, %d lock owners", describeNfsUrl(this.url), this.opens.size, this.lockHolders.size);
    for (const holder of this.lockHolders) await holder.reclaim();
  }

  /**
   * The server revoked some or all of this client's state (a lease that ran out while the client
   * id lived on, or an administrator): held locks may be gone, and are said lost; opens are
   * opened again at their next use.
   */
  private stateRevoked(flags: number): void {
    log('%s: the server revoked state (flags %s)', describeNfsUrl(this.url), flags.toString(16));
    for (const state of this.opens.values()) state.generation = -1;
    for (const holder of this.lockHolders) holder.revoked();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const closing = [...this.opens.values()].map((state) =>
      state.generation === this.session.generation ? this.sendClose(Buffer.from(state.key.split(':')[0]!, 'hex'), state.stateid) : undefined,
    );
    closing.push(...this.closing.values());
    this.opens.clear();
    await Promise.race([Promise.all(closing), new Promise((resolve) => setTimeout(resolve, CLOSE_TIMEOUT_MS).unref())]);
    await this.session.destroy();
    this.rpc.close();
  }
}

/**
 * `s` with seqid 0: whatever its current version is (RFC 8881 §8.2.2), so that another OPEN
 * of the file by the same owner, which moves the seqid on, does not fail reads in flight.
 */
export function current(s: Stateid): Stateid {
  return { seqid: 0, other: s.other };
}

/** Whether seqid `a` came before `b` (they wrap around). */
function seqidBefore(a: number, b: number): boolean {
  return a !== b && (b - a) >>> 0 < 0x80000000;
}

/** READ4resok: end of file, and the bytes (a view of the reply), never more than `count`. */
function readResult(r: XdrReader, count: number): ReadResult {
  const eof = r.bool();
  const data = r.opaque();
  if (data.length > count) throw new Nfs4Error(Nfs4Status.IO, Op.READ, `(server returned ${data.length} bytes, asked ${count})`);
  return { eof, data };
}

function isDotName(name: Buffer): boolean {
  return (name.length === 1 && name[0] === 0x2e) || (name.length === 2 && name[0] === 0x2e && name[1] === 0x2e);
}

/** An open file: READs under its open's stateid, read ahead when sequential. */
class Nfs4OpenFile implements NfsOpenFile {
  private readonly ahead: ReadAhead;
  private released = false;

  constructor(
    private readonly client: Nfs4Client,
    private readonly fh: Buffer,
    private readonly state: OpenState,
  ) {
    this.ahead = client.reader((at, count) => this.readAt(at, count));
  }

  private readAt(offset: number, count: number): Promise<ReadResult> {
    return this.client.withOpen(this.fh, this.state, (stateid) => this.client.read(this.fh, stateid, offset, count));
  }

  read(buf: Buffer, offset: number, length: number, position: number, knownEnd?: number): Promise<number> {
    return this.ahead.read(buf, offset, length, position, knownEnd);
  }

  readParts(length: number, position: number, knownEnd?: number): Promise<LentParts> {
    return this.ahead.readParts(length, position, knownEnd);
  }

  chunks(size: number): AsyncIterable<Buffer> {
    return this.client.stream((at, count) => this.readAt(at, count), size);
  }

  locks(path: string): LayerLocks {
    return new Nfs4FileLocks(this.client, this.fh, this.state, path);
  }

  /** The first `count` bytes, read with the OPEN: the first read is answered from them. */
  prime(count: number, first: ReadResult): void {
    this.ahead.prime(0, count, first);
  }

  forgetReadAhead(): void {
    this.ahead.forget();
  }

  async close(): Promise<void> {
    this.ahead.forget();
    if (this.released) return;
    this.released = true;
    this.client.release(this.fh, this.state);
  }
}

export type { OpenState };
