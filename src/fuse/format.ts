/** Readable one-line forms of requests and replies for `DEBUG=ovshift:fuse`. */
import { Op } from './abi';
import { errnoName } from '../util/errno';
import type { Request } from './requests';

const HEADER_KEYS = new Set(['len', 'opcode', 'unique', 'nodeid', 'uid', 'gid', 'pid', 'op']);
const DATA_KEYS = new Set(['data', 'value']);

export function opName(opcode: number): string {
  return Op[opcode] ?? `OP_${opcode}`;
}

function formatBytes(b: Buffer, asData: boolean): string {
  if (asData || b.length > 256) return `<${b.length} bytes>`;
  return JSON.stringify(b.toString('utf8'));
}

function formatValue(key: string, v: unknown, depth: number): string {
  if (Buffer.isBuffer(v)) return formatBytes(v, DATA_KEYS.has(key));
  if (typeof v === 'bigint') return v.toString();
  if (key === 'mode' && typeof v === 'number') return '0' + v.toString(8);
  if (Array.isArray(v)) return `[${v.map((x) => formatValue(key, x, depth + 1)).join(' ')}]`;
  if (typeof v === 'object' && v !== null) {
    if (depth > 2) return '{…}';
    const o = v as Record<string, unknown>;
    if ('sec' in o && 'nsec' in o && Object.keys(o).length === 2) return `${o.sec}.${String(o.nsec).padStart(9, '0')}`;
    return `{${formatFields(o, depth + 1)}}`;
  }
  return String(v);
}

function formatFields(o: Record<string, unknown>, depth: number, skip?: Set<string>): string {
  const parts: string[] = [];
  for (const [k, v] of Object.entries(o)) {
    if (skip?.has(k) || v === undefined) continue;
    parts.push(`${k}=${formatValue(k, v, depth)}`);
  }
  return parts.join(' ');
}

export function formatRequest(req: Request): string {
  const body = formatFields(req as unknown as Record<string, unknown>, 0, HEADER_KEYS);
  return `→ #${req.unique} ${opName(req.opcode)} node=${req.nodeid} uid=${req.uid} gid=${req.gid} pid=${req.pid}${body ? ' ' + body : ''}`;
}

export function formatReply(unique: number, opcode: number, result: unknown): string {
  let body: string;
  if (result === undefined) body = 'OK';
  else if (Buffer.isBuffer(result)) body = `OK ${formatBytes(result, opcode === Op.READ)}`;
  else if (typeof result === 'object' && result !== null && !Array.isArray(result)) {
    body = `OK ${formatFields(result as Record<string, unknown>, 0)}`;
  } else body = `OK ${formatValue('result', result, 0)}`;
  return `← #${unique} ${opName(opcode)} ${body}`;
}

export function formatError(unique: number, opcode: number, errno: number): string {
  return `← #${unique} ${opName(opcode)} ${errnoName(errno)}`;
}
