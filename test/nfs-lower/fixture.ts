/**
 * An nfs-ganesha export on loopback whose subdirectories serve as the nfs:// lowers of ovshift
 * mounts, one per test. Tests change a lower by writing the exported directory directly, as
 * the server (or another client) would.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Scratch, startDaemon, type Daemon } from '../helpers/ovshift';
import { makeTree, type TreeSpec } from '../helpers/tree';
import { startNfsServer, type NfsServerOptions, type NfsTestServer } from '../nfs/server';

/** The protocol versions every nfs:// suite runs over. */
export const NFS_VERSIONS = ['3', '4.1'] as const;
export type NfsTestVersion = (typeof NFS_VERSIONS)[number];

export interface NfsExportOptions extends NfsServerOptions {
  /** The version the URLs of area() ask for; default 3. */
  vers?: NfsTestVersion;
}

export class NfsExport {
  /** How many areas were made: the last is "area" + this. */
  areas = 0;

  private constructor(
    /** The exported directory. */
    readonly root: string,
    readonly server: NfsTestServer,
    readonly vers: NfsTestVersion,
  ) {}

  /** Starts ganesha exporting a new temporary directory (on disk, not tmpfs, where /tmp is). */
  static async start(options: NfsExportOptions = {}): Promise<NfsExport> {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'ovshift-nfs-lower-'));
    fs.chmodSync(root, 0o755);
    try {
      return new NfsExport(fs.realpathSync(root), await startNfsServer(root, options), options.vers ?? '3');
    } catch (err) {
      fs.rmSync(root, { recursive: true, force: true });
      throw err;
    }
  }

  /** The nfs:// URL of a directory of the export, in this export's version. */
  url(subdir = '', urlOptions = ''): string {
    return this.server.url(subdir, [`vers=${this.vers}`, urlOptions].filter((o) => o !== '').join('&'));
  }

  /** A new directory of the export holding `tree`: its path on the server and its nfs:// URL. */
  area(tree: TreeSpec = {}, urlOptions = ''): { dir: string; url: string } {
    const name = `area${++this.areas}`;
    const dir = path.join(this.root, name);
    fs.mkdirSync(dir, { mode: 0o755 });
    makeTree(dir, tree);
    return { dir, url: this.url(name, urlOptions) };
  }

  async stop(): Promise<void> {
    await this.server.stop();
    fs.rmSync(this.root, { recursive: true, force: true });
  }
}

/** One ovshift mount over an nfs:// lower (plus whatever else `lowerdir` names). */
export class NfsLowerMount {
  readonly scratch = new Scratch('ovshift-nfs-lower-test-');
  daemon?: Daemon;

  get mnt(): string {
    return this.scratch.mnt;
  }

  /** Mounts `-o lowerdir=LOWERDIR,upperdir=…,workdir=…[,EXTRA]`. */
  async mount(lowerdir: string, extra = '', env?: NodeJS.ProcessEnv): Promise<Daemon> {
    const s = this.scratch;
    const options = `lowerdir=${lowerdir},upperdir=${s.upper},workdir=${s.work}${extra ? `,${extra}` : ''}`;
    this.daemon = await startDaemon(['-o', options, s.mnt], s.mnt, { env });
    return this.daemon;
  }

  /** Unmounts and removes the scratch tree; safe whatever state the test left. */
  async remove(): Promise<void> {
    await this.daemon?.stop();
    this.scratch.remove();
  }
}

/**
 * The hooks of a suite of mounts over one export: the server lives for the suite, each test
 * gets a fresh mount, removed after it (after `beforeRemove`, when given).
 */
export function exportPerSuite(opts: { beforeRemove?: () => Promise<void>; vers?: NfsTestVersion } = {}): {
  readonly exp: NfsExport;
  readonly m: NfsLowerMount;
} {
  const suite = {} as { exp: NfsExport; m: NfsLowerMount };
  before(async () => {
    suite.exp = await NfsExport.start({ vers: opts.vers });
  });
  after(async () => {
    await suite.exp?.stop();
  });
  beforeEach(() => {
    suite.m = new NfsLowerMount();
  });
  afterEach(async () => {
    await opts.beforeRemove?.();
    await suite.m.remove();
  });
  return suite;
}
