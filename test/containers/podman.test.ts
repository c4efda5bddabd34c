/**
 * podman on ovshift (issue 12): containers-storage with driver overlay and ovshift as its
 * `mount_program`, as root and rootless, each flow run the same way against fuse-overlayfs in
 * the same run. The image is built here from a static busybox (no registry): `podman import`
 * of a rootfs tarball, then a `podman build` of five RUN layers that delete, rename, chmod and
 * chown lower files, rename a lower directory, make an opaque directory, hard-link a lower file
 * and write 20 MiB. Every container prints a manifest of its root file system (paths, types,
 * modes, owners, sizes, sha256, hard-link groups, symlink targets), which must equal the
 * manifest of the model in image.ts; the two mount programs' manifests are compared as well.
 *
 * A commit through any mount program loses a hard link to a lower file (containers-storage's
 * naive diff: committedThroughMountProgram). Known fuse-overlayfs defects are allowed for it
 * alone (ovshift must match exactly): see fuseOverlayfsDefects. What the rig needs on this machine (runc, low ulimits, short paths,
 * no idmapped lower layers, no network, file locks) is explained in podman-rig.ts.
 */
import assert from 'assert/strict';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { allowFuseDevice, disallowFuseDevice } from '../helpers/fuse-device';
import { OVSHIFT } from '../helpers/ovshift';
import { FRONT_END, stopOvshiftServers } from '../helpers/ovshift-server';
import { reachableFrontEnd, reachableOvshift } from '../helpers/reachable';
import { createUser, removeUser, type TestUser } from '../helpers/users';
import {
  BUILD_STEPS,
  CONTAINER_STEP,
  MANIFEST_SCRIPT,
  USER_UID,
  baseModel,
  containerfile,
  diffManifests,
  parseManifest,
  writeBaseTarball,
  type Model,
} from './image';
import { PodmanRig, ROOT_PREFIX, addSubids, existingMachinePaths, freeSubidStart, removeMachineLeftovers, removeSubids } from './podman-rig';

const FUSE_OVERLAYFS = '/usr/bin/fuse-overlayfs';

/**
 * The ovshift command podman runs as its mount program: the native front end of this checkout
 * (build/Release/ovshift, which asks the user's ovshift server to mount) when it is built, else
 * bin/ovshift; for a rootless podman, a copy the user can run when the checkout is out of its
 * reach (reachable.ts).
 */
function mountProgram(user?: TestUser): string {
  if (existsSync(FRONT_END)) return user ? reachableFrontEnd() : FRONT_END;
  return user ? reachableOvshift() : OVSHIFT;
}

const podmanInstalled = existsSync('/usr/bin/podman') && existsSync('/usr/sbin/runc');

const BASE = 'localhost/ovshift-test-base:latest';
const BUILT = 'localhost/ovshift-test-built:latest';
const COMMITTED = 'localhost/ovshift-test-committed:latest';

type Program = 'fuse-overlayfs' | 'ovshift';
type Kind = 'root' | 'rootless';
type Flow = 'run --rm' | 'run (before commit)' | 'committed image' | '--uidmap 0:100000:65536' | '--userns=keep-id';

type Defects = Partial<Record<Flow, { missing: string[]; extra: string[] }>>;

/**
 * What `podman commit` makes of the container with any mount program. containers-storage then
 * builds the layer's tar by comparing the mounted container with its mounted image ("naive
 * diff": mode, owner, size, mtime, xattrs; not inode, link count or ctime), not from the upper
 * directory. `ln /data/link-src2 /data/link2` in the container, a hard link to an otherwise
 * unchanged lower file, therefore arrives as a file of its own: `podman diff` lists
 * "A /data/link2" alone. Seen with fuse-overlayfs and ovshift alike, as root and rootless; kernel
 * overlayfs (native diff) keeps the link. No mount program can show a change there that a
 * local file system would not, so this is the model for both.
 */
function committedThroughMountProgram(changed: Model): Model {
  return changed.clone().separate('/data/link2');
}

/**
 * What podman gets wrong with fuse-overlayfs 1.10 as its mount program, allowed for
 * fuse-overlayfs alone (ovshift must match the model exactly): per flow, manifest lines that may
 * be missing from its view and the lines that may show instead. Seen on every run here, as root
 * and rootless: RUN step 2 replaces the lower directory /tree/opaque by a new one
 * (`rm -rf /tree/opaque && mkdir /tree/opaque`), yet the lower's old1, old2 and olddir show in
 * it again in every view of the built image: the layer committed for that step (by the naive
 * diff above) has /tree/opaque without whiteouts for them. (The same change in a one-step
 * build on the base image comes out right.)
 */
