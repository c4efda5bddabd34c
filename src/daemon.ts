/**
 * One mount from start to end: layers, overlay, FUSE mount and session; clean unmount on
 * SIGINT/SIGTERM; exit once the kernel says the filesystem is gone (including an external
 * umount).
 */
import { msFlags } from './cli/mount-flags';
import createDebug from 'debug';
import { readFileSync } from 'fs';
import { checkLayout } from './cli/layout';
import type { CliOptions } from './cli/options';
import { makePrivateUpper, matchLowerRoot, type PrivateUpper } from './cli/private-upper';
import { controlDir, serveControl } from './control';
import { setReadAhead } from './fuse/mount';
import { serveFuse, type ServedFuse } from './fuse/serve';
import { FaultPlan, FaultyLayer, parseRules } from './layers/faults';
import { createIdShift } from './idmap';
import { openLowers, type OpenLowers } from './layers/lowers';
import type { LayerAttr, ReadableLayer } from './layers/types';
import { UpperDir } from './layers/upper-dir';
import { OverlayXattrs, TRUSTED_PREFIX, USER_PREFIX } from './overlay/format';
import { OverlayFs } from './overlay/overlay-fs';
import { restoreHandles, saveHandles } from './overlay/handle-table';
import { StaleRetryLayer } from './layers/stale-retry';
import { reclaimAfterShrink } from './util/memory';

const log = createDebug('ovshift:mount');
/** Read-ahead for the mount, KiB: one READ of the largest size INIT allows (256 pages). */
const READ_AHEAD_KIB = 1024;
/** Memory goes back to the system once this many nodes were dropped (checked every 2 s). */
const RECLAIM_AFTER_NODES = 10_000;
const RECLAIM_CHECK_MS = 2000;

/** Whether this process is root of the initial user namespace (and may use trusted.* xattrs). */
function initialNamespaceRoot(): boolean {
  if (process.geteuid?.() !== 0) return false;
  try {
    const map = readFileSync('/proc/self/uid_map', 'utf8').trim().split(/\s+/);
    return map[0] === '0' && map[1] === '0' && map[2] === '4294967295';
  } catch {
    return true;
  }
}

function mountFlags(o: CliOptions): number {
  return msFlags(o.flags);
}

async function rootAttr(layer: ReadableLayer): Promise<LayerAttr> {
  const a = await layer.stat('');
  if (!a) throw new Error(`${layer.label} vanished`);
  return a;
}

/** st_dev of a FUSE mount (major 0) from its connection number, as stat(2) reports it. */
function fuseDev(minor: number | undefined): number {
  if (minor === undefined) throw new Error('the new mount is not in /proc/self/mountinfo');
  return (minor & 0xff) + Math.floor(minor / 256) * 256 * 4096;
}

export interface RunningMount {
  /** Settles with the exit status once the filesystem is unmounted and cleaned up. */
  done: Promise<number>;
  /** Unmounts here (lazily if busy) and ends the connection everywhere; `done` settles after. */
  stop(): Promise<void>;
}

