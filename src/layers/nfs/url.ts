// nfs://HOST[:PORT]/EXPORT[/SUBDIR][?vers=V&mountport=N&nlmport=N&uid=U&gid=G&soft&timeo=T&retrans=R&actimeo=S&dircache=S&noresvport]
import { ID, boundedNumber, expected, type Bounds } from '../../util/bounds';

/** Protocol versions a URL may ask for: NFSv3, or NFSv4 with a minor version. */
export type NfsVersion = '3' | '4.1' | '4.2';

export interface NfsUrl {
  /** Host name or address; an IPv6 address without its brackets. */
  host: string;
  /** The version asked for; absent: the highest the server offers (4.2, 4.1, then 3). */
  vers?: NfsVersion;
  /** NFS port; asked of the portmapper when absent. */
  port?: number;
  /** MOUNT port; asked of the portmapper when absent. */
  mountPort?: number;
  /** NLM (lock manager) port; asked of the portmapper at the first lock when absent. */
  nlmPort?: number;
  /** Path components after the host, percent-decoded to raw bytes: the export, then any subdirectory. */
  path: Buffer[];
  /** AUTH_SYS identity; defaults to the process's own. */
  uid: number;
  gid: number;
  /** Fail a call with EIO after timeo × (retrans + 1) instead of retrying forever. */
  soft: boolean;
  /** Per-attempt reply timeout in tenths of a second, like the kernel's nfs option. */
  timeo: number;
  /** Retransmissions before a soft call fails. */
  retrans: number;
  /** Seconds a GETATTR result may be served from cache; 0 disables the cache. */
  actimeo: number;
  /**
   * Use a source port below 1024 when running as root (on by default, as in the kernel: servers
   * with kernel nfsd's `secure` or ganesha's `PrivilegedPort = true` refuse other ports; ganesha
   * defaults to false). `noresvport` turns it off.
   */
  resvport: boolean;
}

const DEFAULT_TIMEO = 600;
const DEFAULT_RETRANS = 2;

const PORT: Bounds = { min: 1, max: 65535, unit: 'a port' };
/** An hour per try: timeo × 100 ms becomes a Node timer. */
const TIMEO: Bounds = { min: 1, max: 36000, unit: 'deciseconds' };
const RETRANS: Bounds = { min: 0, max: 1000, unit: 'retransmissions' };
const CACHE_SECONDS: Bounds = { min: 0, max: 3600, unit: 'seconds' };

