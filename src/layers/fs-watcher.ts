/**
 * Changes to local filesystems, pushed by the kernel: one fanotify group per process, a
 * filesystem mark on each filesystem a watched layer lives on, events reported by file handle
 * and name (FAN_REPORT_DFID_NAME | FAN_REPORT_FID). Each event becomes a LayerChange naming
 * objects by the identity the layers give them (dev, ino, birth time), so the overlay can find
 * the nodes a change touches without any path.
 *
 * Handles are turned into identities with open_by_handle_at (O_PATH, relative to a layer root
 * on that filesystem) and statx; nothing is read or followed through them. A handle names one
 * object forever (it carries the inode generation), so its identity is remembered.
 */
import createDebug from 'debug';
import * as fs from 'fs';
import { constants } from 'os';
import { C, native, STATX_FIELDS, type DevReader } from '../native';
import { attrFromArray } from './fd-io';
import type { LayerChange } from './types';

const log = createDebug('ovshift:watch');

const MASK = C.FAN_CREATE! | C.FAN_DELETE! | C.FAN_MOVED_FROM! | C.FAN_MOVED_TO! | C.FAN_ATTRIB! | C.FAN_MODIFY! | C.FAN_ONDIR!;
const ENTRY_EVENTS = C.FAN_CREATE! | C.FAN_DELETE! | C.FAN_MOVED_FROM! | C.FAN_MOVED_TO!;
const READ_BYTES = 256 * 1024;
const MAX_BATCH = 16;
/** Handles whose identity is remembered; a change storm over more objects costs a few syscalls each. */
const IDENTITIES_KEPT = 8192;
const METADATA_BYTES = 24;

export type ChangeSink = (changes: LayerChange[]) => void;

export interface FilesystemWatch {
  /** Stops the sink hearing of this filesystem (through this subscription). */
  close(): void;
}

interface Subscription {
  /** A descriptor (not O_PATH: open_by_handle_at refuses those) of the layer root's directory. */
  dirFd: number;
  sink: ChangeSink;
}

interface WatchedFs {
  subscriptions: Subscription[];
}

/** An object as an event names it: its filesystem, and its handle there. */
interface Fid {
  /** The filesystem id's 8 bytes, as a latin1 string (see WatchedFs keys). */
  fsid: string;
  type: number;
  handle: Buffer;
  /** fsid, type and handle together, as a latin1 string: the object, for remembering its identity. */
  key: string;
}

interface FanEvent {
  mask: number;
  dir?: Fid;
  name?: string;
  object?: Fid;
}

/** Splits what one read() of the group returned into events. */
export function parseEvents(buf: Buffer): FanEvent[] {
  const events: FanEvent[] = [];
  for (let off = 0; off + METADATA_BYTES <= buf.length;) {
    const len = buf.readUInt32LE(off);
    const metadataLen = buf.readUInt16LE(off + 6);
    if (len < METADATA_BYTES || off + len > buf.length) break;
    // Event bits live in the low 32 bits of the 64-bit mask.
    const event: FanEvent = { mask: buf.readUInt32LE(off + 8) };
    for (let r = off + metadataLen; r + 4 <= off + len;) {
      const type = buf[r]!;
      const recordLen = buf.readUInt16LE(r + 2);
      if (recordLen < 4 || r + recordLen > off + len) break;
      if (type === C.FAN_EVENT_INFO_TYPE_FID || type === C.FAN_EVENT_INFO_TYPE_DFID || type === C.FAN_EVENT_INFO_TYPE_DFID_NAME) {
        const handleBytes = buf.readUInt32LE(r + 12);
        const fid: Fid = {
          fsid: buf.toString('latin1', r + 4, r + 12),
          type: buf.readInt32LE(r + 16),
          handle: buf.subarray(r + 20, r + 20 + handleBytes),
          key: buf.toString('latin1', r + 4, r + 20 + handleBytes),
        };
        if (type === C.FAN_EVENT_INFO_TYPE_FID) event.object = fid;
        else event.dir = fid;
        if (type === C.FAN_EVENT_INFO_TYPE_DFID_NAME) {
          const start = r + 20 + handleBytes;
          const end = buf.indexOf(0, start);
          event.name = buf.toString('latin1', start, end < 0 || end > r + recordLen ? r + recordLen : end);
        }
      }
      r += recordLen;
    }
    events.push(event);
    off += len;
  }
  return events;
}

