/**
 * Fault injection on lower layers, for reproducing what a flaky NFS server does: an errno
 * and/or a delay on chosen operations and paths, a number of times or with a probability.
 *
 * Rule syntax: OP[@LAYER]:GLOB:EFFECT[:LIMIT]
 *   OP      stat, readdir, readlink, getxattr, listxattr, open, read, statfs, or * (any)
 *   LAYER   lower layer number (1 = topmost), default any
 *   GLOB    path inside the layer, no leading slash: * within a name, ** across names, ? one char
 *   EFFECT  an errno name (ESTALE), delay=MS, or both joined by + (EIO+delay=200)
 *   LIMIT   count=N (the first N matches) or p=0.25 (each match with that probability)
 * Several rules: separated by ';'.
 */
import createDebug from 'debug';
import { constants } from 'os';
import { errnoError } from '../util/errno';
import type { LayerAttr, LayerDirent, LayerFile, LayerStatfs, ReadableLayer } from './types';

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

export function parseRule(text: string): FaultRule {
  const parts = text.split(':');
  if (parts.length < 3 || parts.length > 4) throw new FaultRuleError(`fault rule "${text}": expected OP[@LAYER]:GLOB:EFFECT[:LIMIT]`);
  const [opPart, glob, effect, limit] = parts as [string, string, string, string | undefined];
  const [op, layerText] = opPart.split('@') as [string, string | undefined];
  if (!(OPS as readonly string[]).includes(op)) throw new FaultRuleError(`fault rule "${text}": unknown operation ${op} (${OPS.join(', ')})`);
  const rule: FaultRule = { op: op as FaultOp, glob: glob.replace(/^\/+/, ''), text, hits: 0 };
  if (layerText !== undefined) {
    const n = Number(layerText);
    if (!Number.isInteger(n) || n < 1) throw new FaultRuleError(`fault rule "${text}": bad layer ${layerText}`);
    rule.layer = n;
  }
  for (const e of effect.split('+')) {
    if (e.startsWith('delay=')) {
      const ms = Number(e.slice(6).replace(/ms$/, ''));
      if (!Number.isFinite(ms) || ms < 0) throw new FaultRuleError(`fault rule "${text}": bad delay ${e}`);
      rule.delayMs = ms;
    } else if ((constants.errno as Record<string, number>)[e] !== undefined) {
      rule.errno = e;
    } else {
      throw new FaultRuleError(`fault rule "${text}": ${e} is neither an errno name nor delay=MS`);
    }
  }
  if (limit !== undefined) {
    if (limit.startsWith('count=')) {
      const n = Number(limit.slice(6));
      if (!Number.isInteger(n) || n < 1) throw new FaultRuleError(`fault rule "${text}": bad ${limit}`);
      rule.count = n;
    } else if (limit.startsWith('p=')) {
      const p = Number(limit.slice(2));
      if (!(p >= 0 && p <= 1)) throw new FaultRuleError(`fault rule "${text}": bad ${limit}`);
      rule.probability = p;
    } else {
      throw new FaultRuleError(`fault rule "${text}": limit must be count=N or p=P`);
    }
  }
  return rule;
}

export function parseRules(text: string): FaultRule[] {
  return text.split(';').filter((t) => t.trim() !== '').map((t) => parseRule(t.trim()));
}

/** The rules in force; changed at runtime through the control socket. */
export class FaultPlan {
  private rules: Array<FaultRule & { re: RegExp }> = [];

  add(rule: FaultRule): void {
    this.rules.push({ ...rule, re: globRegExp(rule.glob) });
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
    if (rule.errno) throw errnoError(-(constants.errno as Record<string, number>)[rule.errno]!, `${op} (injected)`, path);
  }
}

/** A lower layer whose operations first go through the fault plan. */
export class FaultyLayer implements ReadableLayer {
  constructor(private readonly inner: ReadableLayer, private readonly index: number, private readonly plan: FaultPlan) {}

  get label(): string {
    return this.inner.label;
  }

  /** Runs `op` after the plan's verdict; costs nothing while no rule is set. */
  private gate<T>(op: FaultOp, path: string, run: () => Promise<T>): Promise<T> {
    if (this.plan.empty) return run();
    return this.plan.apply(op, this.index, path).then(run);
  }

  stat(path: string): Promise<LayerAttr | null> {
    return this.gate('stat', path, () => this.inner.stat(path));
  }

  readdir(path: string): Promise<LayerDirent[]> {
    return this.gate('readdir', path, () => this.inner.readdir(path));
  }

  readlink(path: string): Promise<Buffer> {
    return this.gate('readlink', path, () => this.inner.readlink(path));
  }

  getxattr(path: string, name: string): Promise<Buffer | null> {
    return this.gate('getxattr', path, () => this.inner.getxattr(path, name));
  }

  listxattr(path: string): Promise<string[]> {
    return this.gate('listxattr', path, () => this.inner.listxattr(path));
  }

  async openRead(path: string): Promise<LayerFile> {
    const file = await this.gate('open', path, () => this.inner.openRead(path));
    return {
      fd: file.fd,
      read: (buf: Buffer, offset: number, length: number, position: number) =>
        this.gate('read', path, () => file.read(buf, offset, length, position)),
      stat: () => file.stat(),
      close: () => file.close(),
      chunks: file.chunks && ((size: number) => this.gatedChunks(path, file.chunks!(size))),
    };
  }

  /** A streamed read where each chunk counts as a read for the plan. */
  private async *gatedChunks(path: string, chunks: AsyncIterable<Buffer>): AsyncGenerator<Buffer, void, undefined> {
    for await (const chunk of chunks) {
      if (!this.plan.empty) await this.plan.apply('read', this.index, path);
      yield chunk;
    }
  }

  statfs(): Promise<LayerStatfs> {
    return this.gate('statfs', '', () => this.inner.statfs());
  }
}
