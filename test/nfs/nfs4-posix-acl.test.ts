import assert from 'assert/strict';
import * as fs from 'fs';
import * as os from 'os';
import { join } from 'path';
import { encodePosixAcl, PosixAclTag, type PosixAclEntry } from '../../src/idmap';
import { nfs4ToPosixAcls, posixToNfs4 } from '../../src/layers/nfs/v4/posix-acl';
import type { Nfs4Ace } from '../../src/layers/nfs/v4/attrs';
import { run } from '../helpers/proc';

const { USER_OBJ, USER, GROUP_OBJ, GROUP, MASK, OTHER } = PosixAclTag;

/** What nfsd would send for `entries`: its ACEs, principals as numbers. */
function asServerSends(entries: PosixAclEntry[], isDir: boolean, isDefault = false): Nfs4Ace[] {
  return posixToNfs4(entries, isDir, isDefault).map((a) => ({
    type: a.type,
    flag: a.flag,
    mask: a.mask,
    who: Buffer.from(a.who.replace(/^(user|group) /, '')),
  }));
}

/** getfacl's view of `value` set as the access ACL of a new file. */
async function getfacl(value: Buffer, name = 'system.posix_acl_access', isDir = false): Promise<string> {
  const dir = fs.mkdtempSync(join(os.tmpdir(), 'ovshift-acl-test-'));
  try {
    const target = join(dir, 'x');
    if (isDir) fs.mkdirSync(target);
    else fs.writeFileSync(target, '');
    const set = await run('python3', [
      '-c',
      'import os,sys; os.setxattr(sys.argv[1], sys.argv[2], bytes.fromhex(sys.argv[3]))',
      target,
      name,
      value.toString('hex'),
    ]);
    assert.equal(set.code, 0, set.stderr);
    const r = await run('getfacl', ['-cpn', target]);
    return r.stdout.trim();
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

describe('NFSv4 ACLs as POSIX ACLs (the reverse of nfsd’s mapping)', function () {
  this.timeout(10000);

  it('an ACL nfsd made from a POSIX ACL with named users, groups and a mask comes back as that ACL: the kernel takes it', async () => {
    const posix: PosixAclEntry[] = [
      { tag: USER_OBJ, perm: 6 },
      { tag: USER, id: 1000, perm: 4 },
      { tag: USER, id: 1001, perm: 7 },
      { tag: GROUP_OBJ, perm: 4 },
      { tag: GROUP, id: 2000, perm: 6 },
      { tag: MASK, perm: 7 },
      { tag: OTHER, perm: 0 },
    ];
    const got = nfs4ToPosixAcls(asServerSends(posix, false), false);
    assert.ok('xattrs' in got, JSON.stringify(got));
    assert.deepEqual(
      got.xattrs.map((x) => x.name),
      ['system.posix_acl_access'],
    );
    assert.deepEqual(got.xattrs[0]!.value, encodePosixAcl(posix));
    assert.equal(await getfacl(got.xattrs[0]!.value), 'user::rw-\nuser:1000:r--\nuser:1001:rwx\ngroup::r--\ngroup:2000:rw-\nmask::rwx\nother::---');
  });

  it('a mask that cut entries down becomes the union of what they are left with: the same access', () => {
    const posix: PosixAclEntry[] = [
      { tag: USER_OBJ, perm: 7 },
      { tag: USER, id: 1000, perm: 7 },
      { tag: GROUP_OBJ, perm: 5 },
      { tag: MASK, perm: 5 },
      { tag: OTHER, perm: 1 },
    ];
    const got = nfs4ToPosixAcls(asServerSends(posix, false), false);
    assert.ok('xattrs' in got, JSON.stringify(got));
    assert.deepEqual(got.xattrs[0]!.value, encodePosixAcl([...posix.filter((e) => e.tag !== USER), { tag: USER, id: 1000, perm: 5 }]));
  });

  it('a directory’s inheritable entries become its default ACL', async () => {
    const access: PosixAclEntry[] = [
      { tag: USER_OBJ, perm: 7 },
      { tag: GROUP_OBJ, perm: 5 },
      { tag: OTHER, perm: 5 },
    ];
    const dflt: PosixAclEntry[] = [
      { tag: USER_OBJ, perm: 7 },
      { tag: GROUP, id: 3000, perm: 7 },
      { tag: GROUP_OBJ, perm: 5 },
      { tag: MASK, perm: 7 },
      { tag: OTHER, perm: 0 },
    ];
    const got = nfs4ToPosixAcls([...asServerSends(access, true), ...asServerSends(dflt, true, true)], true);
    assert.ok('xattrs' in got, JSON.stringify(got));
    assert.deepEqual(
      got.xattrs.map((x) => [x.name, x.value]),
      [
        ['system.posix_acl_access', encodePosixAcl(access)],
        ['system.posix_acl_default', encodePosixAcl(dflt)],
      ],
    );
    assert.match(await getfacl(got.xattrs[1]!.value, 'system.posix_acl_default', true), /^default:group:3000:rwx$/m);
  });

  it('a mode-only ACL (OWNER@, GROUP@, EVERYONE@ as servers show a plain mode) is a minimal ACL', () => {
    const mode644: Nfs4Ace[] = [
      { type: 0, flag: 0, mask: 0x1 | 0x2 | 0x4 | 0x80 | 0x100 | 0x20000 | 0x40000 | 0x100000, who: Buffer.from('OWNER@') },
      { type: 0, flag: 0, mask: 0x1 | 0x80 | 0x20000 | 0x100000, who: Buffer.from('GROUP@') },
      { type: 0, flag: 0, mask: 0x1 | 0x80 | 0x20000 | 0x100000, who: Buffer.from('EVERYONE@') },
    ];
    const got = nfs4ToPosixAcls(mode644, false);
    assert.ok('xattrs' in got, JSON.stringify(got));
    assert.deepEqual(
      got.xattrs[0]!.value,
      encodePosixAcl([
        { tag: USER_OBJ, perm: 6 },
        { tag: GROUP_OBJ, perm: 4 },
        { tag: OTHER, perm: 4 },
      ]),
    );
  });

  it('names the reason when there is no exact POSIX ACL', () => {
    const base = asServerSends(
      [
        { tag: USER_OBJ, perm: 6 },
        { tag: USER, id: 1000, perm: 4 },
        { tag: GROUP_OBJ, perm: 4 },
        { tag: MASK, perm: 4 },
        { tag: OTHER, perm: 0 },
      ],
      false,
    );
    const reason = (aces: Nfs4Ace[], isDir = false): string => {
      const got = nfs4ToPosixAcls(aces, isDir);
      assert.ok('inexact' in got, JSON.stringify(got));
      return got.inexact;
    };
    // Write without append: POSIX cannot grant one without the other.
    assert.match(reason(base.map((a) => (a.who.toString() === '1000' ? { ...a, mask: a.mask | 0x2 } : a))), /not in the form a POSIX ACL takes/);
    // A user denied what a later entry grants: order matters in NFSv4, not in POSIX.
    assert.match(reason([{ type: 1, flag: 0, mask: 0x1, who: Buffer.from('1000') }, ...base.filter((a) => a.who.toString() !== '1000')]), /not in the form/);
    // Delete rights, which POSIX ACLs do not have.
    assert.match(reason(base.map((a) => (a.who.toString() === 'EVERYONE@' ? { ...a, mask: a.mask | 0x10000 } : a))), /not in the form/);
    assert.match(
      reason([...base, { type: 0, flag: 0, mask: 0x1, who: Buffer.from('nobody-here-at-all@example.org') }]),
      /user 'nobody-here-at-all@example.org', which has no certain id here/,
    );
    // A name known here, but of a domain that is not this host's: not taken for the local one.
    assert.match(reason([...base, { type: 0, flag: 0, mask: 0x1, who: Buffer.from('root@not-this-domain.invalid') }]), /user 'root@not-this-domain.invalid'/);
    assert.match(reason([...base, { type: 0, flag: 0x3 | 0x8, mask: 0x1, who: Buffer.from('EVERYONE@') }]), /a file has inheritable entries/);
    assert.match(reason([...base, { type: 0, flag: 0x1, mask: 0x1, who: Buffer.from('EVERYONE@') }], true), /inherited by files or directories only/);
  });
});
