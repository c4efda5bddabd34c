/**
 * nfs_export=on: the node ids the kernel's file handles carry, kept in the workdir from one
 * mount of the layers to the next, so a handle made before an unmount opens the same object
 * after the mount (an NFS client of a re-exported mount keeps its files across a restart).
 *
 * The table is written at a clean unmount and taken out (read and removed) at the next mount:
 * after a crash there is none, the mount takes a new generation, and earlier handles are stale
 * rather than naming whatever took their ids. Its contents are checked before use, and a name
 * in it is only a place to look: a handle opens what is there only if it is the object the
 * handle was made for (its identity), found the way a lookup finds it, inside the layers.
 */
import createDebug from 'debug';
import { isPlainName } from './format';
import type { NodeTable } from './nodes';

const log = createDebug('ovshift:export');

/** The file's name in the workdir. */
export const HANDLE_TABLE_FILE = 'ovshift-handles';

/** [id, parent's id, name, identity of the object shown] */
export type SavedNode = [number, number, string, string];

export interface SavedHandles {
  generation: number;
  nextId: number;
  nodes: SavedNode[];
}

const VERSION = 1;
/** Entries read at most (the forgotten nodes kept plus a large tree's live ones). */
const MAX_ENTRIES = 1 << 20;
const MAX_IDENTITY = 512;

export function serializeHandles(table: NodeTable): Buffer {
  return Buffer.from(JSON.stringify({ version: VERSION, ...table.handles() }));
}

/** The table in `data`, or an Error saying what is wrong with it. */
export function parseHandles(data: Buffer): SavedHandles | Error {
  let v: unknown;
  try {
    v = JSON.parse(data.toString('utf8'));
  } catch {
    return new Error('not JSON');
  }
  if (typeof v !== 'object' || v === null) return new Error('not an object');
  const t = v as Record<string, unknown>;
  if (t.version !== VERSION) return new Error(`version ${String(t.version)}, not ${VERSION}`);
  const { generation, nextId, nodes } = t;
  if (!isInt(generation, 1, 2 ** 32 - 1)) return new Error('bad generation');
  if (!isInt(nextId, 2, Number.MAX_SAFE_INTEGER)) return new Error('bad next id');
  if (!Array.isArray(nodes) || nodes.length > MAX_ENTRIES) return new Error('bad node list');
  const seen = new Set<number>();
  for (const n of nodes as unknown[]) {
    if (!Array.isArray(n) || n.length !== 4) return new Error('bad node entry');
    const [id, parent, name, identity] = n as unknown[];
    if (!isInt(id, 2, nextId - 1) || seen.has(id)) return new Error(`bad node id ${String(id)}`);
    seen.add(id);
    if (!isInt(parent, 1, nextId - 1) || parent === id) return new Error(`bad parent for node ${id}`);
    if (typeof name !== 'string' || !isPlainName(name)) return new Error(`bad name for node ${id}`);
    if (typeof identity !== 'string' || identity === '' || identity.length > MAX_IDENTITY) return new Error(`bad identity for node ${id}`);
  }
  return { generation, nextId, nodes: nodes as SavedNode[] };
}

function isInt(v: unknown, min: number, max: number): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= min && v <= max;
}

/** Where the table is kept: the upper's workdir (see UpperDir.takeStateFile). */
export interface HandleTableStore {
  takeStateFile(name: string): Buffer | undefined;
  writeStateFile(name: string, data: Buffer): void;
}

/**
 * Takes the last mount's table into `table`, if the store has a sound one; says on stderr, in a
 * line, why one that is not sound is ignored (its handles are then stale).
 */
export function restoreHandles(store: HandleTableStore, table: NodeTable, where: string): void {
  let saved: SavedHandles | Error;
  try {
    const data = store.takeStateFile(HANDLE_TABLE_FILE);
    if (data === undefined) return;
    saved = parseHandles(data);
  } catch (err) {
    saved = err as Error;
  }
  if (saved instanceof Error) {
    process.stderr.write(`ovshift: ${where}/${HANDLE_TABLE_FILE}: ignored (${saved.message}); file handles of the last mount are stale\n`);
    return;
  }
  table.restoreHandles(saved);
  log('%d node ids of the last mount restored (generation %d)', saved.nodes.length, saved.generation);
}

/** Keeps `table` for the next mount. */
export function saveHandles(store: HandleTableStore, table: NodeTable): void {
  const data = serializeHandles(table);
  store.writeStateFile(HANDLE_TABLE_FILE, data);
  log('node ids kept for the next mount (%d bytes)', data.length);
}
