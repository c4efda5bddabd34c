/**
 * The inode-based, asynchronous interface a filesystem implements. Each method receives the
 * decoded request and a RequestControl, and settles its Promise whenever it likes, in any
 * order; a Promise that never settles leaves that one request unanswered without holding up
 * any other. Rejections become errno replies (see errors.ts). A missing method answers ENOSYS.
 */
import type { InitFlagName } from './abi';
import type { AttrOut, CreateOut, DirentList, DirentPlusList, EntryOut, IoctlOut, LentBuffer, LockOut, OpenOut, StatfsOut, StatxOut } from './replies';
import type {
  AccessRequest,
  BmapRequest,
  CopyFileRangeRequest,
  CreateRequest,
  FallocateRequest,
  FlushRequest,
  FsyncRequest,
  GetattrRequest,
  GetxattrRequest,
  IoctlRequest,
  LinkRequest,
  ListxattrRequest,
  LockRequest,
  LookupRequest,
  LseekRequest,
  MkdirRequest,
  MknodRequest,
  NotifyReplyRequest,
  OpenRequest,
  PollRequest,
  ReadRequest,
  ReadlinkRequest,
  ReleaseRequest,
  RemovexattrRequest,
  RenameRequest,
  RmdirRequest,
  SetattrRequest,
  SetxattrRequest,
  StatfsRequest,
  StatxRequest,
  SymlinkRequest,
  SyncfsRequest,
  UnlinkRequest,
  WriteRequest,
} from './requests';

export interface RequestControl {
  /** True once the kernel sent FUSE_INTERRUPT for this request. */
  readonly interrupted: boolean;
  /** Runs `cb` when the kernel interrupts this request (at once if it already has). */
  onInterrupt(cb: () => void): void;
  /**
   * Interrupted, and its caller is dying or gone (src/fuse/caller.ts): for work whose EINTR
   * a caller that handles a signal must never see (a listing), but that a killed one must
   * not wait for.
   */
  readonly abandoned: { readonly interrupted: boolean; onInterrupt(cb: () => void): void };
}

/** FUSE passthrough: files the kernel reads and writes itself, registered by descriptor. */
export interface BackingFiles {
  /** Registers a descriptor; returns the backing id for an open reply, or -errno. */
  open(fd: number): number;
  /** Drops a registration (open files keep theirs); returns 0 or -errno. */
  close(id: number): number;
}

/** What INIT settled on, handed to `init` once the reply is on its way. */
export interface ConnectionInfo {
  major: number;
  minor: number;
  /** Flags the kernel offered. */
  offered: bigint;
  /** Flags in force: offered and wanted. */
  flags: bigint;
  maxWrite: number;
  maxReadahead: number;
  maxPages: number;
  /** Present when passthrough was agreed (the handler asked for PASSTHROUGH). */
  backing?: BackingFiles;
}

type Op<Req, Out> = (req: Req, ctl: RequestControl) => Promise<Out>;

export interface FuseHandler {
  /**
   * INIT flags this filesystem wants when the kernel offers them (beyond the session's own);
   * read after `prepare`.
   */
  readonly wantFlags?: readonly InitFlagName[];
  /** Called when the kernel's INIT arrives, before the flags are chosen. */
  prepare?(kernelMinor: number): void;
  init?(info: ConnectionInfo): void;
  destroy?(): void;

  lookup?: Op<LookupRequest, EntryOut>;
  /** FORGET and each item of BATCH_FORGET; no reply exists. */
  forget?(nodeid: number, nlookup: number): void;
  getattr?: Op<GetattrRequest, AttrOut>;
  setattr?: Op<SetattrRequest, AttrOut>;
  readlink?: Op<ReadlinkRequest, Buffer>;
  symlink?: Op<SymlinkRequest, EntryOut>;
  mknod?: Op<MknodRequest, EntryOut>;
  mkdir?: Op<MkdirRequest, EntryOut>;
  unlink?: Op<UnlinkRequest, void>;
  rmdir?: Op<RmdirRequest, void>;
  /** RENAME and RENAME2 (flags 0 for the former). */
  rename?: Op<RenameRequest, void>;
  link?: Op<LinkRequest, EntryOut>;
  open?: Op<OpenRequest, OpenOut>;
  /** The data read; shorter than asked means end of file. */
  read?: Op<ReadRequest, Buffer | Buffer[] | LentBuffer>;
  /** Bytes written. */
  write?: Op<WriteRequest, number>;
  statfs?: Op<StatfsRequest, StatfsOut>;
  release?: Op<ReleaseRequest, void>;
  fsync?: Op<FsyncRequest, void>;
  setxattr?: Op<SetxattrRequest, void>;
  /** The whole value; the session answers size probes and ERANGE from it. */
  getxattr?: Op<GetxattrRequest, Buffer>;
  /** The whole NUL-separated name list; sized like getxattr. */
  listxattr?: Op<ListxattrRequest, Buffer>;
  removexattr?: Op<RemovexattrRequest, void>;
  flush?: Op<FlushRequest, void>;
  opendir?: Op<OpenRequest, OpenOut>;
  /** Adds entries until `out.add` refuses one. */
  readdir?: (req: ReadRequest, ctl: RequestControl, out: DirentList) => Promise<void>;
  readdirplus?: (req: ReadRequest, ctl: RequestControl, out: DirentPlusList) => Promise<void>;
  releasedir?: Op<ReleaseRequest, void>;
  fsyncdir?: Op<FsyncRequest, void>;
  getlk?: Op<LockRequest, LockOut>;
  /** SETLK and SETLKW: a SETLKW may stay pending as long as the lock is held elsewhere. */
  setlk?: Op<LockRequest, void>;
  access?: Op<AccessRequest, void>;
  create?: Op<CreateRequest, CreateOut>;
  tmpfile?: Op<CreateRequest, CreateOut>;
  bmap?: Op<BmapRequest, bigint>;
  ioctl?: Op<IoctlRequest, IoctlOut>;
  /** Ready events. */
  poll?: Op<PollRequest, number>;
  fallocate?: Op<FallocateRequest, void>;
  lseek?: Op<LseekRequest, bigint>;
  /** Bytes copied. */
  copyFileRange?: Op<CopyFileRangeRequest, bigint>;
  syncfs?: Op<SyncfsRequest, void>;
  statx?: Op<StatxRequest, StatxOut>;
  /** Data the kernel sent back for a notifyRetrieve; no reply exists. */
  notifyReply?(req: NotifyReplyRequest): void;
}
