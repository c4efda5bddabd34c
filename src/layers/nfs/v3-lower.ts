// An NFSv3 client as a layer backend uses it: no OPEN (the handle is the file), locks through
// the server's lock manager (NLM), no extended attributes.
import { NfsClient } from './client';
import type { DirEntryPlus, NfsAttr } from './nfs3';
import type { ReadAhead } from './read-ahead';
import type { NfsFound, NfsFsStat, NfsLowerClient, NfsOpenFile } from './lower-client';
import { NlmFileLocks } from '../nfs-locks';
import type { LayerLocks, LentParts } from '../types';

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

  /** One LOOKUP; opening sends nothing. */
  async openEntry(dirFh: Buffer, name: Buffer, expected: Buffer): Promise<{ found: NfsFound; file: NfsOpenFile } | null> {
    const found = await this.client.lookup(dirFh, name);
    if (!found.fh.equals(expected)) return null;
    return { found, file: new Nfs3OpenFile(this.client, found.fh) };
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
