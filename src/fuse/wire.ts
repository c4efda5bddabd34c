/** Little-endian cursors over FUSE messages. Host byte order is little-endian on every target we run. */

const TWO_32 = 2 ** 32;
/** 2^63, the first size past loff_t. */
const LOFF_MAX = 2 ** 63;

/** Thrown by WireReader when a message is shorter than its layout; the session answers EINVAL. */
export class MalformedMessage extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MalformedMessage';
  }
}

export class WireReader {
  constructor(
    private readonly buf: Buffer,
    public pos: number,
    private readonly end: number,
  ) {}

  get remaining(): number {
    return this.end - this.pos;
  }

  private need(n: number): number {
    const at = this.pos;
    if (at + n > this.end) throw new MalformedMessage(`need ${n} bytes at ${at}, have ${this.end - at}`);
    this.pos = at + n;
    return at;
  }

  u16(): number {
    return this.buf.readUInt16LE(this.need(2));
  }

  u32(): number {
    return this.buf.readUInt32LE(this.need(4));
  }

  i32(): number {
    return this.buf.readInt32LE(this.need(4));
  }

  /** A u64 as a Number: exact up to 2^53, which node ids, handles and byte offsets stay below (util/offset). */
  u64(): number {
    const at = this.need(8);
    return this.buf.readUInt32LE(at) + this.buf.readUInt32LE(at + 4) * TWO_32;
  }

  /** A u64 carried as a time_t: the kernel stores negative seconds in the unsigned field. */
  i64(): number {
    const at = this.need(8);
    return this.buf.readUInt32LE(at) + this.buf.readInt32LE(at + 4) * TWO_32;
  }

  /** A u64 as a bigint: lock ranges and offsets that may reach OFFSET_MAX (util/offset). */
  u64big(): bigint {
    return this.buf.readBigUInt64LE(this.need(8));
  }

  /** A u64 field that carries a signed 64-bit value (LSEEK's offset is a loff_t), as a bigint. */
  i64big(): bigint {
    return this.buf.readBigInt64LE(this.need(8));
  }

  skip(n: number): void {
    this.need(n);
  }

  bytes(n: number): Buffer {
    const at = this.need(n);
    return this.buf.subarray(at, at + n);
  }

  /** A NUL-terminated name, returned without its NUL as a view into the message. */
  cstring(): Buffer {
    const at = this.pos;
    const nul = this.buf.indexOf(0, at);
    if (nul < 0 || nul >= this.end) throw new MalformedMessage(`unterminated name at ${at}`);
    this.pos = nul + 1;
    return this.buf.subarray(at, nul);
  }

  rest(): Buffer {
    const at = this.pos;
    this.pos = this.end;
    return this.buf.subarray(at, this.end);
  }
}

export class WireWriter {
  pos = 0;
  constructor(readonly buf: Buffer) {}

  u16(v: number): this {
    this.buf.writeUInt16LE(v, this.pos);
    this.pos += 2;
    return this;
  }

  u32(v: number): this {
    this.buf.writeUInt32LE(v >>> 0, this.pos);
    this.pos += 4;
    return this;
  }

  i32(v: number): this {
    this.buf.writeInt32LE(v, this.pos);
    this.pos += 4;
    return this;
  }

  /** Non-negative Number up to 2^53 (values are clamped to the integer part). */
  u64(v: number): this {
    const n = Math.trunc(v);
    this.buf.writeUInt32LE((n % TWO_32) >>> 0, this.pos);
    this.buf.writeUInt32LE(Math.floor(n / TWO_32) >>> 0, this.pos + 4);
    this.pos += 8;
    return this;
  }

  /**
   * A file size or offset (loff_t). A Number holds sizes above 2^53 only to the nearest
   * representable value, and 2^63 - 1 (a size Linux allows) rounds up to 2^63, which the kernel
   * refuses with EIO for the whole entry: written as 2^63 - 1 at most.
   */
  loff(v: number): this {
    if (v < LOFF_MAX) return this.u64(v);
    this.buf.writeBigUInt64LE(0x7fffffffffffffffn, this.pos);
    this.pos += 8;
    return this;
  }

  /** Signed 64-bit from a Number (time_t seconds may be negative). */
  i64(v: number): this {
    this.buf.writeBigInt64LE(BigInt(Math.trunc(v)), this.pos);
    this.pos += 8;
    return this;
  }

  u64big(v: bigint): this {
    this.buf.writeBigUInt64LE(BigInt.asUintN(64, v), this.pos);
    this.pos += 8;
    return this;
  }

  zero(n: number): this {
    this.buf.fill(0, this.pos, this.pos + n);
    this.pos += n;
    return this;
  }

  bytes(b: Buffer): this {
    b.copy(this.buf, this.pos);
    this.pos += b.length;
    return this;
  }
}
