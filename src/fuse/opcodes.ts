/**
 * What the session knows of each opcode, in one table (after go-fuse's opcode table): whether
 * the kernel expects a reply, who serves it (the session, or a handler method, or the handler
 * as a notice with no reply), and how a handler's result is encoded as the reply. Names are
 * the table's keys, the names of `Op`.
 */
import { Op } from './abi';
import type { FuseHandler, RequestControl } from './handler';
import {
  DirentList,
  DirentPlusList,
  LentBuffer,
  attrReply,
  bytesReply,
  copiedReply32,
  createReply,
  emptyReply,
  entryReply,
  ioctlReply,
  lockReply,
  openReply,
  readReply,
  statfsReply,
  statxReply,
  u32Reply,
  u64Reply,
  xattrReply,
  type Reply,
} from './replies';
import type { ReadRequest, Request } from './requests';

/** INIT and INTERRUPT: answered by the session from its own state. */
export interface SessionOpcode {
  readonly kind: 'session';
  readonly replies: boolean;
}

/** FORGET, BATCH_FORGET, NOTIFY_REPLY: passed on to the handler; the kernel waits for nothing. */
export interface NoticeOpcode<R extends Request> {
  readonly kind: 'notice';
  readonly replies: false;
  readonly notify: (fs: FuseHandler, req: R) => void;
}

/** Answered with what a handler method settles to. */
export interface HandlerOpcode<R extends Request> {
  readonly kind: 'handler';
  readonly replies: true;
  /** The FuseHandler method serving it; none for opcodes always refused. */
  readonly method?: keyof FuseHandler;
  /** Calls the method; undefined when the handler lacks it (ENOSYS). */
  readonly call: (fs: FuseHandler, req: R, ctl: RequestControl) => Promise<unknown> | undefined;
  /**
   * The reply for what `call` settled to. The session logs `logged` of the result first, so
   * that the log shows what a failed encoding got.
   */
  readonly encode: (unique: number, result: unknown, req: R) => Reply;
  readonly logged: (result: unknown) => unknown;
}

export type OpcodeEntry<R extends Request> = SessionOpcode | NoticeOpcode<R> | HandlerOpcode<R>;

export type OpName = keyof typeof Op;

/** The decoded request type of one opcode. */
type RequestFor<O extends Op> = Request extends infer R ? (R extends { op: infer Ops } ? (O extends Ops ? R : never) : never) : never;

type OpcodeTable = { readonly [N in OpName]: OpcodeEntry<RequestFor<(typeof Op)[N]>> };

/** The handler methods of the usual shape: (request, control) → Promise of a result. */
type PlainMethod = {
  [K in keyof FuseHandler]-?: NonNullable<FuseHandler[K]> extends (req: never, ctl: RequestControl) => Promise<unknown> ? K : never;
}[keyof FuseHandler];
type MethodOf<K extends PlainMethod> = NonNullable<FuseHandler[K]>;
type RequestOf<K extends PlainMethod> = Parameters<MethodOf<K>>[0];
type ResultOf<K extends PlainMethod> = Awaited<ReturnType<MethodOf<K>>>;

type Encoder<Out, R> = (unique: number, result: Out, req: R) => Reply;

/** Answered with what `call` settles to, encoded by `encode`; the log shows `logged` of it. */
function answered<R extends Request, Out>(
  method: keyof FuseHandler | undefined,
  call: (fs: FuseHandler, req: R, ctl: RequestControl) => Promise<Out> | undefined,
  encode: Encoder<Out, R>,
  logged: (result: Out) => unknown = (result) => result,
): HandlerOpcode<R> {
  // The session hands `encode` and `logged` only what `call` settled to.
  return { kind: 'handler', replies: true, method, call, encode: encode as Encoder<unknown, R>, logged: logged as (result: unknown) => unknown };
}

/** The common case: the handler method `method`, its result encoded by `encode`. */
function handled<K extends PlainMethod>(method: K, encode: Encoder<ResultOf<K>, RequestOf<K>>): HandlerOpcode<RequestOf<K>> {
  return answered(method, (fs, req, ctl) => callMethod(fs, method, req, ctl), encode);
}

function callMethod<K extends PlainMethod>(fs: FuseHandler, method: K, req: RequestOf<K>, ctl: RequestControl): Promise<ResultOf<K>> | undefined {
  // TypeScript cannot narrow FuseHandler[K] to a callable for a generic K.
  const fn = fs[method] as ((req: RequestOf<K>, ctl: RequestControl) => Promise<ResultOf<K>>) | undefined;
  return fn?.call(fs, req, ctl);
}

/** Like `handled`, but a handler without the method succeeds: nothing to release is no error. */
function handledOrOk<K extends PlainMethod>(method: K, encode: Encoder<ResultOf<K>, RequestOf<K>>): HandlerOpcode<RequestOf<K>> {
  const entry = handled(method, encode);
  return {
    ...entry,
    call: (fs, req, ctl) => entry.call(fs, req, ctl) ?? Promise.resolve(),
    encode: (unique, result, req) => (result === undefined ? emptyReply(unique) : entry.encode(unique, result, req)),
  };
}

interface Listings {
  readdir: DirentList;
  readdirplus: DirentPlusList;
}

