/** Mounts a protocol-layer handler in this test process through the real kernel. */
import { mkdtempSync, rmdirSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import type { FuseHandler } from '../../src/fuse/handler';
import type { FuseMount } from '../../src/fuse/mount';
import { serveFuse, type ServedFuse } from '../../src/fuse/serve';
import type { FuseSession } from '../../src/fuse/session';

export interface SessionMount {
  dir: string;
  session: FuseSession;
  mount: FuseMount;
  /** Unmounts and stops serving, whatever state requests are in. Idempotent. */
  close(): Promise<void>;
}

export async function mountHandler(handler: FuseHandler): Promise<SessionMount> {
  const dir = mkdtempSync(join(tmpdir(), 'ovshift-fuse-'));
  let served: ServedFuse;
  try {
    served = await serveFuse({ mountpoint: dir, fsname: 'memfs', subtype: 'ovshift-test' }, handler);
  } catch (err) {
    rmdirSync(dir); // serveFuse undid the mount
    throw err;
  }
  const { session, mount } = served;
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
      await served.stop({ abort: true });
      rmdirSync(dir);
    },
  };
}