/** Mounts and serves; resolves once the mount is ready. */
export async function startMount(o: CliOptions): Promise<RunningMount> {
  // Modes from the kernel are final (it applied the caller's umask); ours must not mask them again.
  process.umask(0);
  const layout = await checkLayout(o);
  // Before anything is mounted: an unsafe socket directory refuses the mount.
  const socketDir = controlDir();
  let privateUpper: PrivateUpper | undefined;
  let upperPath = layout.upper;
  let workPath = layout.work;
  if (!upperPath && !o.flags.readOnly) {
    privateUpper = await makePrivateUpper(o.upperSize, o.tempDir);
    upperPath = privateUpper.upper;
    workPath = privateUpper.work;
  }
  const faults = new FaultPlan();
  let opened: OpenLowers | undefined;
  // Closed if the mount fails: its descriptors and its lock (see lockForMount) go with it.
  let openedUpper: UpperDir | undefined;
  try {
    const ids = createIdShift({
      uidmapping: o.uidmapping,
      gidmapping: o.gidmapping,
      squashToRoot: o.squashToRoot,
      squashToUid: o.squashToUid,
      squashToGid: o.squashToGid,
    });
    for (const rule of o.inject ? parseRules(o.inject) : []) faults.add(rule);
    // Injected faults sit below the ESTALE retry, so an injected ESTALE is retried like a real one.
    opened = await openLowers(layout.lowers);
    const lowers = opened.layers.map((l, i) => new StaleRetryLayer(new FaultyLayer(l, i + 1, faults)));
    const atime = o.flags.noatime ? 'noatime' : o.flags.strictatime ? 'strictatime' : 'relatime';
    const upperLabel = privateUpper ? `private ${privateUpper.kind} upper` : `upperdir (${upperPath})`;
    const upper = upperPath ? new UpperDir(upperPath, workPath!, upperLabel, { atime }) : undefined;
    openedUpper = upper;
    await upper?.lockForMount();
    upper?.clearWorkdir();
    if (upper && privateUpper) await matchLowerRoot(upper, lowers[0]!);
    const xattrs = new OverlayXattrs(initialNamespaceRoot() ? TRUSTED_PREFIX : USER_PREFIX);
    const root = {
      upper: upper ? await rootAttr(upper) : undefined,
      lowers: await Promise.all(lowers.map(rootAttr)),
    };
    const fs = new OverlayFs(
      { upper, lowers },
      {
        revalidate: o.revalidate,
        upperTimeout: o.upperTimeout,
        lowerTimeout: o.lowerTimeout,
        xattrs,
        redirectDir: o.redirectDir,
        readOnly: !upper,
        forwardLocks: o.forwardLocks,
        ids,
        atime,
        posixAcl: o.acl,
        passthrough: o.passthrough,
        watch: o.watch,
        volatile: o.volatile || !o.fsync,
        staticNlink: o.staticNlink,
        noXattrs: o.noXattrs,
      },
      root,
    );
    // Handles outlive the mount only with an upper that does (not a private one).
    const keepHandles = o.nfsExport && upper && !privateUpper ? upper : undefined;
    if (keepHandles) restoreHandles(keepHandles, fs.core.nodes, workPath!);
    let control: { close(): void } | undefined;
    let served: ServedFuse;
    try {
      served = await serveFuse(
        {
          mountpoint: layout.mountpoint,
          fsname: o.source,
          subtype: 'ovshift',
          flags: mountFlags(o),
          allowOther: o.allowOther,
        },
        fs,
        {
          // In place before INIT: the notifier, and the control socket (named for the mount's st_dev).
          beforeStart: async ({ session, connection }) => {
            fs.core.notifier = {
              invalInode: (id) => session.notifyInvalInode(id).then(() => undefined),
              // A negative offset: attributes only.
              invalAttrs: (id) => session.notifyInvalInode(id, -1, 0).then(() => undefined),
              invalEntry: (parent, name) => session.notifyInvalEntry(parent, Buffer.from(name, 'latin1')).then(() => undefined),
              incEpoch: () => session.notifyIncEpoch().then(() => undefined),
            };
            control =
              socketDir === undefined
                ? undefined
                : await serveControl(socketDir, fuseDev(connection), {
                    faults,
                    status: () => ({
                      nodes: fs.core.nodes.size,
                      'open files': fs.core.files.size,
                      'open dirs': fs.core.dirs.size,
                      'passthrough files': fs.core.passthrough?.activeFiles ?? 'off',
                      lowers: (opened?.layers ?? []).map((l) => (l.protocol === undefined ? l.label : `${l.label} over ${l.protocol}`)).join('; '),
                      'lower changes': fs.core.lowerChanges,
                      pending: session.pendingCount,
                      locks: o.forwardLocks
                        ? [...new Set(layout.lowers.map((l, i) => `${l.kind} lowers: ${opened?.layers[i]?.sharedLocksNow?.() ?? l.sharedLocks}`))].join('; ')
                        : 'this daemon only (locks=local)',
                    }),
                  });
          },
        },
      );
      if (served.connection !== undefined) await setReadAhead(served.connection, READ_AHEAD_KIB);
    } catch (err) {
      control?.close();
      throw err;
    }
    log('serving %s on %s (%s)', o.source, layout.mountpoint, served.mount.method);
    const reclaim = reclaimAfterShrink(() => fs.core.nodes.size, RECLAIM_AFTER_NODES, RECLAIM_CHECK_MS);
    let stopping: Promise<void> | undefined;
    const stop = (): Promise<void> => {
      // After the unmount here, the connection ends, as with fuse-overlayfs: a copy of the mount
      // in another mount namespace must not keep the daemon alive. The session stops, `done`
      // closes the device, the kernel aborts the connection (such copies answer ENOTCONN).
      stopping ??= served.unmount();
      return stopping;
    };
    const done = served.closed.then(async (errno) => {
      // The layers first: the process may take a while to exit, and someone may be waiting
      // to unmount them. Nothing new starts once the connection is gone.
      fs.closeAll();
      if (keepHandles) keepHandlesForNextMount(keepHandles, fs, workPath!);
      upper?.close();
      const closingLowers = opened?.close();
      reclaim.stop();
      control?.close();
      served.closeDevice();
      await privateUpper?.release();
      await closingLowers;
      log('unmounted (errno %d)', errno);
      return 0;
    });
    return { done, stop };
  } catch (err) {
    openedUpper?.close();
    await privateUpper?.release();
    await opened?.close();
    throw err;
  }
}

function keepHandlesForNextMount(upper: UpperDir, fs: OverlayFs, workdir: string): void {
  try {
    saveHandles(upper, fs.core.nodes);
  } catch (err) {
    process.stderr.write(`ovshift: ${workdir}: cannot keep the file handle table (${(err as Error).message}); handles of this mount will be stale\n`);
  }
}
