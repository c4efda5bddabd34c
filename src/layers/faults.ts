/**
 * Fault injection on lower layers, for reproducing what a flaky NFS server does: an errno
 * and/or a delay on chosen operations and paths, a number of times or with a probability.
 *
 * Rule syntax: OP[@LAYER]:GLOB:EFFECT[:LIMIT]
 *   OP      stat, readdir, readlink, getxattr, listxattr, open, read, statfs, or * (any)
 *   LAYER   lower layer number (1 = topmost, up to the number of lowers), default any
 *   GLOB    path inside the layer, no leading slash: * within a name, ** across names, ? one char
 *   EFFECT  an errno name (ESTALE), delay=MS (0 to 3600000), or both joined by + (EIO+delay=200)
 *   LIMIT   count=N (the first N matches, 1 to 1000000000) or p=0.25 (each match with that
 *           probability, 0 to 1)
 * Several rules: separated by ';'.
 */
import createDebug from 'debug';
import { DELAY_MS, boundedNumber, expected, type Bounds } from '../util/bounds';
import { errnoError, errnoNumber, isErrnoName } from '../util/errno';
import {
  childPath,
  pathOf,
  type LayerAttr,
  type LayerChange,
  type LayerDirent,
  type LayerFile,
  type LayerLocks,
  type LayerPath,
  type LayerStatfs,
  type LentParts,
  type LayerWatch,
  type ReadableLayer,
} from './types';

const log = createDebug('ovshift:inject');

const OPS = ['stat', 'readdir', 'readlink', 'getxattr', 'listxattr', 'open', 'read', 'statfs', '*'] as const;
type FaultOp = (typeof OPS)[number];

export interface FaultRule {
  op: FaultOp;
  /** 1-based lower layer, or undefined for any. */
  layer?: number;
  glob: string;
  errno?: string;
  delayMs?: number;
  count?: number;
  probability?: number;
  /** The rule as written, for listings. */
  text: string;
  hits: number;
}

export class FaultRuleError extends Error {}

const COUNT: Bounds = { min: 1, max: 1_000_000_000, unit: 'a count' };
const PROBABILITY: Bounds = { min: 0, max: 1, unit: 'a probability', fraction: true };

/** One number of a rule, or a refusal naming the rule, the parameter and its range. */
function ruleNumber(rule: string, label: string, text: string, b: Bounds): number {
  const n = boundedNumber(text, b);
  if (n === undefined) throw new FaultRuleError(`fault rule "${rule}": ${label}: ${expected(b)}`);
  return n;
}

function layerBounds(lowers: number | undefined): Bounds {
  return { min: 1, max: lowers ?? Number.MAX_SAFE_INTEGER, unit: 'a lower layer number' };
}

/** "expected a lower layer number from 1 to N", or "… to the number of lower layers". */
function layerRange(lowers: number | undefined): string {
  return lowers === undefined ? 'expected a lower layer number from 1 to the number of lower layers' : expected(layerBounds(lowers));
}

function globRegExp(glob: string): RegExp {
  let re = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === '*' && glob[i + 1] === '*') {
      re += '.*';
      i++;
    } else if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else re += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

/** One rule; `lowers`, when known, bounds its layer number. */
export function parseRule(text: string, lowers?: number): FaultRule {
  const parts = text.split(':');
  if (parts.length < 3 || parts.length > 4) throw new FaultRuleError(`fault rule "${text}": expected OP[@LAYER]:GLOB:EFFECT[:LIMIT]`);
  const [opPart, glob, effect, limit] = parts as [string, string, string, string | undefined];
  const [op, layerText] = opPart.split('@') as [string, string | undefined];
  if (!(OPS as readonly string[]).includes(op)) throw new FaultRuleError(`fault rule "${text}": unknown operation ${op} (${OPS.join(', ')})`);
  const rule: FaultRule = { op: op as FaultOp, glob: glob.replace(/^\/+/, ''), text, hits: 0 };
  if (layerText !== undefined) {
    const n = boundedNumber(layerText, layerBounds(lowers));
    if (n === undefined) throw new FaultRuleError(`fault rule "${text}": layer ${layerText}: ${layerRange(lowers)}`);
    rule.layer = n;
  }
  for (const e of effect.split('+')) {
    if (e.startsWith('delay=')) {
      rule.delayMs = ruleNumber(text, e, e.slice(6).replace(/ms$/, ''), DELAY_MS);
    } else if (isErrnoName(e)) {
      rule.errno = e;
    } else {
      throw new FaultRuleError(`fault rule "${text}": ${e} is neither an errno name nor delay=MS`);
    }
  }
  if (limit !== undefined) {
    if (limit.startsWith('count=')) {
      rule.count = ruleNumber(text, limit, limit.slice(6), COUNT);
    } else if (limit.startsWith('p=')) {
      rule.probability = ruleNumber(text, limit, limit.slice(2), PROBABILITY);
    } else {
      throw new FaultRuleError(`fault rule "${text}": limit must be count=N or p=P`);
    }
  }
  return rule;
}

