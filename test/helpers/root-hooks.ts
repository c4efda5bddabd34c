/**
 * Root hooks for the whole mocha run: whatever mount servers tests started through the native
 * front end (directly, or through mount -t fuse.ovshift) end with the run, by PID.
 */
import { stopOvshiftServers } from './ovshift-server';

export const mochaHooks = {
  async afterAll(): Promise<void> {
    await stopOvshiftServers();
  },
};
