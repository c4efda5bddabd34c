/**
 * The fuzzer's invariants, as pure checks: what the walkers saw must all come from the layers,
 * and the layers must be what they were before the mount. Each returns violations as lines.
 */
import type { Snapshot, SnapshotEntry } from './layers-on-disk';
import type { Seen, WalkNames } from './walk';

/** What the layers and their surroundings held before the mount. */
export interface Facts {
  /** layer dir → snapshot; every layer the mount was given. */
  layers: Record<string, Snapshot>;
  canaryDir: string;
  canary: Snapshot;
  /** Names only the canary has. */
  canaryNames: readonly string[];
  /** st_ino → path, for objects outside the layers on the layers' filesystem (host, canary, work dir). */
  outside: Map<number, string>;
  /**
   * What may be added to a layer's inode number in what the mount shows. Layers on several
   * filesystems get a range each, the first one registered keeping its numbers: ovshift's private
   * tmpfs upper is another filesystem (but not made for a read-only mount).
   */
  inoOffsets: number[];
  /** The root may be the private upper's own directory: its number is no layer object's. */
  rootFromPrivateUpper: boolean;
  /** Numbers the upper's origin xattrs may give the objects they sit on. */
  origins: Set<number>;
}

const PRIVATE_NAME = /^\.wh\./;
/** The fuzzer mounts as root, where only trusted.overlay.* is metadata; user.overlay.* is user data. */
const PRIVATE_XATTR = /^trusted\.overlay\./;

/** What the mount may show, derived once from the facts. */
class Allowed {
  readonly inodes = new Map<number, string>();
  readonly contents = new Set<string>();
  readonly canaryContents = new Map<string, string>();
  readonly targets = new Set<string>();
  readonly names = new Set<string>();
  readonly privateNames = new Set<string>();

  constructor(readonly facts: Facts) {
    for (const [dir, snap] of Object.entries(facts.layers)) {
      for (const [rel, e] of Object.entries(snap)) {
        this.inodes.set(e.ino, `${dir}/${rel}`);
        if (e.sha) this.contents.add(e.sha);
        if (e.target !== undefined) this.targets.add(e.target);
        const name = rel.split('/').pop()!;
        if (rel !== '.') (PRIVATE_NAME.test(name) ? this.privateNames : this.names).add(name);
      }
    }
    for (const [rel, e] of Object.entries(facts.canary)) {
      if (e.sha) this.canaryContents.set(e.sha, `${facts.canaryDir}/${rel}`);
    }
  }
}

/** What walkers look up: every name some layer holds, overlay-private ones only probed. */
export function walkNames(facts: Facts): WalkNames {
  const allowed = new Allowed(facts);
  return { enter: [...allowed.names].sort(), probe: [...allowed.privateNames].sort() };
}

/** Invariant 2: every object served lies beneath a layer root. */
export function checkServed(facts: Facts, seenByWalkers: Seen[]): string[] {
  const allowed = new Allowed(facts);
  const out = new Set<string>();
  for (const seen of seenByWalkers) {
    for (const v of checkObject(allowed, seen)) out.add(v);
  }
  return [...out];
}

