// Connects to an nfs:// URL's server in the version it asks for, or the highest the server
// offers: NFSv4.2, then 4.1, then NFSv3 (through the portmapper and MOUNT).
import createDebug from 'debug';
import { NfsClient, NfsMountError } from './client';
import type { NfsLowerClient } from './lower-client';
import { RpcProgMismatchError, RpcProgUnavailError } from './rpc-message';
import { describeNfsUrl, type NfsUrl } from './url';
import { Nfs3Lower } from './v3-lower';
import { Nfs4Client } from './v4/client';
import { Nfs4Error } from './v4/errors';
import { Nfs4Status } from './v4/protocol';

const log = createDebug('ovshift:nfs');

/** The server does not speak this version at all (rather than: something else went wrong). */
function versionRefused(err: unknown): boolean {
  if (err instanceof Nfs4Error) return err.status === Nfs4Status.MINOR_VERS_MISMATCH || err.status === Nfs4Status.OP_ILLEGAL;
  // No NFSv4 at that port (PROG_MISMATCH, PROG_UNAVAIL), or nothing listening on 2049.
  return err instanceof RpcProgMismatchError || err instanceof RpcProgUnavailError || (err as { code?: string }).code === 'ECONNREFUSED';
}

async function connectV4(url: NfsUrl, minor: number): Promise<Nfs4Client> {
  try {
    return await Nfs4Client.connect(url, minor);
  } catch (err) {
    throw new NfsMountError(`${describeNfsUrl(url)} over NFSv4.${minor}`, err as Error);
  }
}

export async function connectNfs(url: NfsUrl): Promise<NfsLowerClient> {
  if (url.vers === '3') return new Nfs3Lower(await NfsClient.connect(url));
  if (url.vers === '4.1') return connectV4(url, 1);
  if (url.vers === '4.2') return connectV4(url, 2);
  for (const minor of [2, 1]) {
    try {
      return await Nfs4Client.connect(url, minor);
    } catch (err) {
      if (!versionRefused(err)) throw new NfsMountError(`${describeNfsUrl(url)} over NFSv4.${minor}`, err as Error);
      log('%s: NFSv4.%d refused (%s)', describeNfsUrl(url), minor, (err as Error).message);
    }
  }
  return new Nfs3Lower(await NfsClient.connect(url));
}
