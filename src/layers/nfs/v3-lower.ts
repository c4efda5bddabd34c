// An NFSv3 client as a layer backend uses it: no OPEN (the handle is the file), locks through
// the server's lock manager (NLM), no extended attributes.
import { NfsClient } from './client';
import type { DirEntryPlus, NfsAttr, ReadResult } from './nfs3';
import { replyBuffers } from './reply-buffers';
import type { ReadAhead } from './read-ahead';
import type { NfsFound, NfsFsStat, NfsLowerClient, NfsOpenFile } from './lower-client';
import { NlmFileLocks } from '../nfs-locks';
import type { LayerLocks, LentParts } from '../types';

/** The kernel's first read of a file is 128 KiB at most. */
const FIRST_READ = 128 * 1024;

function giveBack(r: ReadResult | undefined): void {
  if (r !== undefined) replyBuffers.give(r.data);
}

class Nfs3OpenFile implements NfsOpenFile {
  private readonly ahead: ReadAhead;

  constructor(
    private readonly client: NfsClient,
    private readonly fh: Buffer,
  ) {
    this.ahead = client.reader(fh);
  }

  read(buf: Buffer, offset: number, length: number, position: number, knownEnd?: number): Promise<number> {
    return this.ahead.read(buf, offset, length, position, knownEnd);
  }

  readParts(length: number, position: number, knownEnd?: number): Promise<LentParts> {
    return this.ahead.readParts(length, position, knownEnd);
  }

  chunks(size: number): AsyncIterable<Buffer> {
    return this.client.readStream(this.fh, { size });
  }

  locks(path: string): LayerLocks {
    return new NlmFileLocks(this.client.nlm, this.fh, path);
  }

  /** The first `count` bytes, read beside the open's LOOKUP. */
  prime(count: number, first: Promise<ReadResult | undefined>): void {
    this.ahead.prime(0, count, first);
  }

  forgetReadAhead(): void {
    this.ahead.forget();
  }

  async close(): Promise<void> {
    this.ahead.forget();
  }
}

export class Nfs3Lower implements NfsLowerClient {
  readonly protocol = 'NFSv3';

  constructor(readonly client: NfsClient) {}

  get url() {
    return this.client.url;
  }

  get root(): Buffer {
    return this.client.root;
  }

  get inFlight(): number {
    return this.client.inFlight;
  }

  get preferredRead(): number {
    return this.client.info.rtpref;
  }

  getattr(fh: Buffer): Promise<NfsAttr> {
    return this.client.getattr(fh);
  }

  lookup(dirFh: Buffer, name: Buffer): Promise<NfsFound> {
    return this.client.lookup(dirFh, name);
  }

  readdirplus(dirFh: Buffer): Promise<DirEntryPlus[]> {
    return this.client.readdirplus(dirFh);
  }

  readlink(fh: Buffer): Promise<Buffer> {
    return this.client.readlink(fh);
  }

  /** Opening sends nothing: NFSv3 has no OPEN. */
  async open(fh: Buffer): Promise<NfsOpenFile> {
    return new Nfs3OpenFile(this.client, fh);
  }

  /**
   * One LOOKUP, and when reads are expected, beside it a READ of the first bytes of the object
   * expected: a file read after its open waits for one round trip, not two in a row.
   * Close-to-open holds: the bytes serve reads only when the LOOKUP finds that object at the name.
   */
  async openEntry(dirFh: Buffer, name: Buffer, expected: Buffer, readSoon: boolean): Promise<{ found: NfsFound; file: NfsOpenFile } | null> {
    const count = Math.min(FIRST_READ, this.client.info.rtmax);
    const { first, lookup } = this.client.together(() => ({
      first: readSoon ? this.client.read(expected, 0, count).catch((): undefined => undefined) : undefined,
      lookup: this.client.lookup(dirFh, name),
    }));
    let found: NfsFound;
    try {
      found = await lookup;
    } catch (err) {
      void first?.then(giveBack);
      throw err;
    }
    if (!found.fh.equals(expected)) {
      void first?.then(giveBack);
      return null;
    }
    const file = new Nfs3OpenFile(this.client, found.fh);
    if (first) file.prime(count, first);
    return { found, file };
  }

  async fsstat(): Promise<NfsFsStat> {
    const [s, conf] = await Promise.all([this.client.fsstat(), this.client.pathconf()]);
    return { ...s, nameMax: conf.nameMax };
  }

  async getxattr(_fh: Buffer, _name: string): Promise<Buffer | null> {
    return null;
  }

  async listxattr(_fh: Buffer): Promise<string[]> {
    return [];
  }

  sharedLocksNow(): string {
    return `the server's lock manager, NLM 4, ${this.client.nlm.monitoring}`;
  }

  close(): Promise<void> {
    return this.client.close();
  }
}