/** The process's fanotify group, made at the first subscription and closed after the last. */
class FilesystemWatcher {
  private group = -1;
  private reader?: DevReader;
  private readonly watched = new Map<string, WatchedFs>();
  private readonly identities = new Map<string, string>();
  private readonly statBuf = new Float64Array(STATX_FIELDS);

  /** Watches the filesystem `rootFd` is on for `sink`; or why it cannot be watched. */
  subscribe(rootFd: number, sink: ChangeSink): FilesystemWatch | string {
    const fsid = native.fsidSync(rootFd);
    if (typeof fsid === 'number') return `fstatfs: errno ${-fsid}`;
    if (fsid.every((b) => b === 0)) return 'the filesystem has no id to report changes by';
    const key = fsid.toString('latin1');
    const reason = this.start();
    if (reason) return reason;
    let watched = this.watched.get(key);
    if (!watched) {
      const res = native.fanotifyMarkSync(this.group, C.FAN_MARK_ADD! | C.FAN_MARK_FILESYSTEM!, MASK, rootFd, '.');
      if (res < 0) {
        this.stopIfIdle();
        return `fanotify_mark: ${describeMarkError(-res)}`;
      }
      watched = { subscriptions: [] };
      this.watched.set(key, watched);
      log('watching filesystem %s', fsid.toString('hex'));
    }
    const dirFd = native.openatSync(rootFd, '.', C.O_RDONLY! | C.O_DIRECTORY! | C.O_CLOEXEC!, 0);
    if (dirFd < 0) {
      if (watched.subscriptions.length === 0) this.unmark(key, rootFd);
      return `open: errno ${-dirFd}`;
    }
    const sub: Subscription = { dirFd, sink };
    watched.subscriptions.push(sub);
    return { close: () => this.unsubscribe(key, sub) };
  }

  private start(): string | undefined {
    if (this.group >= 0) return undefined;
    const fd = native.fanotifyInitSync(
      C.FAN_CLASS_NOTIF! | C.FAN_CLOEXEC! | C.FAN_NONBLOCK! | C.FAN_REPORT_DFID_NAME! | C.FAN_REPORT_FID!,
      C.O_RDONLY! | C.O_CLOEXEC!,
    );
    if (fd < 0) return `fanotify_init: ${describeInitError(-fd)}`;
    this.group = fd;
    this.reader = native.devReader(fd, READ_BYTES, MAX_BATCH, (reads, errno) => {
      if (reads === null) {
        log('reading events failed: errno %d; everything is invalidated, nothing is watched any more', errno);
        this.lostAll();
        return;
      }
      for (const buf of reads) this.dispatch(parseEvents(buf));
    });
    return undefined;
  }

  private unsubscribe(key: string, sub: Subscription): void {
    const watched = this.watched.get(key);
    if (!watched) return;
    const i = watched.subscriptions.indexOf(sub);
    if (i < 0) return;
    watched.subscriptions.splice(i, 1);
    if (watched.subscriptions.length === 0) this.unmark(key, sub.dirFd);
    fs.closeSync(sub.dirFd);
  }

  private unmark(key: string, fdOnFs: number): void {
    native.fanotifyMarkSync(this.group, C.FAN_MARK_REMOVE! | C.FAN_MARK_FILESYSTEM!, MASK, fdOnFs, '.');
    this.watched.delete(key);
    log('no longer watching filesystem %s', Buffer.from(key, 'latin1').toString('hex'));
    this.stopIfIdle();
  }

  private stopIfIdle(): void {
    if (this.watched.size > 0 || this.group < 0) return;
    this.reader?.stop();
    this.reader = undefined;
    fs.closeSync(this.group);
    this.group = -1;
    this.identities.clear();
  }

