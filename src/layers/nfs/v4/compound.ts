// COMPOUND (RFC 8881 §16.2): a list of operations sent as one call, answered in order until the
// first that fails. Arguments are written operation by operation; results are read back the
// same way, each checked to be the operation asked for.
import { XdrReader, XdrWriter } from '../xdr';
import { Nfs4Error, protocolViolation } from './errors';
import { writeBitmap, readFattr, bitmapOf, type Fattr4 } from './attrs';
import { Attr, NFS4_FHSIZE, NFS4_OTHER_SIZE, Nfs4Status, Op } from './protocol';

export interface Stateid {
  seqid: number;
  other: Buffer;
}

export const ANONYMOUS_STATEID: Stateid = { seqid: 0, other: Buffer.alloc(NFS4_OTHER_SIZE) };
/** The stateid the previous operation of the same COMPOUND returned (RFC 8881 §16.2.3.1.2). */
export const CURRENT_STATEID: Stateid = { seqid: 1, other: Buffer.alloc(NFS4_OTHER_SIZE) };

export function writeStateid(w: XdrWriter, s: Stateid): void {
  w.uint32(s.seqid).opaqueFixed(s.other, NFS4_OTHER_SIZE);
}

export function readStateid(r: XdrReader): Stateid {
  return { seqid: r.uint32(), other: Buffer.from(r.opaqueFixed(NFS4_OTHER_SIZE)) };
}

/** The operations of one COMPOUND, in order. */
export class Compound {
  readonly ops: Op[] = [];
  private readonly encoders: ((w: XdrWriter) => void)[] = [];

  add(op: Op, encode?: (w: XdrWriter) => void): this {
    this.ops.push(op);
    this.encoders.push((w) => {
      w.uint32(op);
      encode?.(w);
    });
    return this;
  }

  putfh(fh: Buffer): this {
    return this.add(Op.PUTFH, (w) => w.opaque(fh, NFS4_FHSIZE));
  }

  putrootfh(): this {
    return this.add(Op.PUTROOTFH);
  }

  lookup(name: Buffer): this {
    return this.add(Op.LOOKUP, (w) => w.opaque(name));
  }

  getfh(): this {
    return this.add(Op.GETFH);
  }

  getattr(attrs: readonly Attr[]): this {
    const words = bitmapOf(attrs);
    return this.add(Op.GETATTR, (w) => writeBitmap(w, words));
  }

  /** Writes COMPOUND4args; `first` writes one more operation ahead of these (SEQUENCE). */
  encode(w: XdrWriter, minorVersion: number, first?: (w: XdrWriter) => void): void {
    w.string('')
      .uint32(minorVersion)
      .uint32(this.ops.length + (first === undefined ? 0 : 1));
    first?.(w);
    for (const encode of this.encoders) encode(w);
  }
}

/** COMPOUND4res, read one operation's result at a time. */
export class CompoundReply {
  readonly status: Nfs4Status;
  private left: number;

  constructor(private readonly r: XdrReader) {
    this.status = r.uint32();
    r.opaque(1024); // tag
    this.left = r.uint32();
  }

  /** Results not read yet. */
  get remaining(): number {
    return this.left;
  }

  /**
   * The next result, which must be `op`'s: its status and a reader at its body. A result past
   * the last one the server sent (the compound stopped earlier) throws the compound's status.
   */
  result(op: Op): { status: Nfs4Status; r: XdrReader } {
    if (this.left === 0) throw this.status === Nfs4Status.OK ? protocolViolation(`no result for ${Op[op]}`) : new Nfs4Error(this.status, op);
    this.left--;
    const got = this.r.uint32();
    if (got !== op) throw protocolViolation(`result for operation ${got} where ${Op[op]} was expected`);
    return { status: this.r.uint32(), r: this.r };
  }

  /** The next result, which must be `op`'s and successful: a reader at its body. */
  ok(op: Op, detail?: string): XdrReader {
    const { status, r } = this.result(op);
    if (status !== Nfs4Status.OK) throw new Nfs4Error(status, op, detail);
    return r;
  }

  getfh(): Buffer {
    return Buffer.from(this.ok(Op.GETFH).opaque(NFS4_FHSIZE));
  }

  getattr(): Fattr4 {
    return readFattr(this.ok(Op.GETATTR));
  }
}
