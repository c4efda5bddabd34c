/**
 * What a run sets up on the machine and takes down after it: loop-mounted ext4 images the
 * layers live on, the users xfstests runs its tests as, and the `ovshift` command where
 * mount.fuse3 looks for it. Everything is registered with the run's cleanup as it is made.
 */
import { existsSync, lstatSync, readlinkSync, realpathSync, symlinkSync, unlinkSync } from 'fs';
import { join, resolve } from 'path';
import type { Cleanup } from '../../bench/lib/cleanup';
import { check, run } from '../../bench/lib/proc';

export type BaseFs = 'xfs' | 'ext4';

/** A sparse image file made into a filesystem on a loop device of its own. */
export async function loopFs(cleanup: Cleanup, image: string, size: string, type: BaseFs): Promise<string> {
  await check('truncate', ['-s', size, image]);
  const device = (await check('losetup', ['--find', '--show', image])).trim();
  cleanup.add(`loop device ${device}`, async () => {
    await check('losetup', ['-d', device]);
  });
  await check(`mkfs.${type}`, type === 'xfs' ? ['-q', '-f', device] : ['-q', '-F', device], { timeoutMs: 300_000 });
  return device;
}

export async function mountDevice(cleanup: Cleanup, device: string, dir: string): Promise<void> {
  await check('mount', [device, dir]);
  cleanup.add(`${device} on ${dir}`, async () => {
    const r = await run('umount', [dir]);
    if (r.code !== 0) await check('umount', ['-l', dir]);
  });
}

/** The users and group xfstests' tests run as (_require_user, _require_group). */
const USERS = ['fsgqa', 'fsgqa2', '123456-fsgqa'];
const GROUP = 'fsgqa';

async function exists(db: 'passwd' | 'group', name: string): Promise<boolean> {
  return (await run('getent', [db, name])).code === 0;
}

/** Creates those of the suite's users and group that are missing; the cleanup removes exactly those. */
export async function suiteUsers(cleanup: Cleanup): Promise<void> {
  if (!(await exists('group', GROUP))) {
    await check('groupadd', [GROUP]);
    // userdel of fsgqa may have taken its namesake group already.
    cleanup.add(`group ${GROUP}`, async () => {
      if (await exists('group', GROUP)) await check('groupdel', [GROUP]);
    });
  }
  for (const user of USERS) {
    if (await exists('passwd', user)) continue;
    // 123456-fsgqa starts with a digit, which useradd takes only with --badname. Home "/": tests
    // log in as them (su -), and a missing home puts su's warning in the output (generic/128).
    await check('useradd', ['--badname', '--no-create-home', '--home-dir', '/', '--shell', '/bin/bash', '--gid', GROUP, user]);
    cleanup.add(`user ${user}`, async () => {
      await check('userdel', [user]);
    });
  }
}

const INSTALLED = '/usr/local/bin/ovshift';

/**
 * mount -t fuse.ovshift runs mount.fuse3, which runs `ovshift` from a fixed PATH: the command
 * of this checkout must be found there. When there is none, a link is made for the run; one
 * that leads to another installation is the user's to change (scripts/setup --install).
 */
export function ovshiftCommand(cleanup: Cleanup, root: string): void {
  const ours = resolve(root, 'build/Release/ovshift');
  if (!existsSync(ours)) throw new Error(`${ours} is missing: run scripts/setup first`);
  let present = false;
  try {
    lstatSync(INSTALLED);
    present = true;
  } catch {
    // none: made below
  }
  if (!present) {
    symlinkSync(ours, INSTALLED);
    cleanup.add(`link ${INSTALLED}`, () => unlinkSync(INSTALLED));
    return;
  }
  let target: string;
  try {
    target = realpathSync(INSTALLED);
  } catch {
    throw new Error(`${INSTALLED} is a broken link (to ${readlinkSync(INSTALLED)}): run scripts/setup --install in this checkout`);
  }
  if (target !== realpathSync(ours)) {
    throw new Error(`${INSTALLED} is ${target}, not this checkout's ${join(root, 'build/Release/ovshift')}: run scripts/setup --install here`);
  }
}
