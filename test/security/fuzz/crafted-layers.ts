/**
 * Crafted layers: from one seed, a few lower trees, maybe an upper, a canary directory beside
 * them, and the mount options. Pure: what it plans is written by layers-on-disk.ts.
 */
import type { Prng } from './prng';

/**
 * Every layer draws its names from these, so layers overlap, merge and hide each other. None
 * is a name of the scratch root's own entries (lower0, upper, canary, mnt…) nor of the host's
 * root, so a listing of anything outside the layers shows names no layer has.
 */
const NAMES: readonly string[] = ['a', 'b', 'c', 'd', 'e', 'f', 'g'];

/** Names only the canary has: a listing that shows one has listed the canary. */
export const CANARY_NAMES: readonly string[] = ['CANARY-SECRET', 'canary-sub', 'CANARY-DEEP'];

const OPAQUE_MARKER = '.wh..wh..opq';
const WHITEOUT_PREFIX = '.wh.';

export type Entry =
  | { kind: 'dir'; path: string }
  | { kind: 'file'; path: string; content: string }
  | { kind: 'symlink'; path: string; target: string }
  /** A 0/0 character device. */
  | { kind: 'whiteout'; path: string };

export interface Xattr {
  path: string;
  name: string;
  value: Buffer;
}

export interface LayerPlan {
  dir: string;
  entries: Entry[];
  xattrs: Xattr[];
}

export interface Scenario {
  seed: number;
  root: string;
  lowers: LayerPlan[];
  /** Absent: the mount gets ovshift's private tmpfs upper. */
  upper?: LayerPlan;
  work?: string;
  /** Beside the layers; nothing in it may ever be served. */
  canary: LayerPlan;
  mnt: string;
  /** -o options besides the layers. */
  options: string[];
}

export interface TreeSize {
  maxEntries: number;
  maxDepth: number;
}

export const SMALL: TreeSize = { maxEntries: 4, maxDepth: 2 };
export const NORMAL: TreeSize = { maxEntries: 6, maxDepth: 3 };

/** What symlink targets and redirects may point at, gathered while the trees grow. */
interface Context {
  rng: Prng;
  root: string;
  layerNames: string[];
  dirs: string[];
  symlinks: string[];
}

/** Draws everything from `rng`, which the caller seeded with `seed`. */
export function craftScenario(seed: number, rng: Prng, root: string, size: TreeSize): Scenario {
  const nLowers = rng.int(1, 3);
  const withUpper = rng.chance(0.7);
  const layerNames = [...Array.from({ length: nLowers }, (_, i) => `lower${i}`), ...(withUpper ? ['upper'] : [])];
  const ctx: Context = { rng, root, layerNames, dirs: [], symlinks: [] };

  const layers = layerNames.map((name, i): LayerPlan => {
    const plan: LayerPlan = { dir: `${root}/${name}`, entries: [], xattrs: [] };
    growDir(ctx, plan, name === 'upper' ? 'U' : `L${i}`, '', 0, size);
    return plan;
  });
  for (const plan of layers) addOverlayXattrs(ctx, plan, plan === layers[nLowers]);

  return {
    seed,
    root,
    lowers: layers.slice(0, nLowers),
    upper: withUpper ? layers[nLowers] : undefined,
    work: withUpper ? `${root}/work` : undefined,
    canary: canaryPlan(root),
    mnt: `${root}/mnt`,
    options: mountOptions(rng),
  };
}

/** The layers the mount is given, topmost last. */
export function layersOf(s: Scenario): LayerPlan[] {
  return [...s.lowers, ...(s.upper ? [s.upper] : [])];
}

/** The ovshift arguments that mount a scenario. */
export function mountArgs(s: Scenario): string[] {
  const layers = [`lowerdir=${s.lowers.map((l) => l.dir).join(':')}`];
  if (s.upper) layers.push(`upperdir=${s.upper.dir}`, `workdir=${s.work}`);
  return ['-o', [...layers, ...s.options].join(','), s.mnt];
}

export function describeScenario(s: Scenario): string {
  const layers = layersOf(s);
  const objects = layers.reduce((n, l) => n + l.entries.length, 0);
  const xattrs = layers.reduce((n, l) => n + l.xattrs.length, 0);
  return (
    `${s.lowers.length} lower(s) + ${s.upper ? 'upper dir' : 'private upper'}, ${objects} objects, ${xattrs} overlay xattrs` +
    (s.options.length ? `, -o ${s.options.join(',')}` : '')
  );
}

function join(dir: string, name: string): string {
  return dir ? `${dir}/${name}` : name;
}