function checkObject(allowed: Allowed, seen: Seen): string[] {
  const out: string[] = [];
  const at = `mnt/${seen.p}`;
  if (PRIVATE_NAME.test(seen.p.split('/').pop()!)) out.push(`${at}: an overlay-private name answers a lookup`);
  const inoProblem = checkIno(allowed, seen);
  if (inoProblem) out.push(`${at}: ${inoProblem}`);
  if (seen.sha !== undefined && !allowed.contents.has(seen.sha)) {
    const canary = allowed.canaryContents.get(seen.sha);
    out.push(canary ? `${at}: read the canary's secret ${canary}` : `${at}: read content no layer file holds (sha256 ${seen.sha.slice(0, 16)}…)`);
  }
  for (const name of seen.names ?? []) {
    if (allowed.facts.canaryNames.includes(name)) out.push(`${at}: listing shows the canary's ${name}`);
    else if (PRIVATE_NAME.test(name)) out.push(`${at}: listing shows overlay-private ${name}`);
    else if (!allowed.names.has(name)) out.push(`${at}: listing shows ${JSON.stringify(name)}, which no layer holds (a directory outside the layers?)`);
  }
  if (seen.target !== undefined && !allowed.targets.has(seen.target)) out.push(`${at}: symlink target ${JSON.stringify(seen.target)} is no layer symlink's`);
  if ('cbps'.includes(seen.t))
    out.push(`${at}: served a ${seen.t === 'c' ? `character device ${seen.rdev?.join(':')}` : `${seen.t}-type object`}; layers hold none but whiteouts`);
  for (const x of seen.xattrs ?? []) {
    if (PRIVATE_XATTR.test(x)) out.push(`${at}: shows overlay-private xattr ${x}`);
  }
  return out;
}

function checkIno(allowed: Allowed, seen: Seen): string | undefined {
  const { facts } = allowed;
  // Its number is the private upper's, on another filesystem: equal to a host one by chance.
  if (seen.p === '.' && facts.rootFromPrivateUpper) return undefined;
  const candidates = facts.inoOffsets.map((offset) => seen.ino - offset).filter((n) => n > 0);
  for (const n of candidates) {
    const outside = facts.outside.get(n);
    if (outside) return `st_ino ${seen.ino} is that of ${outside}, outside the layers`;
  }
  if (candidates.some((n) => allowed.inodes.has(n)) || facts.origins.has(seen.ino)) return undefined;
  return `st_ino ${seen.ino} is no layer object's`;
}

/** Invariant 3: nothing in a layer (nor in the canary) changed. */
export function compareSnapshots(dir: string, before: Snapshot, after: Snapshot): string[] {
  const out: string[] = [];
  for (const rel of new Set([...Object.keys(before), ...Object.keys(after)])) {
    const b = before[rel];
    const a = after[rel];
    if (!b) out.push(`${dir}/${rel} appeared (${describeEntry(a!)})`);
    else if (!a) out.push(`${dir}/${rel} vanished (${describeEntry(b)})`);
    else {
      const fields = (Object.keys({ ...b, ...a }) as Array<keyof SnapshotEntry>).filter((k) => JSON.stringify(b[k]) !== JSON.stringify(a[k]));
      if (fields.length > 0) out.push(`${dir}/${rel} changed: ${fields.map((k) => `${k} ${JSON.stringify(b[k])} -> ${JSON.stringify(a[k])}`).join('; ')}`);
    }
  }
  return out;
}

function describeEntry(e: SnapshotEntry): string {
  return e.type === 'l' ? `symlink to ${e.target}` : `type ${e.type}, mode ${e.mode.toString(8)}`;
}

export interface DaemonState {
  running: boolean;
  /** `stat MNT` answered. */
  answers: boolean;
  /** The fuzzer aborted the FUSE connection (already a violation), which ends both of the above. */
  aborted: boolean;
  stderr: string;
}

/** Invariant 1: the daemon is alive, its mount answers, and it printed no uncaught error. */
export function checkDaemon(state: DaemonState): string[] {
  const out: string[] = [];
  if (!state.running && !state.aborted) out.push('the daemon is gone');
  if (!state.answers && !state.aborted) out.push('`stat mnt` does not answer');
  // Not any line: the daemon names each invalid redirect it meets in one line of its own.
  const uncaught = state.stderr.split('\n').find((l) => /uncaught|unhandled/i.test(l) || /\b[A-Za-z]*Error:|^\s+at \S.*:\d+:\d+\)?$/.test(l));
  if (uncaught) out.push(`the daemon printed an error (${uncaught.trim()}):\n${state.stderr.slice(0, 2000)}`);
  return out;
}
