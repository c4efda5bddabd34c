/** Mounts a protocol-layer handler in this test process through the real kernel. */
import { mkdtempSync, rmdirSync, closeSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import type { FuseHandler } from '../../src/fuse/handler';
import { abortConnection, connectionId, mountFuse, type FuseMount } from '../../src/fuse/mount';
import { FuseSession } from '../../src/fuse/session';

export interface SessionMount {
  dir: string;
  session: FuseSession;
  mount: FuseMount;
  /** Unmounts and stops serving, whatever state requests are in. Idempotent. */
  close(): Promise<void>;
}

export async function mountHandler(handler: FuseHandler): Promise<SessionMount> {
  const dir = mkdtempSync(join(tmpdir(), 'ovshift-fuse-'));
  const mount = await mountFuse({ mountpoint: dir, fsname: 'memfs', subtype: 'ovshift-test' });
  const id = await connectionId(dir);
  const session = new FuseSession(mount.fd, handler);
  session.start();
  await session.ready;
  let closed = false;
  return {
    dir,
    session,
    mount,
    async close() {
      if (closed) return;
      closed = true;
      // Abort first: a thread of this very process may be blocked on the mount (a test that
      // timed out), and it would keep the process from ever exiting.
      if (id !== undefined) await abortConnection(id);
      await mount.unmount({ lazy: true });
      session.stop();
      closeSync(mount.fd);
      rmdirSync(dir);
    },
  };
}
