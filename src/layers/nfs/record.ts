// ONC RPC record marking over a byte stream (RFC 5531 §11): each fragment is preceded by a
// 4-byte header whose top bit marks the record's last fragment and whose low 31 bits give
// the fragment's length.

const LAST_FRAGMENT = 0x80000000;
const MAX_FRAGMENT_LENGTH = 0x7fffffff;

export class RecordError extends Error {
  readonly code = 'EBADMSG';
  constructor(message: string) {
    super(message);
    this.name = 'RecordError';
  }
}

/** Frames one record, split into fragments of at most `maxFragment` bytes. */
export function encodeRecord(payload: Buffer, maxFragment = MAX_FRAGMENT_LENGTH): Buffer {
  if (maxFragment < 1 || maxFragment > MAX_FRAGMENT_LENGTH) {
    throw new RangeError(`fragment size must be 1..${MAX_FRAGMENT_LENGTH}, got ${maxFragment}`);
  }
  const fragments = Math.max(1, Math.ceil(payload.length / maxFragment));
  const out = Buffer.allocUnsafe(payload.length + 4 * fragments);
  let src = 0;
  let dst = 0;
  for (let i = 0; i < fragments; i++) {
    const length = Math.min(maxFragment, payload.length - src);
    const last = i === fragments - 1;
    out.writeUInt32BE((last ? LAST_FRAGMENT : 0) + length, dst);
    payload.copy(out, dst + 4, src, src + length);
    src += length;
    dst += 4 + length;
  }
  return out;
}

/**
 * Reassembles records from stream chunks. Every byte is copied once, straight into the buffer
 * of its fragment, so the chunks may be transient (e.g. one read buffer reused for every read);
 * the bytes of a large fragment can even be read into its buffer directly (`directTarget`).
 */
export class RecordDecoder {
  private readonly header = Buffer.alloc(4);
  private headerFilled = 0;
  private fragment: Buffer | undefined;
  private fragmentFilled = 0;
  private lastFragment = false;
  private fragments: Buffer[] = [];
  private recordLength = 0;

  constructor(
    private readonly maxRecordLength: number,
    /** Where each fragment's bytes go: a fresh buffer unless the caller keeps some for reuse. */
    private readonly allocate: (length: number) => Buffer = Buffer.allocUnsafe,
  ) {}

  /** Feeds stream bytes; returns the records completed by them, in order. Throws RecordError on a bad stream. */
  push(chunk: Buffer): Buffer[] {
    const records: Buffer[] = [];
    let pos = 0;
    for (;;) {
      if (this.fragment === undefined) {
        const n = Math.min(4 - this.headerFilled, chunk.length - pos);
        chunk.copy(this.header, this.headerFilled, pos, pos + n);
        this.headerFilled += n;
        pos += n;
        if (this.headerFilled < 4) break;
        this.headerFilled = 0;
        const word = this.header.readUInt32BE(0);
        const length = word & MAX_FRAGMENT_LENGTH;
        this.lastFragment = (word & LAST_FRAGMENT) !== 0;
        if (this.recordLength + length > this.maxRecordLength) {
          throw new RecordError(`record of more than ${this.maxRecordLength} bytes (fragment of ${length} after ${this.recordLength})`);
        }
        this.fragment = this.allocate(length);
        this.fragmentFilled = 0;
      }
      const n = Math.min(this.fragment.length - this.fragmentFilled, chunk.length - pos);
      chunk.copy(this.fragment, this.fragmentFilled, pos, pos + n);
      this.fragmentFilled += n;
      pos += n;
      if (!this.completeFragment(records)) break;
      if (pos === chunk.length) break;
    }
    return records;
  }

  /**
   * The unfilled part of the fragment being received, if at least `minimum` bytes, so the
   * socket can read straight into it; report what was read there with `filledDirectly`.
   */
  directTarget(minimum: number): Buffer | undefined {
    if (this.fragment === undefined || this.fragment.length - this.fragmentFilled < minimum) return undefined;
    return this.fragment.subarray(this.fragmentFilled);
  }

  /** Accounts for `bytes` read into the buffer `directTarget` returned; returns the records completed. */
  filledDirectly(bytes: number): Buffer[] {
    this.fragmentFilled += bytes;
    const records: Buffer[] = [];
    this.completeFragment(records);
    return records;
  }

  /** If the current fragment is full, files it (and its record, if last); false if it still needs bytes. */
  private completeFragment(records: Buffer[]): boolean {
    if (this.fragment === undefined || this.fragmentFilled < this.fragment.length) return false;
    this.fragments.push(this.fragment);
    this.recordLength += this.fragment.length;
    this.fragment = undefined;
    if (this.lastFragment) {
      records.push(this.fragments.length === 1 ? this.fragments[0] : Buffer.concat(this.fragments, this.recordLength));
      this.fragments = [];
      this.recordLength = 0;
    }
    return true;
  }
}