function growDir(ctx: Context, plan: LayerPlan, label: string, dir: string, depth: number, size: TreeSize): void {
  const { rng } = ctx;
  ctx.dirs.push(dir);
  if (rng.chance(0.08)) plan.entries.push({ kind: 'file', path: join(dir, OPAQUE_MARKER), content: `${label}:${join(dir, OPAQUE_MARKER)}\n` });
  const free = rng.shuffle([...NAMES]);
  // The root always holds a few entries: a seed with an empty tree tests nothing.
  const count = rng.int(depth === 0 ? 2 : 0, size.maxEntries);
  for (let i = 0; i < count && free.length > 0; i++) {
    const name = free.pop()!;
    const path = join(dir, name);
    const kind = rng.weighted<string>([
      ['dir', depth < size.maxDepth ? 4 : 0],
      ['file', 3],
      ['symlink', 3],
      ['whiteout', 1],
      ['wh-file', 1],
    ]);
    if (kind === 'dir') {
      plan.entries.push({ kind: 'dir', path });
      growDir(ctx, plan, label, path, depth + 1, size);
    } else if (kind === 'file') {
      plan.entries.push({ kind: 'file', path, content: `${label}:${path}\n` });
    } else if (kind === 'symlink') {
      plan.entries.push({ kind: 'symlink', path, target: symlinkTarget(ctx, depth) });
      ctx.symlinks.push(path);
    } else if (kind === 'whiteout') {
      plan.entries.push({ kind: 'whiteout', path });
    } else {
      const wh = join(dir, WHITEOUT_PREFIX + name);
      plan.entries.push({ kind: 'file', path: wh, content: `${label}:${wh}\n` });
    }
  }
}

/** `depth`: how many directories the symlink's own directory is below its layer's root. */
function symlinkTarget(ctx: Context, depth: number): string {
  const { rng, root } = ctx;
  const toRoot = '../'.repeat(depth + 1);
  const canaryPart = (): string => rng.pick(['', '/CANARY-SECRET', '/canary-sub', `/${rng.pick(NAMES)}`]);
  return rng.weighted<() => string>([
    [() => rng.pick(NAMES), 3],
    [() => `../${rng.pick(NAMES)}`, 2],
    [() => `${rng.pick(NAMES)}/${rng.pick(NAMES)}`, 1],
    [() => `${toRoot}canary${canaryPart()}`, 3],
    [() => `${'../'.repeat(depth + 12)}etc`, 1],
    [() => `${root}/${rng.pick(ctx.layerNames)}/${rng.pick(NAMES)}`, 2],
    [() => `${root}/canary${canaryPart()}`, 3],
    [() => `/proc/self/root${root}/canary${canaryPart()}`, 2],
    [() => rng.pick(['/proc/self/root/etc', '/etc/passwd', '/', '/proc/self/cwd']), 1],
    [() => `nowhere-${rng.int(0, 99)}`, 1],
  ])();
}

function addOverlayXattrs(ctx: Context, plan: LayerPlan, isUpper: boolean): void {
  const { rng } = ctx;
  const dirs = ['', ...plan.entries.filter((e) => e.kind === 'dir').map((e) => e.path)];
  for (const dir of dirs) {
    if (!rng.chance(dir === '' ? 0.15 : 0.5)) continue;
    for (let n = rng.int(1, 2); n > 0; n--) {
      const prefix = rng.chance(0.75) ? 'trusted.overlay.' : 'user.overlay.';
      const [suffix, value] = rng.weighted<() => [string, Buffer]>([
        [() => ['redirect', redirectValue(ctx)], 6],
        [() => ['opaque', opaqueValue(rng)], 2],
        [() => ['ovshift.origin', originValue(rng)], 1],
        [() => ['origin', junk(rng, rng.int(1, 40))], 1],
        [() => [rng.pick(['metacopy', 'impure', 'nlink', 'upper']), junk(rng, rng.int(0, 12))], 1],
      ])();
      // A second value for the same name would only replace the first.
      if (!plan.xattrs.some((x) => x.path === dir && x.name === prefix + suffix)) plan.xattrs.push({ path: dir, name: prefix + suffix, value });
    }
  }
  if (!isUpper) return;
  for (const e of plan.entries) {
    if (e.kind === 'file' && rng.chance(0.2)) plan.xattrs.push({ path: e.path, name: 'trusted.overlay.ovshift.origin', value: originValue(rng) });
  }
}

