// XDR (RFC 4506): big-endian, every item padded to a multiple of 4 bytes.

export class XdrError extends Error {
  readonly code = 'EBADMSG';
  constructor(message: string) {
    super(`XDR: ${message}`);
    this.name = 'XdrError';
  }
}

const UINT32_MAX = 0xffffffff;
const UINT64_MAX = (1n << 64n) - 1n;
const INT64_MIN = -(1n << 63n);
const INT64_MAX = (1n << 63n) - 1n;

function padding(length: number): number {
  return (4 - (length & 3)) & 3;
}

export class XdrWriter {
  private buf: Buffer;
  private length = 0;

  constructor(initialSize = 256) {
    this.buf = Buffer.allocUnsafe(initialSize);
  }

  /** Grows the buffer if needed; callers must read `this.buf` only after calling this. */
  private reserve(bytes: number): number {
    const at = this.length;
    const needed = at + bytes;
    if (needed > this.buf.length) {
      const grown = Buffer.allocUnsafe(Math.max(needed, this.buf.length * 2));
      this.buf.copy(grown, 0, 0, at);
      this.buf = grown;
    }
    this.length = needed;
    return at;
  }

  uint32(value: number): this {
    if (!Number.isInteger(value) || value < 0 || value > UINT32_MAX) {
      throw new XdrError(`uint32 out of range: ${value}`);
    }
    const at = this.reserve(4);
    this.buf.writeUInt32BE(value, at);
    return this;
  }

  int32(value: number): this {
    if (!Number.isInteger(value) || value < -0x80000000 || value > 0x7fffffff) {
      throw new XdrError(`int32 out of range: ${value}`);
    }
    const at = this.reserve(4);
    this.buf.writeInt32BE(value, at);
    return this;
  }

  uint64(value: bigint): this {
    if (value < 0n || value > UINT64_MAX) throw new XdrError(`uint64 out of range: ${value}`);
    const at = this.reserve(8);
    this.buf.writeBigUInt64BE(value, at);
    return this;
  }

  int64(value: bigint): this {
    if (value < INT64_MIN || value > INT64_MAX) throw new XdrError(`int64 out of range: ${value}`);
    const at = this.reserve(8);
    this.buf.writeBigInt64BE(value, at);
    return this;
  }

  bool(value: boolean): this {
    return this.uint32(value ? 1 : 0);
  }

  /** Fixed-length opaque: the length is implied by the protocol, so only the bytes and padding go out. */
  opaqueFixed(data: Buffer, length: number): this {
    if (data.length !== length) {
      throw new XdrError(`fixed opaque needs ${length} bytes, got ${data.length}`);
    }
    const at = this.reserve(length + padding(length));
    data.copy(this.buf, at);
    this.buf.fill(0, at + length, this.length);
    return this;
  }

  opaque(data: Buffer, maxLength = UINT32_MAX): this {
    if (data.length > maxLength) {
      throw new XdrError(`opaque of ${data.length} bytes exceeds its limit of ${maxLength}`);
    }
    this.uint32(data.length);
    return this.opaqueFixed(data, data.length);
  }

  /** XDR strings are byte strings; a JS string is sent as UTF-8. */
  string(value: string | Buffer, maxLength = UINT32_MAX): this {
    return this.opaque(typeof value === 'string' ? Buffer.from(value, 'utf8') : value, maxLength);
  }

  optional<T>(value: T | undefined, encode: (writer: this, value: T) => void): this {
    if (value === undefined) return this.bool(false);
    this.bool(true);
    encode(this, value);
    return this;
  }

  array<T>(items: readonly T[], encode: (writer: this, item: T) => void, maxLength = UINT32_MAX): this {
    if (items.length > maxLength) {
      throw new XdrError(`array of ${items.length} items exceeds its limit of ${maxLength}`);
    }
    this.uint32(items.length);
    for (const item of items) encode(this, item);
    return this;
  }

  /** The encoded bytes; a view of the internal buffer, valid until the next write. */
  bytes(): Buffer {
    return this.buf.subarray(0, this.length);
  }
}

export class XdrReader {
  private pos: number;

  constructor(
    private readonly buf: Buffer,
    offset = 0,
  ) {
    this.pos = offset;
  }

  get offset(): number {
    return this.pos;
  }

  get remaining(): number {
    return this.buf.length - this.pos;
  }

  private take(bytes: number, what: string): number {
    if (bytes > this.buf.length - this.pos) {
      throw new XdrError(`truncated ${what}: need ${bytes} bytes at offset ${this.pos}, have ${this.remaining}`);
    }
    const at = this.pos;
    this.pos += bytes;
    return at;
  }

  uint32(): number {
    return this.buf.readUInt32BE(this.take(4, 'uint32'));
  }

  int32(): number {
    return this.buf.readInt32BE(this.take(4, 'int32'));
  }

  uint64(): bigint {
    return this.buf.readBigUInt64BE(this.take(8, 'uint64'));
  }

  int64(): bigint {
    return this.buf.readBigInt64BE(this.take(8, 'int64'));
  }

  bool(): boolean {
    const value = this.uint32();
    if (value > 1) throw new XdrError(`bool must be 0 or 1, got ${value}`);
    return value === 1;
  }

  /** Returns a view into the message buffer, not a copy. */
  opaqueFixed(length: number): Buffer {
    const at = this.take(length + padding(length), 'opaque');
    return this.buf.subarray(at, at + length);
  }

  /** Returns a view into the message buffer, not a copy. */
  opaque(maxLength = UINT32_MAX): Buffer {
    const length = this.uint32();
    if (length > maxLength) {
      throw new XdrError(`opaque length ${length} exceeds its limit of ${maxLength}`);
    }
    return this.opaqueFixed(length);
  }

  /** An XDR string as raw bytes (file names are bytes, not necessarily UTF-8). */
  stringBytes(maxLength = UINT32_MAX): Buffer {
    return this.opaque(maxLength);
  }

  string(maxLength = UINT32_MAX): string {
    return this.opaque(maxLength).toString('utf8');
  }

  optional<T>(decode: (reader: this) => T): T | undefined {
    return this.bool() ? decode(this) : undefined;
  }

  array<T>(decode: (reader: this) => T, maxLength = UINT32_MAX): T[] {
    const count = this.uint32();
    if (count > maxLength) throw new XdrError(`array length ${count} exceeds its limit of ${maxLength}`);
    // Each element takes at least 4 bytes; refuse counts the message cannot hold before allocating.
    if (count > this.remaining / 4) {
      throw new XdrError(`array length ${count} cannot fit in the ${this.remaining} bytes left`);
    }
    const items: T[] = [];
    for (let i = 0; i < count; i++) items.push(decode(this));
    return items;
  }
}
