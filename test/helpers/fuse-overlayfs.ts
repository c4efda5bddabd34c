/** fuse-overlayfs, run beside ovshift by tests that compare the two on the same tree. */
import { execFileSync } from 'child_process';

/** Whether fuse-overlayfs runs here (`scripts/setup --test` installs it). */
export function hasFuseOverlayfs(): boolean {
  try {
    execFileSync('fuse-overlayfs', ['--version'], { stdio: 'ignore', timeout: 5000 });
    return true;
  } catch {
    return false;
  }
}
