// NFSv4 owner strings to local ids, as the kernel's NFS client maps them: a number is the id
// itself ("1000", what servers send to AUTH_SYS clients by default); "name@domain" is the local
// user or group of that name; anything else is nobody (65534).
import * as fs from 'fs';
import * as os from 'os';

export const NOBODY_ID = 65534;
const MAX_ID = 0xfffffffe;
const RELOAD_MS = 60_000;

interface Names {
  loaded: number;
  ids: Map<string, number>;
}

const tables: Record<'passwd' | 'group', Names> = {
  passwd: { loaded: -Infinity, ids: new Map() },
  group: { loaded: -Infinity, ids: new Map() },
};

function idsOf(file: 'passwd' | 'group'): Map<string, number> {
  const t = tables[file];
  if (performance.now() - t.loaded < RELOAD_MS) return t.ids;
  t.loaded = performance.now();
  t.ids = new Map();
  try {
    for (const line of fs.readFileSync(`/etc/${file}`, 'utf8').split('\n')) {
      const [name, , id] = line.split(':');
      if (name && id && /^\d+$/.test(id)) t.ids.set(name, Number(id));
    }
  } catch {
    // No table: every name maps to nobody.
  }
  return t.ids;
}

/**
 * This host's NFSv4 domain, as nfsidmap finds it: `Domain` in /etc/idmapd.conf, else the DNS
 * domain of the host name; undefined when there is neither.
 */
export function localNfsDomain(): string | undefined {
  try {
    const conf = fs.readFileSync('/etc/idmapd.conf', 'utf8');
    const m = /^\s*Domain\s*=\s*(\S+)\s*$/im.exec(conf);
    if (m) return m[1]!.toLowerCase();
  } catch {
    // No idmapd.conf: the host name's domain.
  }
  const host = os.hostname();
  const dot = host.indexOf('.');
  return dot > 0 ? host.slice(dot + 1).toLowerCase() : undefined;
}

/**
 * The local id an owner string names for certain: a number, or a name in this host's NFSv4
 * domain that is known here; undefined otherwise (another domain's "alice" is not ours).
 */
export function certainId(owner: Buffer, isGroup: boolean): number | undefined {
  const text = owner.toString('utf8');
  if (/^\d{1,10}$/.test(text)) return Number(text) <= MAX_ID ? Number(text) : undefined;
  const at = text.indexOf('@');
  const domain = localNfsDomain();
  if (at <= 0 || domain === undefined || text.slice(at + 1).toLowerCase() !== domain) return undefined;
  return idsOf(isGroup ? 'group' : 'passwd').get(text.slice(0, at));
}

export function ownerToId(owner: Buffer, isGroup: boolean): number {
  const text = owner.toString('utf8');
  if (/^\d{1,10}$/.test(text)) {
    const id = Number(text);
    return id <= MAX_ID ? id : NOBODY_ID;
  }
  const at = text.indexOf('@');
  if (at <= 0) return NOBODY_ID;
  return idsOf(isGroup ? 'group' : 'passwd').get(text.slice(0, at)) ?? NOBODY_ID;
}