const URL_SHAPE = /^nfs:\/\/(\[[^\]]*\]|[^/:?#[\]]*)(?::([^/?#]*))?(\/[^?#]*)?(?:\?([^#]*))?$/;
const HOSTNAME = /^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$/;
const IPV6 = /^[0-9A-Fa-f:.]+$/;

function fail(url: string, problem: string): never {
  throw new Error(`invalid NFS URL '${url}': ${problem}`);
}

/** `label` names the number as written: "timeo=0", "port 0". */
function parseNumber(url: string, label: string, text: string, b: Bounds): number {
  return boundedNumber(text, b) ?? fail(url, `${label}: ${expected(b)}`);
}

function percentDecode(url: string, component: string): Buffer {
  const bytes: number[] = [];
  for (let i = 0; i < component.length; i++) {
    const ch = component[i];
    if (ch === '%') {
      const hex = component.slice(i + 1, i + 3);
      if (!/^[0-9A-Fa-f]{2}$/.test(hex)) fail(url, `bad percent escape '%${hex}' in path`);
      bytes.push(parseInt(hex, 16));
      i += 2;
    } else {
      bytes.push(...Buffer.from(ch, 'utf8'));
    }
  }
  return Buffer.from(bytes);
}

function parsePath(url: string, path: string): Buffer[] {
  const components: Buffer[] = [];
  for (const part of path.split('/')) {
    if (part === '') continue;
    const name = percentDecode(url, part);
    const text = name.toString('latin1');
    if (text === '.' || text === '..') fail(url, `path component '${text}' is not allowed`);
    if (name.includes(0)) fail(url, 'path contains a NUL byte');
    if (name.includes(0x2f)) fail(url, `path component '${part}' encodes a '/'`);
    components.push(name);
  }
  return components;
}

function currentId(get: (() => number) | undefined): number {
  return get === undefined ? 0 : get();
}

export function parseNfsUrl(url: string): NfsUrl {
  if (!/^nfs:\/\//i.test(url)) {
    const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):/.exec(url)?.[1];
    fail(url, scheme === undefined ? "missing scheme 'nfs://'" : `scheme '${scheme}' is not 'nfs'`);
  }
  const match = URL_SHAPE.exec(url.replace(/^nfs:/i, 'nfs:'));
  if (match === null) {
    if (url.includes('#')) fail(url, "fragment '#...' is not allowed");
    fail(url, 'host part is malformed');
  }
  const [, rawHost, rawPort, rawPath, query] = match;
  let host = rawHost;
  if (host.startsWith('[')) {
    host = host.slice(1, -1);
    if (!IPV6.test(host) || !host.includes(':')) fail(url, `host '${rawHost}' is not an IPv6 address`);
  } else if (host === '') {
    fail(url, 'empty host');
  } else if (!HOSTNAME.test(host)) {
    fail(url, `host '${host}' is not a valid host name or address`);
  }

  const parsed: NfsUrl = {
    host,
    path: parsePath(url, rawPath ?? '/'),
    uid: currentId(process.getuid),
    gid: currentId(process.getgid),
    soft: false,
    timeo: DEFAULT_TIMEO,
    retrans: DEFAULT_RETRANS,
    actimeo: 0,
    resvport: true,
  };
  if (rawPort !== undefined) parsed.port = parseNumber(url, `port ${rawPort}`, rawPort, PORT);

  for (const option of (query ?? '').split('&')) {
    if (option === '') continue;
    const eq = option.indexOf('=');
    const key = eq < 0 ? option : option.slice(0, eq);
    const value = eq < 0 ? undefined : option.slice(eq + 1);
    const needValue = (): string => value ?? fail(url, `option '${key}' needs a value`);
    const number = (b: Bounds): number => parseNumber(url, `${key}=${value ?? ''}`, needValue(), b);
    const noValue = (): void => {
      if (value !== undefined) fail(url, `option '${key}' takes no value`);
    };
    switch (key) {
      case 'vers':
      case 'nfsvers': {
        const v = needValue();
        const known: Record<string, NfsVersion> = { '3': '3', '4.1': '4.1', '4.2': '4.2' };
        parsed.vers = known[v] ?? fail(url, `${key}=${v}: versions are 3, 4.1 and 4.2 (NFSv4.0 is not supported)`);
        break;
      }
      case 'mountport':
        parsed.mountPort = number(PORT);
        break;
      case 'nlmport':
        parsed.nlmPort = number(PORT);
        break;
      case 'uid':
        parsed.uid = number(ID);
        break;
      case 'gid':
        parsed.gid = number(ID);
        break;
      case 'soft':
        noValue();
        parsed.soft = true;
        break;
      case 'hard':
        noValue();
        parsed.soft = false;
        break;
      case 'timeo':
        parsed.timeo = number(TIMEO);
        break;
      case 'retrans':
        parsed.retrans = number(RETRANS);
        break;
      case 'actimeo':
        parsed.actimeo = number(CACHE_SECONDS);
        break;
      case 'dircache':
        // Retired (lookups are one round trip each without it): still checked and accepted,
        // so that URLs written for earlier versions keep mounting.
        number(CACHE_SECONDS);
        break;
      case 'noresvport':
        noValue();
        parsed.resvport = false;
        break;
      default:
        fail(url, `unknown option '${key}'`);
    }
  }
  return parsed;
}

function encodeComponent(name: Buffer): string {
  let out = '';
  for (const byte of name) {
    const ch = String.fromCharCode(byte);
    out += /[A-Za-z0-9._~!$'()*+,;=:@-]/.test(ch) ? ch : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/** The export path as the MOUNT protocol wants it: "/a/b" (raw bytes). */
export function joinPath(components: readonly Buffer[]): Buffer {
  const parts: Buffer[] = [];
  for (const component of components) parts.push(Buffer.from('/'), component);
  return parts.length === 0 ? Buffer.from('/') : Buffer.concat(parts);
}

/** The URL's location (without options), for messages. */
export function describeNfsUrl(url: NfsUrl): string {
  const host = url.host.includes(':') ? `[${url.host}]` : url.host;
  const port = url.port === undefined ? '' : `:${url.port}`;
  return `nfs://${host}${port}/${url.path.map(encodeComponent).join('/')}`;
}