function fuseOverlayfsDefects(base: Model): Defects {
  const reappearing = base.manifest().filter((l) => l.startsWith('/tree/opaque/'));
  const defects = (): { missing: string[]; extra: string[] } => ({ missing: [], extra: reappearing });
  return {
    'run --rm': defects(),
    'run (before commit)': defects(),
    'committed image': defects(),
    '--uidmap 0:100000:65536': defects(),
    '--userns=keep-id': defects(),
  };
}

let FUSE_OVERLAYFS_DEFECTS: Defects = {};

/** What the rigs' cleanups had to force (processes left running, mounts left), for the last test. */
const cleanupProblems: string[] = [];

/** Manifests seen, per kind, program and flow, for the comparison of the two programs. */
const seen: Record<Kind, Record<Program, Partial<Record<Flow, string[]>>>> = {
  root: { 'fuse-overlayfs': {}, ovshift: {} },
  rootless: { 'fuse-overlayfs': {}, ovshift: {} },
};

/**
 * What a container shows of an image besides the image: containers-storage makes each layer's
 * directory 0555, and the root of the view is the container layer's (the mode of "." in the
 * imported tarball is not kept); podman adds /etc/mtab, a symlink to /proc/mounts, when the
 * image has none (the files podman bind-mounts are left out of every manifest).
 */
function atRun(model: Model): Model {
  const m = model.clone().chmod('/', 0o555);
  if (!m.get('/etc/mtab')) m.symlink('/etc/mtab', '/proc/mounts');
  return m;
}

/** The lines of `diff` a known fuse-overlayfs defect explains. */
function explainedByDefect(flow: Flow, line: string): boolean {
  const d = FUSE_OVERLAYFS_DEFECTS[flow];
  if (!d) return false;
  return (line.startsWith('- ') && d.missing.includes(line.slice(2))) || (line.startsWith('+ ') && d.extra.includes(line.slice(2)));
}

function checkView(kind: Kind, program: Program, flow: Flow, expected: Model, output: string): void {
  const actual = parseManifest(output);
  seen[kind][program][flow] = actual;
  const all = diffManifests(expected.manifest(), actual);
  const diff = all.filter((l) => program === 'ovshift' || !explainedByDefect(flow, l));
  if (all.length > diff.length) {
    // Shown, so that a run tells which known defects fuse-overlayfs still has.
    console.log(`        (fuse-overlayfs, ${kind}, ${flow}: known defects seen:\n          ${all.filter((l) => !diff.includes(l)).join('\n          ')})`);
  }
  if (diff.length) {
    assert.fail(
      `${program} (${kind}, ${flow}): the container's view differs from the expected manifest ` +
        `(- expected, + seen), ${diff.length} lines:\n${diff.slice(0, 80).join('\n')}`,
    );
  }
}

/** Runs `sh -c SCRIPT` in a new container of `image` and returns its output. */
async function inContainer(rig: PodmanRig, image: string, script: string, flags: string[] = []): Promise<string> {
  return rig.ok(['run', '--pull=never', ...flags, image, '/bin/sh', '-c', script], { timeoutMs: 90000 });
}

