/**
 * Lets one test user open /dev/fuse (0600 on some machines, 0666 where udev sets it up) through
 * a POSIX ACL entry of its own, removed afterwards. An ACL entry rather than chmod 666 and back:
 * test files running at the same time each add and remove their own entry, where chmod/restore
 * pairs would restore each other's modes.
 */
import { run } from './proc';

const DEVICE = '/dev/fuse';

export async function allowFuseDevice(uid: number): Promise<void> {
  const r = await run('setfacl', ['-m', `u:${uid}:rw`, DEVICE]);
  if (r.code !== 0) throw new Error(`setfacl ${DEVICE}: ${r.stderr.trim()}`);
}

export async function disallowFuseDevice(uid: number): Promise<void> {
  await run('setfacl', ['-x', `u:${uid}`, DEVICE]);
  // setfacl -x leaves a mask entry behind: with no named entry left, no ACL at all, as before.
  const acl = await run('getfacl', ['-cp', DEVICE]);
  if (acl.code === 0 && !/^(user|group):[^:]+:/m.test(acl.stdout)) await run('setfacl', ['-b', DEVICE]);
}