export function parseRules(text: string, lowers?: number): FaultRule[] {
  return text
    .split(';')
    .filter((t) => t.trim() !== '')
    .map((t) => parseRule(t.trim(), lowers));
}

/** The rules in force; changed at runtime through the control socket. */
export class FaultPlan {
  private rules: Array<FaultRule & { re: RegExp }> = [];
  /** How many lowers the mount has, as its FaultyLayers report; 0 until they exist. */
  private lowers = 0;

  /** Refuses a rule for a lower the mount does not have (rules added at runtime). */
  add(rule: FaultRule): void {
    this.check(rule);
    this.rules.push({ ...rule, re: globRegExp(rule.glob) });
  }

  private check(rule: FaultRule): void {
    if (this.lowers > 0 && rule.layer !== undefined && rule.layer > this.lowers) {
      throw new FaultRuleError(`fault rule "${rule.text}": layer ${rule.layer}: ${layerRange(this.lowers)}`);
    }
  }

  /** Several rules, all or none: each is checked before any is added. */
  addAll(rules: readonly FaultRule[]): void {
    for (const rule of rules) this.check(rule);
    for (const rule of rules) this.add(rule);
  }

  /** A FaultyLayer of the mount: lower `index` (1-based) exists. */
  coverLayer(index: number): void {
    this.lowers = Math.max(this.lowers, index);
  }

  clear(): void {
    this.rules = [];
  }

  list(): FaultRule[] {
    return this.rules.map(({ re: _re, ...r }) => r);
  }

  get empty(): boolean {
    return this.rules.length === 0;
  }

  /** Applies the first matching rule: waits its delay, then throws its errno if it has one. */
  async apply(op: FaultOp, layer: number, path: string): Promise<void> {
    const rule = this.rules.find((r) => (r.op === '*' || r.op === op) && (r.layer === undefined || r.layer === layer) && r.re.test(path));
    if (!rule) return;
    if (rule.probability !== undefined && Math.random() >= rule.probability) return;
    if (rule.count !== undefined && rule.hits >= rule.count) return;
    rule.hits++;
    log('%s on lower %d %s: %s (hit %d)', op, layer, path || '.', rule.text, rule.hits);
    if (rule.delayMs) await new Promise((r) => setTimeout(r, rule.delayMs));
    if (rule.errno) throw errnoError(-errnoNumber(rule.errno), `${op} (injected)`, path);
  }
}

/** A lower layer whose operations first go through the fault plan. */
export class FaultyLayer implements ReadableLayer {
  constructor(
    private readonly inner: ReadableLayer,
    private readonly index: number,
    private readonly plan: FaultPlan,
  ) {
    plan.coverLayer(index);
  }

  get label(): string {
    return this.inner.label;
  }

  /** Runs `op` after the plan's verdict; costs nothing while no rule is set. */
  private gate<T>(op: FaultOp, path: string, run: () => Promise<T>): Promise<T> {
    if (this.plan.empty) return run();
    return this.plan.apply(op, this.index, path).then(run);
  }

  stat(at: LayerPath): Promise<LayerAttr | null> {
    return this.gate('stat', pathOf(at), () => this.inner.stat(at));
  }

  readdir(at: LayerPath): Promise<LayerDirent[]> {
    if (this.plan.empty) return this.inner.readdir(at);
    // Entries' attributes would stand in for their lookups (READDIRPLUS), which rules may target.
    return this.gate('readdir', pathOf(at), async () => (await this.inner.readdir(at)).map(({ attr: _, ...e }) => e));
  }