describe('containers: podman with an ovshift mount_program', function () {
  this.timeout(120000);
  let shared: string;
  let tarball: string;
  let base: Model;
  let built: Model;
  let changed: Model;
  let machineBefore: Set<string>;

  before(async function () {
    if (!podmanInstalled) {
      console.log('        skipped: podman or runc is not installed (scripts/setup --test installs them)');
      this.skip();
    }
    machineBefore = existingMachinePaths();
    shared = mkdtempSync(join(tmpdir(), 'ovshift-podman-image-'));
    chmodSync(shared, 0o755);
    base = await baseModel();
    tarball = await writeBaseTarball(base, shared);
    chmodSync(tarball, 0o644);
    mkdirSync(join(shared, 'context'), { mode: 0o755 });
    writeFileSync(join(shared, 'context', 'Containerfile'), containerfile(BASE), { mode: 0o644 });
    built = base.clone();
    for (const s of BUILD_STEPS) s.apply(built);
    changed = built.clone();
    CONTAINER_STEP.apply(changed);
    FUSE_OVERLAYFS_DEFECTS = fuseOverlayfsDefects(base);
  });

  after(() => {
    if (shared) rmSync(shared, { recursive: true, force: true });
  });

  /** The flows of one podman (root or a rootless user's) with one mount program. */
  function flows(kind: Kind, program: Program, who: () => TestUser | undefined, subids: () => { start: number; count: number } | undefined): void {
    describe(`${kind}, ${program}`, function () {
      let rig: PodmanRig | undefined;
      let builtOk: string | undefined = 'not built';
      let changedOk: string | undefined = 'not run';

      before(async function () {
        const user = who();
        if (kind === 'rootless' && !user) throw new Error('no rootless user');
        const programPath = program === 'fuse-overlayfs' ? FUSE_OVERLAYFS : mountProgram(user);
        rig = new PodmanRig({ label: `${kind}-${program}`, mountProgram: programPath, user, subids: subids() });
      });

      after(async function () {
        this.timeout(180000);
        if (rig) for (const problem of await rig.cleanup()) cleanupProblems.push(`${rig.opts.label}: ${problem}`);
        // After podman is done: the servers the front end started for root's mounts (a rootless
        // user's live in the rig's XDG_RUNTIME_DIR; its cleanup ends them).
        if (program === 'ovshift') await stopOvshiftServers();
      });

      const needs = (what: string | undefined): void => {
        if (what) throw new Error(`needs the earlier step, which failed: ${what}`);
      };

      it('imports the base tarball and builds five layers on it', async function () {
        this.timeout(300000);
        await rig!.ok(['import', tarball, BASE], { timeoutMs: 120000 });
        await rig!.ok(
          ['build', '--pull=never', '--network=none', '--layers', '-t', BUILT, '-f', join(shared, 'context', 'Containerfile'), join(shared, 'context')],
          { timeoutMs: 240000 },
        );
        const history = await rig!.ok(['history', '--format', '{{.CreatedBy}}', BUILT]);
        assert.equal(history.split('\n').filter((l) => l.includes('/bin/sh -c') && !l.includes('#(nop)')).length, BUILD_STEPS.length, history);
        builtOk = undefined;
      });

      it('run --rm: the built image shows every change of its layers', async () => {
        needs(builtOk);
        const out = await inContainer(rig!, BUILT, `grep ' / / ' /proc/self/mountinfo; echo '#view'; ${MANIFEST_SCRIPT}`, ['--rm']);
        const [root, view] = out.split('\n#view\n') as [string, string];
        // The mount program serves the container's root (not the kernel's overlayfs).
        assert.match(root, program === 'ovshift' ? / - fuse\.ovshift / : / - fuse\.fuse-overlayfs /, `the container's root: ${root}`);
        checkView(kind, program, 'run --rm', atRun(built), view ?? '');
      });

      it('run: a container changes lower files (and hard-links one) before its commit', async () => {
        needs(builtOk);
        const out = await inContainer(rig!, BUILT, `${CONTAINER_STEP.sh} && ${MANIFEST_SCRIPT}`, ['--name', 'changed']);
        changedOk = undefined;
        checkView(kind, program, 'run (before commit)', atRun(changed), out);
      });

      it('commit: the committed image shows what the container changed', async () => {
        needs(changedOk);
        await rig!.ok(['commit', 'changed', COMMITTED], { timeoutMs: 120000 });
        checkView(
          kind,
          program,
          'committed image',
          atRun(committedThroughMountProgram(changed)),
          await inContainer(rig!, COMMITTED, MANIFEST_SCRIPT, ['--rm']),
        );
      });

      it('run --uidmap 0:100000:65536: the same view through a shifted mount', async () => {
        needs(builtOk);
        const out = await inContainer(rig!, BUILT, MANIFEST_SCRIPT, ['--rm', '--uidmap', '0:100000:65536', '--gidmap', '0:100000:65536']);
        checkView(kind, program, '--uidmap 0:100000:65536', atRun(built), out);
      });

      for (const mapped of [false, true]) {
        it(`a setuid-root binary run by uid ${USER_UID} has euid 0${mapped ? ' (--uidmap 0:100000:65536)' : ''}`, async () => {
          needs(builtOk);
          const flags = ['--rm', '--user', `${USER_UID}:${USER_UID}`, ...(mapped ? ['--uidmap', '0:100000:65536', '--gidmap', '0:100000:65536'] : [])];
          // (Its mode and owner, 4755 0:0, are in every manifest.)
          const out = await inContainer(rig!, BUILT, '/opt/suid/busybox id', flags);
          assert.match(out, new RegExp(`^uid=${USER_UID}\\(user\\) gid=${USER_UID}\\(user\\) euid=0\\(root\\)`, 'm'), out);
        });
      }

      if (kind === 'rootless') {
        it("run --userns=keep-id: the same view, run as the user's own uid", async () => {
          needs(builtOk);
          const user = who()!;
          const ids = await inContainer(rig!, BUILT, 'grep ^Uid: /proc/self/status', ['--rm', '--userns=keep-id']);
          assert.match(ids, new RegExp(`^Uid:\\s+${user.uid}\\s`), "the container runs as the user's uid");
          // The manifest as the container's root, who can read every file.
          const view = await inContainer(rig!, BUILT, MANIFEST_SCRIPT, ['--rm', '--userns=keep-id', '--user', '0:0']);
          checkView(kind, program, '--userns=keep-id', keepId(atRun(built), user), view);
        });
      }
    });
  }

  /** podman --userns=keep-id adds the user to the container's /etc/passwd and /etc/group. */
  function keepId(model: Model, user: TestUser): Model {
    return model
      .clone()
      .append('/etc/passwd', `${user.name}:*:${user.uid}:${user.gid}::/:/bin/sh\n`)
      .append('/etc/group', `${user.name}:x:${user.gid}:${user.name}\n`);
  }

  /** Both programs' views of every flow, line by line, but for fuse-overlayfs's known defects. */
  function compare(kind: Kind): void {
    it(`${kind}: ovshift's views equal fuse-overlayfs's`, () => {
      const problems: string[] = [];
      const flowsSeen = new Set([...Object.keys(seen[kind]['fuse-overlayfs']), ...Object.keys(seen[kind].ovshift)] as Flow[]);
      for (const flow of flowsSeen) {
        const fo = seen[kind]['fuse-overlayfs'][flow];
        const ov = seen[kind].ovshift[flow];
        if (!fo || !ov) {
          problems.push(`${flow}: no view from ${fo ? 'ovshift' : 'fuse-overlayfs'}`);
          continue;
        }
        // "- " lines: fuse-overlayfs's; "+ ": ovshift's. A known defect of fuse-overlayfs shows
        // as its line reversed: "+ missing" (ovshift right) and "- extra".
        const diff = diffManifests(fo, ov).filter((l) => !explainedByDefect(flow, l.startsWith('- ') ? `+ ${l.slice(2)}` : `- ${l.slice(2)}`));
        if (diff.length) problems.push(`${flow} (- fuse-overlayfs, + ovshift):\n${diff.slice(0, 40).join('\n')}`);
      }
      if (!flowsSeen.size) problems.push('no views at all');
      if (problems.length) assert.fail(problems.join('\n'));
    });
  }

  describe('root', () => {
    flows(
      'root',
      'fuse-overlayfs',
      () => undefined,
      () => undefined,
    );
    flows(
      'root',
      'ovshift',
      () => undefined,
      () => undefined,
    );
    describe('both', () => compare('root'));
  });

  describe('rootless', () => {
    let user: TestUser | undefined;
    let subids: { start: number; count: number } | undefined;

    before(async function () {
      if (!podmanInstalled) this.skip();
      user = await createUser();
      // 0..65536 of the user's namespace for the images, and ids up to 165536 for --uidmap 0:100000:65536.
      subids = { start: freeSubidStart(200000), count: 200000 };
      await addSubids(user.name, subids.start, subids.count);
      await allowFuseDevice(user.uid);
    });

    after(async function () {
      if (user) {
        await disallowFuseDevice(user.uid);
        if (subids) await removeSubids(user.name, subids.start, subids.count);
        await removeUser(user);
      }
    });

    flows(
      'rootless',
      'fuse-overlayfs',
      () => user,
      () => subids,
    );
    flows(
      'rootless',
      'ovshift',
      () => user,
      () => subids,
    );
    describe('both', () => compare('rootless'));
  });

  describe('afterwards', () => {
    it("leaves no mounts, no processes and nothing of podman's outside its temporary directories", () => {
      const mounts = readFileSync('/proc/self/mounts', 'utf8')
        .split('\n')
        .filter((l) => l.includes(`/${ROOT_PREFIX}`));
      const unexpected = machineBefore ? removeMachineLeftovers(machineBefore).map((p) => `created ${p}`) : [];
      assert.deepEqual([...mounts.map((m) => `still mounted: ${m}`), ...unexpected, ...cleanupProblems], []);
    });
  });
});
