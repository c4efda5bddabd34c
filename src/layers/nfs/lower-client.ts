// What a layer backend needs of an NFS client, whichever protocol version it speaks.
import type { DirEntryPlus, NfsAttr } from './nfs3';
import type { NfsUrl } from './url';
import type { LayerLocks, LentParts } from '../types';

/** Entries of one directory at most: a server that never says "end" does not fill the memory. */
export const MAX_LISTED = 4_000_000;

/** An object a LOOKUP found: its handle, and its attributes when the server sent them. */
export interface NfsFound {
  fh: Buffer;
  attr?: NfsAttr;
}

export interface NfsFsStat {
  totalBytes: bigint;
  freeBytes: bigint;
  availBytes: bigint;
  totalFiles: bigint;
  availFiles: bigint;
  nameMax: number;
}

/** A file opened for reading (NFSv4: an OPEN held until close). */
export interface NfsOpenFile {
  /** `knownEnd`: the size the reader knows the file by (see LayerFile.read). */
  read(buf: Buffer, offset: number, length: number, position: number, knownEnd?: number): Promise<number>;
  readParts(length: number, position: number, knownEnd?: number): Promise<LentParts>;
  /** The whole file's bytes in order, several READs in flight (copy-up). */
  chunks(size: number): AsyncIterable<Buffer>;
  /** Locks on the server, for the file as opened at `path`. */
  locks(path: string): LayerLocks;
  forgetReadAhead(): void;
  close(): Promise<void>;
}

export interface NfsLowerClient {
  readonly url: NfsUrl;
  /** Handle of the directory the URL names. */
  readonly root: Buffer;
  /** The server's preferred READ size. */
  readonly preferredRead: number;
  /** "NFSv3", "NFSv4.1", …: for messages and status. */
  readonly protocol: string;
  /** RPC calls sent and not yet answered. */
  readonly inFlight: number;
  getattr(fh: Buffer): Promise<NfsAttr>;
  lookup(dirFh: Buffer, name: Buffer): Promise<NfsFound>;
  /** Every entry but "." and "..", with attributes and handles where the server gives them. */
  readdirplus(dirFh: Buffer): Promise<DirEntryPlus[]>;
  readlink(fh: Buffer): Promise<Buffer>;
  open(fh: Buffer): Promise<NfsOpenFile>;
  /**
   * Looks `name` up in the directory and opens what it leads to now, if that is the object
   * `expected` names (null otherwise, with nothing left open): NFSv4 in one COMPOUND.
   * `readSoon`: also read the file's first bytes meanwhile, for the reads expected soon.
   */
  openEntry(dirFh: Buffer, name: Buffer, expected: Buffer, readSoon: boolean): Promise<{ found: NfsFound; file: NfsOpenFile } | null>;
  fsstat(): Promise<NfsFsStat>;
  /** Extended attributes the server shows through the protocol (NFSv4: the ACL), null when none. */
  getxattr(fh: Buffer, name: string): Promise<Buffer | null>;
  listxattr(fh: Buffer): Promise<string[]>;
  /** Where locks taken through this client are kept, for `ovshift ctl status`. */
  sharedLocksNow(): string;
  close(): Promise<void>;
}
