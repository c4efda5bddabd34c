/**
 * Throwaway unprivileged users for tests that play an attacker: created with useradd in a
 * `before` hook, deleted with userdel in the `after` hook, so no run leaves a user behind.
 */
import { randomBytes } from 'crypto';
import { run, type RunResult } from './proc';

export interface TestUser {
  readonly name: string;
  readonly uid: number;
  readonly gid: number;
  /** Runs a command as this user (real and effective ids, no supplementary groups). */
  run(cmd: string[], opts?: { timeoutMs?: number }): Promise<RunResult>;
  /** Runs a shell script as this user. */
  sh(script: string, opts?: { timeoutMs?: number }): Promise<RunResult>;
}

const made: string[] = [];

/** Creates a system user with its own group and no home directory. */
export async function createUser(): Promise<TestUser> {
  const name = `ovst${randomBytes(5).toString('hex')}`;
  const res = await run('useradd', ['--system', '--no-create-home', '--user-group', '--shell', '/bin/sh', name]);
  if (res.code !== 0) throw new Error(`useradd ${name}: ${res.stderr.trim()}`);
  made.push(name);
  const ids = await run('id', ['-u', name]);
  const gids = await run('id', ['-g', name]);
  const uid = Number(ids.stdout.trim());
  const gid = Number(gids.stdout.trim());
  const as = (cmd: string[], opts: { timeoutMs?: number } = {}): Promise<RunResult> =>
    run('setpriv', [`--reuid=${uid}`, `--regid=${gid}`, '--clear-groups', '--', ...cmd], { timeoutMs: opts.timeoutMs, cwd: '/' });
  return { name, uid, gid, run: as, sh: (script, opts) => as(['/bin/sh', '-c', script], opts) };
}

/** Deletes a user createUser made (and its group). */
export async function removeUser(user: TestUser | undefined): Promise<void> {
  if (!user) return;
  const i = made.indexOf(user.name);
  if (i < 0) return;
  made.splice(i, 1);
  const res = await run('userdel', [user.name]);
  if (res.code !== 0 && !/does not exist/.test(res.stderr)) throw new Error(`userdel ${user.name}: ${res.stderr.trim()}`);
}