  private dispatch(events: FanEvent[]): void {
    const batches = new Map<ChangeSink, LayerChange[]>();
    const add = (watched: WatchedFs, change: LayerChange): void => {
      for (const { sink } of watched.subscriptions) {
        let batch = batches.get(sink);
        if (!batch) batches.set(sink, (batch = []));
        // Layers of one mount on one filesystem share a sink: each change once.
        if (batch[batch.length - 1] !== change) batch.push(change);
      }
    };
    for (const event of events) {
      if (event.mask & C.FAN_Q_OVERFLOW!) {
        log('event queue overflowed: changes were lost');
        for (const watched of this.watched.values()) add(watched, { kind: 'lost' });
        continue;
      }
      const fsid = (event.dir ?? event.object)?.fsid;
      const watched = fsid === undefined ? undefined : this.watched.get(fsid);
      if (!watched) continue;
      const change = this.change(watched, event);
      if (change) add(watched, change);
    }
    for (const [sink, changes] of batches) sink(changes);
  }

  private change(watched: WatchedFs, event: FanEvent): LayerChange | undefined {
    if (event.mask & ENTRY_EVENTS) {
      const dir = event.dir && this.identity(watched, event.dir);
      return dir !== undefined && event.name !== undefined ? { kind: 'entry', dir, name: event.name } : undefined;
    }
    // A directory's own event names it as its directory with the name "." (and no object).
    const object = event.object ?? (event.name === '.' ? event.dir : undefined);
    // Gone already: the entry event of its removal follows.
    const identity = object && this.identity(watched, object);
    return identity === undefined ? undefined : { kind: 'object', identity, meta: (event.mask & C.FAN_ATTRIB!) !== 0 };
  }

  /** The identity of the object a handle names, or undefined when it is gone. */
  private identity(watched: WatchedFs, fid: Fid): string | undefined {
    const key = fid.key;
    const known = this.identities.get(key);
    if (known !== undefined) return known;
    const fd = native.openByHandleAtSync(watched.subscriptions[0]!.dirFd, fid.type, fid.handle, C.O_PATH! | C.O_CLOEXEC!);
    if (fd < 0) return undefined;
    const res = native.fstatxSync(fd, this.statBuf);
    fs.closeSync(fd);
    if (res < 0) return undefined;
    const identity = attrFromArray(this.statBuf).identity;
    if (this.identities.size >= IDENTITIES_KEPT) this.identities.delete(this.identities.keys().next().value!);
    this.identities.set(key, identity);
    return identity;
  }

  /** The group failed: every sink is told everything may have changed, then nothing is watched. */
  private lostAll(): void {
    const sinks = new Set<ChangeSink>();
    for (const watched of this.watched.values()) {
      for (const s of watched.subscriptions) {
        sinks.add(s.sink);
        fs.closeSync(s.dirFd);
      }
    }
    this.watched.clear();
    this.reader = undefined;
    fs.closeSync(this.group);
    this.group = -1;
    for (const sink of sinks) sink([{ kind: 'lost' }, { kind: 'unwatched' }]);
  }
}

const E = constants.errno;

function describeInitError(errno: number): string {
  if (errno === E.EPERM) return 'not permitted (needs CAP_SYS_ADMIN)';
  if (errno === E.EMFILE) return 'too many fanotify groups (fs.fanotify.max_user_groups)';
  if (errno === E.ENOSYS || errno === E.EINVAL) return 'not supported by this kernel';
  return `errno ${errno}`;
}

function describeMarkError(errno: number): string {
  if (errno === E.EPERM) return 'not permitted (filesystem marks need CAP_SYS_ADMIN)';
  if (errno === E.EXDEV) return 'the filesystem does not report changes by a unique id';
  if (errno === E.EOPNOTSUPP || errno === E.ENODEV) return 'the filesystem cannot report changes by file handle';
  if (errno === E.ENOSPC) return 'too many fanotify marks (fs.fanotify.max_user_marks)';
  return `errno ${errno}`;
}

export const filesystemWatcher = new FilesystemWatcher();
