/**
 * A handler served on a mount from start to end: mount (mountFuse), a FuseSession reading the
 * device, INIT answered; then unmounting (lazily if busy), aborting the connection through
 * fusectl when this process may itself be blocked on the mount, and closing the device.
 */
import createDebug from 'debug';
import { closeSync } from 'fs';
import type { FuseHandler } from './handler';
import { abortConnection, connectionId, mountFuse, type FuseMount, type MountSpec } from './mount';
import { FuseSession, type SessionOptions } from './session';

const log = createDebug('ovshift:mount');

export interface StopOptions {
  /**
   * A thread of this process may be blocked on the mount (a caller that timed out, a child
   * still working in it): abort the connection through fusectl first, so every pending request
   * fails at once, then detach lazily. Without it: a plain unmount, lazily if that fails.
   */
  abort?: boolean;
}

export interface ServedFuse {
  readonly mount: FuseMount;
  readonly session: FuseSession;
  /** The connection number (fusectl directory, bdi "0:ID") found at mount time, if listed. */
  readonly connection: number | undefined;
  /** session.closed: settles with the errno that ended the connection (ENODEV: unmounted). */
  readonly closed: Promise<number>;
  /**
   * Removes the mount here and stops the session; the device stays open until closeDevice().
   * The first call decides; later ones return its promise.
   */
  unmount(opts?: StopOptions): Promise<void>;
  /** Stops the session and closes the device; the kernel ends the connection. Idempotent. */
  closeDevice(): void;
  /** unmount(opts), then closeDevice() whether or not the unmount succeeded. */
  stop(opts?: StopOptions): Promise<void>;
}

export interface ServeOptions {
  session?: SessionOptions;
  /**
   * Runs once mounted, before the session reads its first request (INIT): wiring that must be
   * in place when requests arrive. If it throws, the mount is undone and serveFuse rejects.
   */
  beforeStart?(served: ServedFuse): void | Promise<void>;
}

/** Mounts per `spec`, serves `handler` on it, resolves once INIT is answered. */
export async function serveFuse(spec: MountSpec, handler: FuseHandler, opts: ServeOptions = {}): Promise<ServedFuse> {
  const mount = await mountFuse(spec);
  const session = new FuseSession(mount.fd, handler, opts.session);
  let unmounting: Promise<void> | undefined;
  let deviceClosed = false;
  let connection: number | undefined;

  const unmountHere = async (stopOpts: StopOptions): Promise<void> => {
    if (stopOpts.abort) {
      // Only the connection still mounted there and known to be ours: a number freed by an
      // unmount may already belong to another mount.
      const id = await connectionId(mount.mountpoint);
      if (id !== undefined && (connection === undefined || id === connection)) await abortConnection(id);
      await mount.unmount({ lazy: true });
      return;
    }
    try {
      await mount.unmount();
    } catch (err) {
      // The connection outlives that while a copy of the mount is held in another mount
      // namespace, or files are open on a lazily detached one.
      log('unmount failed (%s); detaching lazily', (err as Error).message);
      await mount.unmount({ lazy: true });
    }
  };

  const served: ServedFuse = {
    mount,
    session,
    get connection() {
      return connection;
    },
    closed: session.closed,
    unmount(stopOpts = {}) {
      unmounting ??= unmountHere(stopOpts).finally(() => session.stop());
      return unmounting;
    },
    closeDevice() {
      session.stop();
      if (deviceClosed) return;
      deviceClosed = true;
      closeSync(mount.fd);
    },
    async stop(stopOpts = {}) {
      try {
        await served.unmount(stopOpts);
      } finally {
        served.closeDevice();
      }
    },
  };

  try {
    connection = await connectionId(mount.mountpoint);
    await opts.beforeStart?.(served);
    session.start();
    await session.ready;
  } catch (err) {
    session.stop();
    unmounting ??= mount.unmount({ lazy: true }).catch(() => undefined);
    await unmounting;
    served.closeDevice();
    throw err;
  }
  return served;
}
