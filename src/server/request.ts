/**
 * The mount request the native front end (src/front/ovshift.c) sends the server: NUL-terminated
 * fields, the protocol tag, the caller's working directory, its OVSHIFT_OPTIONS and TMPDIR (""
 * when unset), then every argument of its command line. One request per connection; one reply line back.
 */
import { isAbsolute, resolve } from 'path';
import { isDirectoryLower } from '../layers/lower-location';
import type { CliOptions } from '../cli/options';

export const PROTOCOL = 'ovshift-mount-2';
/** Where a caller without TMPDIR has its private upper made (as os.tmpdir() would for it). */
const DEFAULT_TMPDIR = '/tmp';
/** Far above any real command line; a bigger request is refused unread. */
export const MAX_REQUEST_BYTES = 1 << 20;

export interface MountRequest {
  cwd: string;
  /** OVSHIFT_OPTIONS of the caller, when set. */
  defaults?: string;
  /** TMPDIR of the caller, when set: where its private upper is made, not the server's. */
  tmpDir?: string;
  args: string[];
}

export class RequestError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RequestError';
  }
}

export function parseRequest(data: Buffer): MountRequest {
  if (data.length === 0 || data[data.length - 1] !== 0) throw new RequestError('truncated request');
  const fields = data
    .subarray(0, data.length - 1)
    .toString('utf8')
    .split('\0');
  const [tag, cwd, defaults, tmpDir, ...args] = fields;
  if (tag !== PROTOCOL) throw new RequestError(`unknown request ${JSON.stringify(tag)} (front end and server of different versions?)`);
  if (cwd === undefined || defaults === undefined || tmpDir === undefined || !isAbsolute(cwd)) throw new RequestError('malformed request');
  return { cwd, defaults: defaults === '' ? undefined : defaults, tmpDir: tmpDir === '' ? undefined : tmpDir, args };
}

/** Reply lines: the front end exits 0, runs the Node command line itself, or prints and exits. */
export const reply = {
  ok: 'ok\n',
  exec: 'exec\n',
  error: (status: number, message: string): string => `error ${status} ${message.replace(/\n/g, ' ')}\n`,
};

/**
 * Paths on the caller's command line are relative to the caller's directory, not the
 * server's (which is /): every directory the options name, made absolute; and the caller's
 * TMPDIR, not the one of whoever started the server.
 */
export function resolvePaths(o: CliOptions, cwd: string, tmpDir: string | undefined): CliOptions {
  const abs = (p: string): string => resolve(cwd, p);
  return {
    ...o,
    tempDir: tmpDir === undefined ? DEFAULT_TMPDIR : abs(tmpDir),
    mountpoint: abs(o.mountpoint),
    lowers: o.lowers.map((l) => (isDirectoryLower(l) ? abs(l) : l)),
    upper: o.upper === undefined ? undefined : abs(o.upper),
    work: o.work === undefined ? undefined : abs(o.work),
  };
}