/** READDIR/READDIRPLUS: the handler fills a list sized to the request; the list is the reply. */
function listing<M extends keyof Listings>(method: M, List: new (size: number) => Listings[M]): HandlerOpcode<ReadRequest> {
  return answered(
    method,
    (fs, req, ctl) => {
      // As in callMethod: FuseHandler[M] is not callable to TypeScript for a generic M.
      const fill = fs[method] as ((req: ReadRequest, ctl: RequestControl, out: Listings[M]) => Promise<void>) | undefined;
      if (!fill) return undefined;
      const out = new List(req.size);
      return fill.call(fs, req, ctl, out).then(() => out.bytes);
    },
    bytesReply,
  );
}

/** DAX mappings exist only for virtio-fs: always ENOSYS. */
const refused: HandlerOpcode<Request> = {
  kind: 'handler',
  replies: true,
  call: () => undefined,
  encode: (unique) => emptyReply(unique),
  logged: (result) => result,
};

const bySession = (replies: boolean): SessionOpcode => ({ kind: 'session', replies });

export const OPCODES: OpcodeTable = {
  INIT: bySession(true),
  // Answered only to ask the kernel to send it again (EAGAIN); never otherwise.
  INTERRUPT: bySession(false),
  FORGET: { kind: 'notice', replies: false, notify: (fs, req) => fs.forget?.(req.nodeid, req.nlookup) },
  BATCH_FORGET: {
    kind: 'notice',
    replies: false,
    notify: (fs, req) => {
      if (fs.forget) for (const f of req.forgets) fs.forget(f.nodeid, f.nlookup);
    },
  },
  NOTIFY_REPLY: { kind: 'notice', replies: false, notify: (fs, req) => fs.notifyReply?.(req) },

  LOOKUP: handled('lookup', entryReply),
  GETATTR: handled('getattr', attrReply),
  SETATTR: handled('setattr', attrReply),
  READLINK: handled('readlink', bytesReply),
  SYMLINK: handled('symlink', entryReply),
  MKNOD: handled('mknod', entryReply),
  MKDIR: handled('mkdir', entryReply),
  LINK: handled('link', entryReply),
  UNLINK: handled('unlink', emptyReply),
  RMDIR: handled('rmdir', emptyReply),
  RENAME: handled('rename', emptyReply),
  RENAME2: handled('rename', emptyReply),
  OPEN: handled('open', openReply),
  OPENDIR: handled('opendir', openReply),
  READ: answered(
    'read',
    (fs, req, ctl) => fs.read?.(req, ctl),
    (unique, data, req) => readReply(unique, data, req.size),
    (data) => (data instanceof LentBuffer ? data.data : data),
  ),
  WRITE: handled('write', u32Reply),
  STATFS: handled('statfs', statfsReply),
  RELEASE: handledOrOk('release', emptyReply),
  RELEASEDIR: handledOrOk('releasedir', emptyReply),
  FSYNC: handled('fsync', emptyReply),
  FSYNCDIR: handled('fsyncdir', emptyReply),
  FLUSH: handled('flush', emptyReply),
  SETXATTR: handled('setxattr', emptyReply),
  GETXATTR: handled('getxattr', (unique, value, req) => xattrReply(unique, value, req.size)),
  LISTXATTR: handled('listxattr', (unique, value, req) => xattrReply(unique, value, req.size)),
  REMOVEXATTR: handled('removexattr', emptyReply),
  READDIR: listing('readdir', DirentList),
  READDIRPLUS: listing('readdirplus', DirentPlusList),
  GETLK: handled('getlk', lockReply),
  SETLK: handled('setlk', emptyReply),
  SETLKW: handled('setlk', emptyReply),
  ACCESS: handled('access', emptyReply),
  CREATE: handled('create', createReply),
  TMPFILE: handled('tmpfile', createReply),
  BMAP: handled('bmap', u64Reply),
  IOCTL: handled('ioctl', ioctlReply),
  POLL: handled('poll', u32Reply),
  FALLOCATE: handled('fallocate', emptyReply),
  LSEEK: handled('lseek', u64Reply),
  COPY_FILE_RANGE: handled('copyFileRange', copiedReply32),
  COPY_FILE_RANGE_64: handled('copyFileRange', u64Reply),
  SYNCFS: handled('syncfs', emptyReply),
  STATX: handled('statx', statxReply),
  DESTROY: answered(
    'destroy',
    (fs) => {
      fs.destroy?.();
      return Promise.resolve();
    },
    emptyReply,
  ),
  SETUPMAPPING: refused,
  REMOVEMAPPING: refused,
};

/** The table's entry for a decoded request. */
export function opcodeEntry<R extends Request>(req: R): OpcodeEntry<R> {
  // The table's type pairs each opcode with its request type; indexing by a runtime op loses that.
  return OPCODES[Op[req.op] as OpName] as OpcodeEntry<R>;
}

/** Opcodes the kernel expects no reply to: a malformed one is dropped, not answered. */
export const NO_REPLY: ReadonlySet<number> = new Set((Object.keys(OPCODES) as OpName[]).filter((name) => !OPCODES[name].replies).map((name) => Op[name]));
