// system.nfs4_acl, as the kernel's NFS client shows an NFSv4 ACL: the XDR of fattr4_acl
// (nfsace4<>: type, flag, access mask, who), byte for byte what the server sent.
import { XdrReader, XdrWriter } from '../xdr';
import { readAce, type Nfs4Ace } from './attrs';

export function encodeNfs4Acl(aces: readonly Nfs4Ace[]): Buffer {
  const w = new XdrWriter(16 + aces.length * 32);
  w.array(aces, (x, a) => x.uint32(a.type).uint32(a.flag).uint32(a.mask).opaque(a.who));
  return w.bytes();
}

export function decodeNfs4Acl(value: Buffer): Nfs4Ace[] {
  const r = new XdrReader(value);
  const aces = r.array(readAce, 4096);
  if (r.remaining !== 0) throw new Error(`nfs4_acl: ${r.remaining} bytes after the last entry`);
  return aces;
}
