/** Checks the layers and the mountpoint before anything is mounted; each refusal names the problem. */
import { promises as fsp, constants as K } from 'fs';
import { backendOf, type LowerBackend } from '../layers/backends';
import { locate, type LowerLocation } from '../layers/lower-location';
import { MountError as LayoutError } from '../util/mount-error';
import type { CliOptions } from './options';

/** A layout the checks refuse: the one mount error, under the name callers know it by. */
export { LayoutError };

export interface Layout {
  mountpoint: string;
  lowers: LowerLocation[];
  upper?: string;
  work?: string;
}

function inside(path: string, dir: string): boolean {
  return path === dir || path.startsWith(dir === '/' ? '/' : `${dir}/`);
}

async function directory(what: string, path: string, access: number): Promise<string> {
  let real: string;
  try {
    real = await fsp.realpath(path);
    const st = await fsp.stat(real);
    if (!st.isDirectory()) throw new LayoutError(`${what} ${path} is not a directory`);
    await fsp.access(real, access);
  } catch (err) {
    if (err instanceof LayoutError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new LayoutError(`${what} ${path} does not exist`);
    if (code === 'EACCES') throw new LayoutError(`${what} ${path} is not ${access & K.W_OK ? 'writable' : 'readable'}`);
    throw new LayoutError(`${what} ${path}: ${(err as Error).message}`);
  }
  return real;
}

/**
 * A lower as its backend parses and checks it: a directory must exist and be readable; an
 * nfs:// lower is only parsed here, the server is reached when the layers are opened.
 */
async function lower<S>(backend: LowerBackend<S>, what: string, text: string): Promise<LowerLocation> {
  let spec: S;
  try {
    spec = backend.parse(text);
  } catch (err) {
    throw new LayoutError(`${what}: ${(err as Error).message}`);
  }
  if (backend.check) spec = await backend.check(spec, { what, directory: (path) => directory(what, path, K.R_OK | K.X_OK) });
  return locate(backend, spec);
}

export async function checkLayout(o: CliOptions): Promise<Layout> {
  const locations: LowerLocation[] = [];
  // Only local directories can hold the mountpoint or the upper, or be inside them: [name, path].
  const lowerDirs: Array<[string, string]> = [];
  for (const [i, l] of o.lowers.entries()) {
    const what = o.lowers.length > 1 ? `lower layer ${i + 1}` : 'lower layer';
    const location = await lower(backendOf(l), what, l);
    locations.push(location);
    if (location.directory !== undefined) lowerDirs.push([`${what} ${location.directory}`, location.directory]);
  }
  const upper = o.upper === undefined ? undefined : await directory('upperdir', o.upper, K.R_OK | K.W_OK | K.X_OK);
  const work = o.work === undefined ? undefined : await directory('workdir', o.work, K.R_OK | K.W_OK | K.X_OK);
  let mountpoint: string;
  try {
    mountpoint = await fsp.realpath(o.mountpoint);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new LayoutError(`mountpoint ${o.mountpoint} does not exist`);
    if (code === 'ENOTCONN') throw new LayoutError(`mountpoint ${o.mountpoint} is a FUSE mount whose daemon died; run: umount ${o.mountpoint}`);
    throw new LayoutError(`mountpoint ${o.mountpoint}: ${(err as Error).message}`);
  }
  const layers: Array<[string, string]> = [
    ...lowerDirs,
    ...(upper ? [[`upperdir ${upper}`, upper] as [string, string]] : []),
    ...(work ? [[`workdir ${work}`, work] as [string, string]] : []),
  ];
  for (const [name, dir] of layers) {
    if (inside(mountpoint, dir)) throw new LayoutError(`mountpoint ${mountpoint} is inside ${name}: serving it would deadlock`);
    if (inside(dir, mountpoint)) throw new LayoutError(`${name} is inside the mountpoint ${mountpoint}: the mount would hide it`);
  }
  if (upper) {
    for (const [, l] of lowerDirs) {
      if (inside(upper, l)) throw new LayoutError(`upperdir ${upper} is inside lower layer ${l}`);
      if (inside(l, upper)) throw new LayoutError(`lower layer ${l} is inside upperdir ${upper}`);
    }
  }
  if (upper && work) {
    if (inside(work, upper) || inside(upper, work)) throw new LayoutError(`upperdir ${upper} and workdir ${work} must not contain each other`);
    const [u, w] = await Promise.all([fsp.stat(upper), fsp.stat(work)]);
    if (u.dev !== w.dev) throw new LayoutError(`workdir ${work} is on another filesystem than upperdir ${upper}`);
  }
  return { mountpoint, lowers: locations, upper, work };
}