function redirectValue(ctx: Context): Buffer {
  const { rng, root } = ctx;
  const absoluteDirs = ctx.dirs.filter((d) => d !== '');
  const text = rng.weighted<() => string | Buffer>([
    // Valid: a sibling's name, or a directory of some layer.
    [() => rng.pick(NAMES), 3],
    [() => `/${rng.pick(absoluteDirs.length ? absoluteDirs : NAMES)}`, 3],
    // Hostile: out of the layer, to the host's root or to the canary beside the layers.
    [() => rng.pick(['/../../..', '..', '../..', '/..', '/../canary', '../canary', '/../../../../../../../../..']), 4],
    [() => `/${'../'.repeat(rng.int(2, 12))}${root.slice(1)}/canary${rng.chance(0.5) ? `/${rng.pick(NAMES)}` : ''}`, 2],
    // Through a symlink some layer holds (most point out of the layers).
    [
      () => `/${rng.pick(ctx.symlinks.length ? ctx.symlinks : NAMES)}${rng.pick(['', `/${rng.pick(NAMES)}`, '/canary-sub', '/etc'])}`,
      ctx.symlinks.length ? 4 : 0,
    ],
    [() => rng.pick(ctx.symlinks.length ? ctx.symlinks.map((s) => s.split('/').pop()!) : NAMES), ctx.symlinks.length ? 1 : 0],
    [() => `${root}/canary`, 1],
    [() => `/proc/self/root${root}/canary`, 1],
    [() => rng.pick(['/a//b', '//', '/./a', 'a/../..', '.', '/', 'a/b', '/a/./../..', '/a/', 'a\0b', '/\0/..', `/${OPAQUE_MARKER}`]), 2],
    [() => junk(rng, rng.int(1, 64)), 1],
    [() => rng.pick(['x/', '../', 'a//']).repeat(rng.int(100, 500)), 1],
  ])();
  return typeof text === 'string' ? Buffer.from(text, 'latin1') : text;
}

function opaqueValue(rng: Prng): Buffer {
  return rng.weighted<() => Buffer>([
    [() => Buffer.from('y'), 3],
    [() => Buffer.from('n'), 1],
    [() => Buffer.from(rng.pick(['Y', 'yes', 'y\0', 'x', ''])), 1],
    [() => junk(rng, rng.int(1, 8)), 1],
  ])();
}

/**
 * ovshift's own origin: the st_ino a copied-up object keeps. A plain decimal is a number the
 * mount may show (see originsOf); everything else is junk no parser reads as a positive number.
 */
function originValue(rng: Prng): Buffer {
  if (rng.chance(0.4)) return Buffer.from(String(rng.int(2 ** 40, 2 ** 47)));
  return rng.weighted<() => Buffer>([
    [() => Buffer.from(rng.pick(['', '0', '-3', 'abc', '1.5', '99999999999999999999', 'NaN'])), 2],
    [() => junk(rng, rng.int(1, 16)), 1],
  ])();
}

/** The st_ino values the upper's origin xattrs may give the objects they sit on. */
export function originsOf(s: Scenario): Set<number> {
  const out = new Set<number>();
  for (const x of s.upper?.xattrs ?? []) {
    const text = x.value.toString('latin1');
    if (x.name.endsWith('.ovshift.origin') && /^[1-9][0-9]*$/.test(text) && Number.isSafeInteger(Number(text))) out.add(Number(text));
  }
  return out;
}

/** Bytes that are never digits or spaces: NUL and the high half. */
function junk(rng: Prng, length: number): Buffer {
  return Buffer.from(Array.from({ length }, () => (rng.chance(0.1) ? 0 : rng.int(0x80, 0xff))));
}

function mountOptions(rng: Prng): string[] {
  const options: string[] = [];
  const redirectDir = rng.weighted<string | undefined>([
    ['on', 2],
    ['off', 1],
    [undefined, 2],
  ]);
  if (redirectDir) options.push(`redirect_dir=${redirectDir}`);
  const revalidate = rng.weighted<string | undefined>([
    [undefined, 3],
    ['cached', 1],
    ['kernel', 1],
  ]);
  if (revalidate) options.push(`revalidate=${revalidate}`);
  if (rng.chance(0.15)) options.push('ro');
  return options;
}

/** Secret files (with pool names too, so a walker that strays in reads them) and subdirs. */
function canaryPlan(root: string): LayerPlan {
  const entries: Entry[] = [
    { kind: 'file', path: 'CANARY-SECRET', content: 'CANARY-SECRET:CANARY-SECRET\n' },
    { kind: 'dir', path: 'canary-sub' },
    { kind: 'file', path: 'canary-sub/CANARY-DEEP', content: 'CANARY-SECRET:canary-sub/CANARY-DEEP\n' },
  ];
  NAMES.forEach((name, i) => {
    if (i % 2 === 1) {
      entries.push({ kind: 'file', path: name, content: `CANARY-SECRET:${name}\n` });
      return;
    }
    entries.push({ kind: 'dir', path: name });
    for (const inner of [...NAMES, 'CANARY-DEEP']) entries.push({ kind: 'file', path: `${name}/${inner}`, content: `CANARY-SECRET:${name}/${inner}\n` });
  });
  return { dir: `${root}/canary`, entries, xattrs: [] };
}
