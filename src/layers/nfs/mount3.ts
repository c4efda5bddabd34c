// MOUNT v3 (RFC 1813 §5): MNT turns an export path into the root file handle; UMNT forgets it.

import { Mount3Status, Mount3Error } from './errors';
import { RpcClient, RpcClientOptions } from './rpc';

export const MOUNT_PROGRAM = 100005;
export const MOUNT_VERSION = 3;
const MOUNTPROC3_MNT = 1;
const MOUNTPROC3_UMNT = 3;
const MNTPATHLEN = 1024;
const FHSIZE3 = 64;
// MOUNT replies are a file handle and a few flavors.
const SMALL_READ_BUFFER = 4096;

export interface MountResult {
  fh: Buffer;
  /** RPC auth flavors the server accepts for this export (empty means it did not say). */
  authFlavors: number[];
}

export type MountClientOptions = Omit<RpcClientOptions, 'target' | 'label' | 'failFast' | 'soft' | 'readBufferSize'>;

/** A short-lived MOUNT connection: calls fail rather than wait for the server to come back. */
export class Mount3Client {
  private readonly rpc: RpcClient;

  constructor(options: MountClientOptions) {
    this.rpc = new RpcClient({
      ...options,
      target: { program: MOUNT_PROGRAM, version: MOUNT_VERSION },
      label: 'mount',
      soft: true,
      failFast: true,
      readBufferSize: SMALL_READ_BUFFER,
    });
  }

  async mnt(path: Buffer): Promise<MountResult> {
    const reply = await this.rpc.call(MOUNTPROC3_MNT, (w) => w.string(path, MNTPATHLEN));
    const status: Mount3Status = reply.uint32();
    if (status !== Mount3Status.OK) throw new Mount3Error(status, path.toString('utf8'));
    const fh = Buffer.from(reply.opaque(FHSIZE3));
    const authFlavors = reply.array((r) => r.uint32());
    return { fh, authFlavors };
  }

  async umnt(path: Buffer): Promise<void> {
    await this.rpc.call(MOUNTPROC3_UMNT, (w) => w.string(path, MNTPATHLEN));
  }

  close(): void {
    this.rpc.close();
  }
}