  readlink(at: LayerPath): Promise<Buffer> {
    return this.gate('readlink', pathOf(at), () => this.inner.readlink(at));
  }

  getxattr(at: LayerPath, name: string): Promise<Buffer | null> {
    return this.gate('getxattr', pathOf(at), () => this.inner.getxattr(at, name));
  }

  lookup(dir: LayerPath, name: string): Promise<LayerAttr | null> {
    return this.gate('stat', childPath(pathOf(dir), name), () => this.inner.lookup(dir, name));
  }

  listxattr(at: LayerPath): Promise<string[]> {
    return this.gate('listxattr', pathOf(at), () => this.inner.listxattr(at));
  }

  async openRead(at: LayerPath): Promise<LayerFile> {
    const path = pathOf(at);
    return this.gatedFile(path, await this.gate('open', path, () => this.inner.openRead(at)));
  }

  async openEntry(dir: LayerPath, name: string, identity: string, readSoon?: boolean): Promise<LayerFile | null> {
    const path = childPath(pathOf(dir), name);
    const file = await this.gate('open', path, () => this.inner.openEntry(dir, name, identity, readSoon));
    return file && this.gatedFile(path, file);
  }

  /** The file with its reads going through the plan. */
  private gatedFile(path: string, file: LayerFile): LayerFile {
    return new GatedFile(file, path, this.plan, this.index);
  }

  statfs(): Promise<LayerStatfs> {
    return this.gate('statfs', '', () => this.inner.statfs());
  }

  watch(onChanges: (changes: LayerChange[]) => void): LayerWatch | string {
    return this.inner.watch?.(onChanges) ?? 'its changes are not reported';
  }

  storableXattrs(name: string, value: Buffer, isDir: boolean): { name: string; value: Buffer }[] | string | undefined {
    return this.inner.storableXattrs?.(name, value, isDir);
  }

  /** Closes the layer it wraps. */
  close(): void | Promise<void> {
    return this.inner.close();
  }
}

/**
 * An open file of a FaultyLayer: its reads go through the plan (rules set after the open
 * apply too). Methods live on the prototype and the optional ones are the same function
 * objects for every file, present where the file has them: an open allocates one object.
 */
class GatedFile implements LayerFile {
  readonly fd: number | undefined;
  readonly openedAttr: LayerAttr | undefined;
  readonly readParts: LayerFile['readParts'];
  readonly forgetReadAhead: LayerFile['forgetReadAhead'];
  readonly chunks: LayerFile['chunks'];
  readonly lockHandle: LayerFile['lockHandle'];

  constructor(
    private readonly file: LayerFile,
    private readonly path: string,
    private readonly plan: FaultPlan,
    private readonly index: number,
  ) {
    this.fd = file.fd;
    this.openedAttr = file.openedAttr;
    const own = GatedFile.prototype;
    this.readParts = file.readParts && own.gatedReadParts;
    this.forgetReadAhead = file.forgetReadAhead && own.innerForgetReadAhead;
    this.chunks = file.chunks && own.gatedChunks;
    this.lockHandle = file.lockHandle && own.innerLockHandle;
  }

  read(buf: Buffer, offset: number, length: number, position: number, knownEnd?: number): Promise<number> {
    if (this.plan.empty) return this.file.read(buf, offset, length, position, knownEnd);
    return this.plan.apply('read', this.index, this.path).then(() => this.file.read(buf, offset, length, position, knownEnd));
  }

  stat(): Promise<LayerAttr> {
    return this.file.stat();
  }

  close(): Promise<void> {
    return this.file.close();
  }

  private gatedReadParts(length: number, position: number, knownEnd?: number): Promise<LentParts> {
    if (this.plan.empty) return this.file.readParts!(length, position, knownEnd);
    return this.plan.apply('read', this.index, this.path).then(() => this.file.readParts!(length, position, knownEnd));
  }

  private innerForgetReadAhead(): void {
    this.file.forgetReadAhead!();
  }

  private innerLockHandle(): LayerLocks {
    return this.file.lockHandle!();
  }

  /** A streamed read where each chunk counts as a read for the plan. */
  private async *gatedChunks(size: number): AsyncGenerator<Buffer, void, undefined> {
    for await (const chunk of this.file.chunks!(size)) {
      if (!this.plan.empty) await this.plan.apply('read', this.index, this.path);
      yield chunk;
    }
  }
}
