/**
 * The mount request the native front end (src/front/ovshift.c) sends the server: NUL-terminated
 * fields, the protocol tag, the caller's working directory, its OVSHIFT_OPTIONS (or ""), then
 * every argument of its command line. One request per connection; one reply line back.
 */
import { isAbsolute, resolve } from 'path';
import { isNfsLower } from '../layers/lower-location';
import type { CliOptions } from '../cli/options';

export const PROTOCOL = 'ovshift-mount-1';
/** Far above any real command line; a bigger request is refused unread. */
export const MAX_REQUEST_BYTES = 1 << 20;

export interface MountRequest {
  cwd: string;
  /** OVSHIFT_OPTIONS of the caller, when set. */
  defaults?: string;
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
  const fields = data.subarray(0, data.length - 1).toString('utf8').split('\0');
  const [tag, cwd, defaults, ...args] = fields;
  if (tag !== PROTOCOL) throw new RequestError(`unknown request ${JSON.stringify(tag)} (front end and server of different versions?)`);
  if (cwd === undefined || defaults === undefined || !isAbsolute(cwd)) throw new RequestError('malformed request');
  return { cwd, defaults: defaults === '' ? undefined : defaults, args };
}

/** Reply lines: the front end exits 0, runs the Node command line itself, or prints and exits. */
export const reply = {
  ok: 'ok\n',
  exec: 'exec\n',
  error: (status: number, message: string): string => `error ${status} ${message.replace(/\n/g, ' ')}\n`,
};

/**
 * Paths on the caller's command line are relative to the caller's directory, not the
 * server's (which is /): every directory the options name, made absolute.
 */
export function resolvePaths(o: CliOptions, cwd: string): CliOptions {
  const abs = (p: string): string => resolve(cwd, p);
  return {
    ...o,
    mountpoint: abs(o.mountpoint),
    lowers: o.lowers.map((l) => (isNfsLower(l) ? l : abs(l))),
    upper: o.upper === undefined ? undefined : abs(o.upper),
    work: o.work === undefined ? undefined : abs(o.work),
  };
}
